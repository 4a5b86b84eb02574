"""JSON types a value or compiled node can take (enum typing, oneOf disjointness)."""

from __future__ import annotations

import json
from typing import Any

from .skeleton import ArrayNode, ChoiceNode, ConstNode, Node, ObjectNode, SlotKind


def json_type_matches(value: Any, types: Any) -> bool:
    names = [types] if isinstance(types, str) else list(types)
    for t in names:
        if t == "null" and value is None or t == "boolean" and isinstance(value, bool):
            return True
        if t == "string" and isinstance(value, str) or t == "object" and isinstance(value, dict):
            return True
        if t == "array" and isinstance(value, list):
            return True
        if t in ("number", "integer") and isinstance(value, (int, float)) and not isinstance(value, bool):
            if t == "number" or float(value).is_integer():
                return True
    return False


def _node_types(node: Node | None) -> set[str]:
    """JSON types a compiled node can produce (for oneOf disjointness)."""
    if node is None:
        return set()
    if isinstance(node, ConstNode):
        return {"const:" + json.dumps(node.value, sort_keys=True)}
    if isinstance(node, ObjectNode):
        return {"object"}
    if isinstance(node, ArrayNode):
        return {"array"}
    if isinstance(node, ChoiceNode):
        return set().union(*(_node_types(b) for b in node.branches))
    slot = node.slot
    if slot.kind is SlotKind.ENUM:
        return {"const:" + json.dumps(v, sort_keys=True) for v in slot.options}
    kinds = {SlotKind.STRING: "string", SlotKind.INTEGER: "number", SlotKind.NUMBER: "number"}
    return {kinds[slot.kind]} | ({"const:null"} if slot.nullable else set())


def disjoint(branches: list[Node | None]) -> bool:
    """True when no JSON value can come out of two branches (by type or by constant)."""
    seen: set[str] = set()
    for node in branches:
        types = _node_types(node)
        plain = {t for t in types if not t.startswith("const:")}
        const_kinds = {_const_kind(c) for c in types - plain}
        seen_plain = {t for t in seen if not t.startswith("const:")}
        seen_const_kinds = {_const_kind(c) for c in seen - seen_plain}
        if types & seen or plain & seen_const_kinds or const_kinds & seen_plain:
            return False
        seen |= types
    return True


def _const_kind(const: str) -> str:
    value = json.loads(const[len("const:"):])
    if isinstance(value, bool) or value is None:
        return "const-only"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object" if isinstance(value, dict) else "array"
