"""`--set a.b=VALUE` overrides: parsed as YAML values, checked against the experiment schema before
they touch the spec, and applied to the raw mapping so that validation sees one document.

Paths follow the experiment file: `training.lr=2e-4`, `variants.edm-fdm.damping=1.5`,
`variants.vp.network.channel_mult=[1,2,2,2]`, `grid.diffusion.damping=[0.8,1,1.25]`,
`launch.additional_parameters.constraint=a100`. A grid key is everything after `grid.`.
"""

from __future__ import annotations

import copy
import typing
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel

from harness.errors import SpecError
from harness.specs.models import DottedKeys, PatchOf
from harness.specs.validation import unwrap_annotation, qualified_hint
from harness.specs.yamlio import parse_scalar


def parse_overrides(items: Iterable[str]) -> list[tuple[str, Any]]:
    """['a.b=1', ...] → [('a.b', 1), ...]; the same key twice with different values is an error."""
    parsed: list[tuple[str, Any]] = []
    seen: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise SpecError(key or item, f"--set {item!r}: expected KEY=VALUE with a dotted KEY, e.g. training.lr=2e-4")
        value = parse_scalar(text, f"--set {key}")
        if key in seen:
            if seen[key] != value:
                raise SpecError(key, f"set twice with different values ({seen[key]!r} and {value!r})")
            continue
        seen[key] = value
        parsed.append((key, value))
    _reject_nested_keys([k for k, _ in parsed])
    return parsed


def apply_overrides(raw: dict[str, Any], overrides: Sequence[tuple[str, Any]], model: type[BaseModel]) -> dict[str, Any]:
    """A copy of `raw` with each override applied; every key is checked against `model` first."""
    result = copy.deepcopy(raw)
    for key, value in overrides:
        path = override_path(key, model, result)
        _assign(result, path, value, key)
    grid = result.get("grid") if isinstance(result.get("grid"), dict) else {}
    for key, _ in overrides:
        if key in grid:
            raise SpecError(key, f"--set {key} conflicts with grid axis 'grid.{key}', whose values would "
                                 f"replace it; set the grid instead (--set grid.{key}=[...]) or drop one")
    return result


def override_path(key: str, model: type[BaseModel], raw: dict[str, Any]) -> list[str]:
    """The raw-mapping path of `key`, after checking that it names a field of `model`."""
    parts = key.split(".")
    path: list[str] = []
    annotation: Any = model
    node: Any = raw
    for i, part in enumerate(parts):
        target = unwrap_annotation(annotation)
        parent = ".".join(path) + "." if path else ""
        if isinstance(target, type) and issubclass(target, BaseModel):
            fields = target.model_fields
            if part not in fields:
                raise SpecError(key, f"unknown field '{parent}{part}'{qualified_hint(part, fields, parent)}")
            path.append(part)
            markers = fields[part].metadata
            if any(isinstance(m, DottedKeys) for m in markers) and i + 1 < len(parts):
                return [*path, ".".join(parts[i + 1:])]  # grid axes are dotted job fields
            patch = next((m.model for m in markers if isinstance(m, PatchOf)), None)
            annotation = patch or fields[part].annotation
        elif typing.get_origin(target) is dict:
            value_type = typing.get_args(target)[1]
            existing = node if isinstance(node, dict) else {}
            if unwrap_annotation(value_type) is not Any and part not in existing:
                raise SpecError(key, f"no entry '{parent}{part}'{qualified_hint(part, existing, parent)}"
                                     f" (existing: {', '.join(existing) or 'none'})")
            path.append(part)
            annotation = value_type
        else:
            raise SpecError(key, f"'{'.'.join(path)}' is a value, not a mapping; set it whole "
                                 f"(--set {'.'.join(path)}=...)")
        node = node.get(part) if isinstance(node, dict) else None
    return path


def _assign(raw: dict[str, Any], path: list[str], value: Any, key: str) -> None:
    node = raw
    for i, part in enumerate(path[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise SpecError(key, f"'{'.'.join(path[: i + 1])}' is {child!r} in the spec, not a mapping")
        node = child
    node[path[-1]] = value


def _reject_nested_keys(keys: list[str]) -> None:
    for a in keys:
        for b in keys:
            if b.startswith(a + "."):
                raise SpecError(b, f"--set {a}=... and --set {b}=... overlap; set one of them")
