"""YAML with line numbers and ``${VAR}`` interpolation, for the policy validator.

PyYAML's ``compose`` keeps a node tree with source marks; this module turns it into plain
Python values wrapped in ``Located`` (value + 1-based line, plus the line of every mapping
key) so each validation problem can name ``FILE:LINE``. Duplicate keys, which
``yaml.safe_load`` silently collapses to the last one, are reported here. ``Reader`` gives
typed accessors over ``Located`` values that record problems instead of raising.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_MERGE_TAG = "tag:yaml.org,2002:merge"
# `$${` is a literal `${`; `${NAME}` / `${NAME:-default}`; a lone `${` is unterminated
_ENV_PATTERN = re.compile(r"(?P<escape>\$\$\{)|\$\{(?P<body>[^{}]*)\}|(?P<open>\$\{)")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

#: backend and route names (they end up in logs and metric labels)
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*\Z")
_TYPE_NAMES = {bool: "boolean", int: "integer", float: "number", str: "string",
               dict: "mapping", list: "list", type(None): "null"}

Report = Callable[[int, str], None]  # (line, message)


@dataclass
class Located:
    """A YAML value (scalar, ``dict[str, Located]`` or ``list[Located]``) and where it is."""

    value: Any
    line: int
    #: for mappings: line of each key (unknown-key errors point at the key, not its value)
    key_lines: dict[str, int] = field(default_factory=dict)

    def plain(self) -> Any:
        """The value without locations (keys exactly as written, e.g. for JSON Schema checks)."""
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value


def interpolate(text: str, environ: Mapping[str, str], report: Callable[[str], None]) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}`` (default when unset *or empty*, as in sh)."""

    def expand(m: re.Match) -> str:
        if m.group("escape"):
            return "${"
        if m.group("open"):
            report("unterminated '${' (write '$${' for a literal '${')")
            return m.group(0)
        body = m.group("body")
        name, has_default, default = body.partition(":-")
        if not _ENV_NAME.match(name):
            report(f"bad variable reference '${{{body}}}': use ${{NAME}} or ${{NAME:-default}}")
            return m.group(0)
        value = environ.get(name)
        if value:
            return value
        if has_default:
            return default
        if value is None:
            report(f"environment variable {name} is not set (set it, or write ${{{name}:-default}})")
            return ""
        return value

    return _ENV_PATTERN.sub(expand, text)


def _retype_plain(text: str) -> Any:
    """A plain (unquoted) scalar that was interpolated gets YAML's int/float/bool typing back,
    so ``timeout_s: ${TIMEOUT_S:-60}`` is a number. Anything else stays a string."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (bool, int, float)) else text


class _Converter:
    def __init__(self, environ: Mapping[str, str] | None, report: Report):
        self.environ = environ
        self.report = report
        self.constructor = SafeConstructor()

    def convert(self, node: Node, path: str) -> Located:
        line = node.start_mark.line + 1
        if isinstance(node, MappingNode):
            return self._mapping(node, path, line)
        if isinstance(node, SequenceNode):
            return Located([self.convert(item, f"{path}[{i}]") for i, item in enumerate(node.value)], line)
        return Located(self._scalar(node, path, line), line)

    def _scalar(self, node: ScalarNode, path: str, line: int) -> Any:
        try:
            value = self.constructor.construct_object(node)
        except ConstructorError as exc:
            self.report(line, f"{path or 'top level'}: {exc.problem}")
            return None
        if isinstance(value, str) and "${" in value and self.environ is not None:
            expanded = interpolate(value, self.environ, lambda msg: self.report(line, f"{path}: {msg}"))
            return _retype_plain(expanded) if node.style is None and expanded != value else expanded
        return value

    def _mapping(self, node: MappingNode, path: str, line: int) -> Located:
        merged: dict[str, Located] = {}
        merged_lines: dict[str, int] = {}
        explicit: dict[str, Located] = {}
        key_lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:  # `<<: *anchor` shares a block between entries
                sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                for source in sources:
                    if not isinstance(source, MappingNode):
                        self.report(key_line, f"{path or 'top level'}: '<<' must merge a mapping")
                        continue
                    block = self.convert(source, path)
                    for k, v in block.value.items():
                        merged.setdefault(k, v)
                        merged_lines.setdefault(k, block.key_lines[k])
                continue
            if not isinstance(key_node, ScalarNode):
                self.report(key_line, f"{path or 'top level'}: mapping keys must be plain strings")
                continue
            # the key as written: YAML 1.1 would turn `on:` (fallbacks) into True
            key = key_node.value
            if key in explicit:
                self.report(key_line, f"{_join(path, key)}: duplicate key '{key}' "
                                      f"(first at line {key_lines[key]})")
                continue
            key_lines[key] = key_line
            explicit[key] = self.convert(value_node, _join(path, key))
        for k, v in merged.items():
            if k not in explicit:
                explicit[k] = v
                key_lines[k] = merged_lines[k]
        return Located(explicit, line, key_lines)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def load_located(text: str, environ: Mapping[str, str] | None, report: Report) -> Located | None:
    """Parse one YAML document, interpolating ``${VAR}`` from ``environ`` (None: leave them
    as written). None (after reporting) when it is not parseable or empty."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = mark.line + 1 if mark is not None else 1
        context = ""
        if exc.context and exc.context_mark is not None and exc.context_mark.line + 1 != where:
            context = f" ({exc.context} at line {exc.context_mark.line + 1})"
        report(where, f"YAML syntax error: {exc.problem or exc.context}{context}")
        return None
    except yaml.YAMLError as exc:  # e.g. more than one document
        report(1, f"YAML error: {exc}")
        return None
    if node is None:
        report(1, "empty policy file: expected a mapping with version, backends and routes")
        return None
    return _Converter(environ, report).convert(node, "")


