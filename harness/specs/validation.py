"""pydantic's ValidationError → one `SpecError` naming the dotted field, the bad value and,
where there is one, the nearest valid name.

pydantic reports every error with a `loc` tuple (`('training', 'duration_mimg')`) and a type
(`greater_than`, `extra_forbidden`, ...). We report the first one only: one line that a person
can act on beats a screenful.
"""

from __future__ import annotations

import re
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from harness.errors import SpecError, did_you_mean


def validate_model(model: type[BaseModel], data: Any, *, prefix: str = ""):
    """`model.model_validate(data)`, with errors raised as `SpecError` (fields under `prefix`)."""
    if not isinstance(data, dict):
        where = prefix or "spec"
        raise SpecError(prefix, f"{where} must be a mapping of fields, got {_show(data)}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise to_spec_error(exc, model, prefix=prefix) from None


def to_spec_error(exc: ValidationError, model: type[BaseModel], *, prefix: str = "") -> SpecError:
    errors = exc.errors(include_url=False)
    # An unknown field is reported before anything else: a misspelt key ('trainig') also makes
    # the real one missing, and the misspelling is what the user has to fix.
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = tuple(error["loc"])
    field = join_path(prefix, dotted(loc))
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, SpecError):  # raised by one of our validators, relative to `loc`
        return SpecError(join_path(field, cause.field), spec_error_message(cause))
    return SpecError(field, _message(error, model, loc, field))


def spec_error_message(exc: SpecError) -> str:
    """The message of a SpecError without its leading 'field: '."""
    text = str(exc)
    return text[len(exc.field) + 2:] if exc.field and text.startswith(f"{exc.field}: ") else text


def dotted(loc: tuple[Any, ...]) -> str:
    """('evaluation', 'samplers', 0, 'nfe') → 'evaluation.samplers[0].nfe'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else str(part)
    return out


def join_path(prefix: str, field: str) -> str:
    if not prefix:
        return field
    if not field:
        return prefix
    return f"{prefix}{field}" if field.startswith("[") else f"{prefix}.{field}"


def qualified_hint(name: str, choices: Any, parent: str) -> str:
    """did_you_mean on the last path segment, naming the suggestion with its full path."""
    hint = did_you_mean(name, choices)
    return re.sub(r"'(.*)'", lambda m: f"'{parent}{m.group(1)}'", hint) if hint else ""


def _message(error: dict[str, Any], model: type[BaseModel], loc: tuple[Any, ...], field: str) -> str:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "extra_forbidden":
        siblings = _fields_at(model, loc[:-1])
        parent = field[: -len(str(loc[-1]))]
        return f"unknown field '{field}'{qualified_hint(str(loc[-1]), siblings, parent)}"
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'|(\d+)", ctx.get("expected", ""))
        choices = [a or b for a, b in choices]
        hint = did_you_mean(str(value), choices) if isinstance(value, str) else ""
        if isinstance(value, bool):  # YAML 1.1 reads on/off/yes/no as booleans
            hint = " (YAML reads unquoted on/off/yes/no as true/false; quote the word)"
        return f"{_show(value)} is not one of {', '.join(choices)}{hint}"
    comparisons = {"greater_than": (">", "gt"), "greater_than_equal": (">=", "ge"),
                   "less_than": ("<", "lt"), "less_than_equal": ("<=", "le")}
    if kind in comparisons:
        symbol, key = comparisons[kind]
        bound = ctx[key]
        bound = int(bound) if isinstance(bound, float) and bound.is_integer() else bound
        return f"{_show(value)} must be {symbol} {bound}"
    if kind == "too_short":
        need = ctx.get("min_length", 1)
        return f"{_show(value)} must have at least {need} entr{'y' if need == 1 else 'ies'}"
    if kind == "too_long":
        return f"{_show(value)} must have at most {ctx.get('max_length')} entries"
    if kind == "value_error":
        return f"{ctx.get('error', error['msg'])}"
    expected = _EXPECTED.get(kind)
    if expected:
        return f"{_show(value)} is not {expected}"
    msg = error["msg"]
    return f"{_show(value)}: {msg[0].lower()}{msg[1:]}" if msg else f"{_show(value)} is invalid"


_EXPECTED = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "a whole number",
    "float_type": "a number", "float_parsing": "a number", "finite_number": "a finite number",
    "bool_type": "true or false", "bool_parsing": "true or false",
    "string_type": "a string", "list_type": "a list", "tuple_type": "a list",
    "dict_type": "a mapping", "model_type": "a mapping of fields", "model_attributes_type": "a mapping of fields",
}


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model found by walking `loc` from `model` (for suggestions)."""
    current: Any = model
    for part in loc:
        current = _step(current, part)
        if current is None:
            return []
    current = unwrap_annotation(current)
    return list(current.model_fields) if isinstance(current, type) and issubclass(current, BaseModel) else []


def _step(annotation: Any, part: Any) -> Any:
    annotation = unwrap_annotation(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        info = annotation.model_fields.get(part) if isinstance(part, str) else None
        return info.annotation if info is not None else None
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is dict and args:
        return args[1]
    if origin in (list, tuple) and args:
        return args[0]
    return None


def unwrap_annotation(annotation: Any) -> Any:
    """Strip Optional[...] and Annotated[...] down to the type that carries fields."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) == 1:
                annotation = args[0]
                continue
        return annotation
