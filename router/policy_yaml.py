"""YAML with line numbers and ``${VAR}`` interpolation, for the policy validator.

PyYAML's ``compose`` keeps a node tree with source marks; this module turns it into plain
Python values wrapped in ``Located`` (value + 1-based line, plus the line of every mapping
key) so each validation problem can name ``FILE:LINE``. Duplicate keys, which
``yaml.safe_load`` silently collapses to the last one, are reported here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_MERGE_TAG = "tag:yaml.org,2002:merge"
# `$${` is a literal `${`; `${NAME}` / `${NAME:-default}`; a lone `${` is unterminated
_ENV_PATTERN = re.compile(r"(?P<escape>\$\$\{)|\$\{(?P<body>[^{}]*)\}|(?P<open>\$\{)")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

Report = Callable[[int, str], None]  # (line, message)


@dataclass
class Located:
    """A YAML value (scalar, ``dict[str, Located]`` or ``list[Located]``) and where it is."""

    value: Any
    line: int
    #: for mappings: line of each key (unknown-key errors point at the key, not its value)
    key_lines: dict[str, int] = field(default_factory=dict)


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
    def __init__(self, environ: Mapping[str, str], report: Report):
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
        if isinstance(value, str) and "${" in value:
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
            key = str(self.constructor.construct_object(key_node))
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


def load_located(text: str, environ: Mapping[str, str], report: Report) -> Located | None:
    """Parse one YAML document; None (after reporting) when it is not parseable or empty."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = mark.line + 1 if mark is not None else 1
        report(where, f"YAML syntax error: {exc.problem or exc.context}")
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