def environ_snapshot() -> dict[str, str]:
    """The environment as interpolation sees it (one read per load, for consistency)."""
    return dict(os.environ)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def describe(value: Any) -> str:
    kind = _TYPE_NAMES.get(type(value), type(value).__name__)
    return f"{kind} {value!r}" if isinstance(value, (str, int, float)) else kind


class Reader:
    """Typed accessors that report problems and return None for unusable values."""

    def __init__(self, file: str):
        self.file = file
        self.problems: list[tuple[str, int, str]] = []

    def error(self, line: int, path: str, message: str) -> None:
        self.problems.append((self.file, line, f"{path or 'top level'}: {message}"))

    def mapping(self, loc: Located, path: str, allowed: Iterable[str],
                required: Iterable[str] = ()) -> dict[str, Located] | None:
        if not isinstance(loc.value, dict):
            self.error(loc.line, path, f"expected a mapping, got {describe(loc.value)}")
            return None
        allowed = tuple(allowed)
        for key in loc.value:
            if key not in allowed:
                self.error(loc.key_lines[key], path, f"unknown key '{key}'{did_you_mean(key, allowed)}")
        for key in required:
            if key not in loc.value:
                self.error(loc.line, path, f"missing required key '{key}'")
        return {k: v for k, v in loc.value.items() if k in allowed}

    def string(self, loc: Located, path: str, *, choices: Iterable[str] | None = None,
               name: bool = False, allow_empty: bool = False, secret: bool = False) -> str | None:
        if not isinstance(loc.value, str):
            # a secret's value never goes into an error message (they end up in logs)
            got = _TYPE_NAMES.get(type(loc.value), type(loc.value).__name__) if secret else describe(loc.value)
            self.error(loc.line, path, f"expected a string, got {got}")
            return None
        if choices is not None:
            choices = tuple(choices)
            if loc.value not in choices:
                self.error(loc.line, path, f"'{loc.value}' is not one of {', '.join(choices)}"
                                           f"{did_you_mean(loc.value, choices)}")
                return None
        if name and not NAME_PATTERN.match(loc.value):
            self.error(loc.line, path, f"bad name '{loc.value}': use letters, digits, '_', '-', '.'")
            return None
        if not allow_empty and not loc.value.strip():
            self.error(loc.line, path, "must not be empty")
            return None
        return loc.value

    def integer(self, loc: Located, path: str, *, minimum: int | None = None,
                maximum: int | None = None) -> int | None:
        if isinstance(loc.value, bool) or not isinstance(loc.value, int):
            self.error(loc.line, path, f"expected an integer, got {describe(loc.value)}")
            return None
        return self._bounded(loc, path, loc.value, minimum, maximum)

    def number(self, loc: Located, path: str, *, minimum: float | None = None, maximum: float | None = None,
               exclusive_minimum: bool = False) -> float | None:
        if isinstance(loc.value, bool) or not isinstance(loc.value, (int, float)):
            self.error(loc.line, path, f"expected a number, got {describe(loc.value)}")
            return None
        if exclusive_minimum and minimum is not None and loc.value <= minimum:
            self.error(loc.line, path, f"must be greater than {minimum}, got {loc.value}")
            return None
        return self._bounded(loc, path, loc.value, minimum, maximum)

    def _bounded(self, loc: Located, path: str, value, minimum, maximum):
        if minimum is not None and value < minimum:
            self.error(loc.line, path, f"must be at least {minimum}, got {value}")
            return None
        if maximum is not None and value > maximum:
            self.error(loc.line, path, f"must be at most {maximum}, got {value}")
            return None
        return value

    def boolean(self, loc: Located, path: str) -> bool | None:
        if not isinstance(loc.value, bool):
            self.error(loc.line, path, f"expected true or false, got {describe(loc.value)}")
            return None
        return loc.value

    def items(self, loc: Located, path: str, *, one_or_list: bool = False) -> list[tuple[Located, str]] | None:
        """Elements of a list (or, with ``one_or_list``, a single scalar) with their paths."""
        if isinstance(loc.value, list):
            if not loc.value:
                self.error(loc.line, path, "must not be an empty list")
                return None
            return [(item, f"{path}[{i}]") for i, item in enumerate(loc.value)]
        if one_or_list and not isinstance(loc.value, dict):
            return [(loc, path)]
        expected = "one value or a list of values" if one_or_list else "a list"
        self.error(loc.line, path, f"expected {expected}, got {describe(loc.value)}")
        return None
