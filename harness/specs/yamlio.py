"""YAML in and out for specs: safe loading that rejects duplicate keys and reports syntax errors
with the file, the line and the nearest key, and a dump that reads back to the same values.

`yaml.safe_load` silently keeps the last of two equal keys, so a spec with two variants named
`edm` would lose one without a word. We compose the node tree first, walk it with the dotted
path in hand, and only then construct Python objects.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from harness.errors import SpecError

# YAML 1.1 (PyYAML) reads `1e-3` as a string because its float pattern needs a dot. Specs are
# full of such numbers (lr, eps), so the loader also accepts the exponent-only spelling.
_FLOAT_RE = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class SpecLoader(yaml.SafeLoader):
    """SafeLoader with exponent-only floats (`1e-3`)."""


SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
SpecLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, list("-+0123456789."))


def parse_yaml(text: str, source: str = "<string>") -> Any:
    """Parse one YAML document; duplicate keys and syntax errors raise `SpecError`."""
    loader = SpecLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _reject_duplicate_keys(node, (), source)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, text, source) from None
    except yaml.YAMLError as exc:  # unmarked errors are rare (e.g. reader errors)
        raise SpecError("", f"YAML error in {source}: {exc}") from None
    finally:
        loader.dispose()


def parse_scalar(text: str, source: str) -> Any:
    """Parse the value of a `--set a.b=VALUE` as YAML (`1e-3`, `[1, 2]`, `true`, `null`)."""
    if text.strip() == "":
        return None
    return parse_yaml(text, source)


def read_yaml(path: str | Path) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("", f"spec file not found: {path}") from None
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise SpecError("", f"cannot read spec file {path}: {exc}") from None
    return parse_yaml(text, str(path))


def dump_yaml(data: Any) -> str:
    """Block style with inline leaf lists; `parse_yaml(dump_yaml(x)) == x` for JSON-like data."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, allow_unicode=True, width=100)


def _reject_duplicate_keys(node: yaml.Node, path: tuple[str, ...], source: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            child = (*path, str(key))
            if key is not None and key in seen:
                dotted = ".".join(child)
                raise SpecError(
                    dotted,
                    f"duplicate key '{key}' in {source} (lines {seen[key] + 1} and "
                    f"{key_node.start_mark.line + 1}); names must be unique",
                )
            if key is not None:
                seen[key] = key_node.start_mark.line
            _reject_duplicate_keys(value_node, child, source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _reject_duplicate_keys(item, (*path[:-1], f"{path[-1]}[{index}]") if path else (f"[{index}]",), source)


def _syntax_error(exc: yaml.MarkedYAMLError, text: str, source: str) -> SpecError:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line if mark is not None else 0
    column = mark.column if mark is not None else 0
    problem = exc.problem or "syntax error"
    # The context mark is where the unfinished construct began (an unclosed '[' or quote): that
    # is the key the user was writing, while the problem mark is where the parser gave up.
    context, key_line = "", line
    if exc.context:
        context = f" ({exc.context}"
        if exc.context_mark is not None:
            key_line = exc.context_mark.line
            context += f" started at line {key_line + 1}"
        context += ")"
    where = f"{source}, line {line + 1}, column {column + 1}"
    return SpecError(_key_path_at(text, key_line), f"YAML syntax error in {where}: {problem}{context}")


_KEY_LINE_RE = re.compile(r"^(\s*)(?:-\s+)?([A-Za-z0-9_.\-]+)\s*:(?:\s|$)")


def _key_path_at(text: str, line: int) -> str:
    """Dotted path of the last `key:` at or above `line`, read from the indentation.

    A syntax error has no parsed tree to point into, so this recovers the field the user was
    writing from the text itself; it names the enclosing key, which is what a person looks for.
    """
    stack: list[tuple[int, str]] = []
    for raw in text.splitlines()[: line + 1]:
        match = _KEY_LINE_RE.match(raw)
        if not match:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group(2)))
    return ".".join(key for _, key in stack)
