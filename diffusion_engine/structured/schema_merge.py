"""Local ``$ref`` resolution and ``allOf`` merging (pure dict → dict helpers)."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from .errors import UnsatisfiableSchemaError, UnsupportedSchemaError

#: keywords that only annotate; merging keeps the first one seen
ANNOTATIONS = frozenset({
    "title", "description", "default", "examples", "$schema", "$id", "id", "$comment",
    "deprecated", "readOnly", "writeOnly", "contentMediaType", "contentEncoding",
    "contentSchema", "$anchor", "$dynamicAnchor", "$defs", "definitions", "$vocabulary",
})

_LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")


def escape_pointer_token(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def resolve_ref(root: Any, ref: str, pointer: str) -> tuple[Any, str]:
    """Target of a local ``$ref`` and its JSON pointer."""
    if not isinstance(ref, str) or not ref.startswith("#"):
        raise UnsupportedSchemaError(
            "$ref", pointer, f"only local references ('#/...') are supported, got {ref!r}")
    fragment = unquote(ref[1:])
    if fragment and not fragment.startswith("/"):
        raise UnsupportedSchemaError(
            "$ref", pointer, f"anchor references like {ref!r} are not supported; use '#/$defs/...'")
    node = root
    for raw in fragment.split("/")[1:]:
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise UnsupportedSchemaError("$ref", pointer, f"reference {ref!r} does not resolve")
    return node, fragment or "/"


def flatten(root: Any, schema: Any, pointer: str, hops: int = 0) -> dict:
    """``schema`` with top-level ``$ref`` and ``allOf`` merged into one dict."""
    if hops > 16:
        raise UnsupportedSchemaError("$ref", pointer, "allOf/$ref chain does not terminate")
    if schema is True:
        return {}
    if schema is False or not isinstance(schema, dict):
        raise UnsupportedSchemaError("allOf", pointer, "a false or non-object schema admits no value")
    out = {k: v for k, v in schema.items() if k not in ("$ref", "allOf")}
    if "$ref" in schema:
        target, target_ptr = resolve_ref(root, schema["$ref"], pointer)
        out = merge(flatten(root, target, target_ptr, hops + 1), out, pointer)
    for i, part in enumerate(schema.get("allOf", []) or []):
        out = merge(out, flatten(root, part, f"{pointer}/allOf/{i}", hops + 1), f"{pointer}/allOf/{i}")
    return out


def merge(a: dict, b: dict, pointer: str) -> dict:
    """Conjunction of two flat schemas; conflicts we cannot express raise."""
    out = dict(a)
    for key, value in b.items():
        if key not in out or key in ANNOTATIONS:
            out.setdefault(key, value)
            continue
        mine = out[key]
        if mine == value:
            continue
        if key == "properties":
            props = dict(mine)
            for name, sub in value.items():
                props[name] = {"allOf": [props[name], sub]} if name in props else sub
            out[key] = props
        elif key == "required":
            out[key] = list(dict.fromkeys(list(mine) + list(value)))
        elif key == "type":
            left = {mine} if isinstance(mine, str) else set(mine)
            right = {value} if isinstance(value, str) else set(value)
            both = left & right
            if "number" in left and "integer" in right or "number" in right and "integer" in left:
                both.add("integer")
            if not both:
                raise UnsatisfiableSchemaError("allOf", pointer, f"types {mine!r} and {value!r} never overlap")
            out[key] = sorted(both) if len(both) > 1 else both.pop()
        elif key == "enum":
            kept = [v for v in mine if v in value]
            if not kept:
                raise UnsatisfiableSchemaError("allOf", pointer, "enums share no value")
            out[key] = kept
        elif key in _LOWER_BOUNDS and _numbers(mine, value):
            out[key] = max(mine, value)
        elif key in _UPPER_BOUNDS and _numbers(mine, value):
            out[key] = min(mine, value)
        elif key in ("additionalProperties", "items") and isinstance(mine, dict) and isinstance(value, dict):
            out[key] = {"allOf": [mine, value]}
        elif key == "additionalProperties" and (mine is False or value is False):
            out[key] = False
        else:
            raise UnsupportedSchemaError("allOf", pointer, f"conflicting values for '{key}'")
    return out


def _numbers(x: Any, y: Any) -> bool:
    ok = (int, float)
    return isinstance(x, ok) and isinstance(y, ok) and not isinstance(x, bool) and not isinstance(y, bool)
