"""JSON Schema (draft 2020-12) → ``Skeleton`` (fixed structure + typed slots).

Every decision is a slot, never a parser state: optional properties and array elements
beyond ``minItems`` get a GATE, ``anyOf``/multi-type schemas a CHOICE, nullable scalars
collapse to ``null`` through their first position. Recursive ``$ref``s unroll up to
``CompileOptions.recursion_depth``; deeper branches are pruned where the schema allows
(optional property, array element beyond ``minItems``, other ``anyOf`` branch).
Compiled skeletons are cached by (schema digest, options).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator

from .errors import StructuredOutputError, UnsatisfiableSchemaError, UnsupportedSchemaError
from .formats import FORMAT_CHECKER, FORMAT_LENGTH
from .schema_merge import ANNOTATIONS, escape_pointer_token, flatten, merge, resolve_ref
from .node_types import disjoint, json_type_matches
from .repair import repair_value
from .skeleton import (
    ArrayNode, ChoiceNode, ConstNode, Element, ExtraMember, Member, Node, ObjectNode, Skeleton, Slot,
    SlotKind, ValueNode,
)

#: keywords whose meaning the skeleton cannot guarantee; we refuse rather than emit invalid JSON
UNSUPPORTED = frozenset({
    "propertyNames", "dependentSchemas", "unevaluatedProperties", "unevaluatedItems", "contains", "minContains",
    "maxContains", "if", "then", "else", "not", "$dynamicRef", "$recursiveRef",
})
_STRING_KEYS = ("minLength", "maxLength", "pattern", "format")
_NUMBER_KEYS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
_OBJECT_HINTS = ("properties", "required", "additionalProperties", "patternProperties")
_ARRAY_HINTS = ("items", "prefixItems", "minItems", "maxItems", "uniqueItems")
_ANY_TYPES = ["string", "number", "boolean", "null"]


@dataclass(frozen=True)
class CompileOptions:
    #: elements laid out for arrays without maxItems (or with a larger one)
    max_array_slots: int = 3
    #: value tokens for a string without maxLength / a known format
    string_budget: int = 12
    max_string_budget: int = 48
    integer_budget: int = 8
    number_budget: int = 10
    #: how many times one $ref may unroll along a path
    recursion_depth: int = 2
    #: hardest cap on laid-out elements when minItems forces more
    max_min_items: int = 32
    #: accept oneOf whose branches may overlap; exactly-one is then checked and repaired at
    #: render time, and a document no repair fixes raises StructuredOutputError. Off by
    #: default: compiled schemas then always yield valid documents.
    overlapping_one_of: bool = False
    #: model-named key/value slots laid out for an open object that declares no properties
    #: (a map, or ``response_format=json_object``); 0 turns them off
    open_object_slots: int = 3
    key_budget: int = 6


DEFAULT_OPTIONS = CompileOptions()
_cache: "OrderedDict[tuple[str, CompileOptions], Skeleton]" = OrderedDict()
_cache_lock = threading.Lock()
_CACHE_SIZE = 1024


def schema_digest(schema: Any) -> str:
    text = json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def compile_schema(schema: Any, options: CompileOptions = DEFAULT_OPTIONS) -> Skeleton:
    """Compile (or fetch from cache) the skeleton of ``schema``.

    Raises ``UnsupportedSchemaError(keyword, pointer)`` for what cannot be honoured.
    """
    digest = schema_digest(schema)
    key = (digest, options)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    try:
        skeleton = _Compiler(schema, options).run(digest)
    except UnsupportedSchemaError:
        raise
    except RecursionError as exc:
        raise UnsupportedSchemaError("$ref", "/", "schema nesting is too deep to compile") from exc
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        # malformed keyword values ("required": "x", "minLength": "5"...) are client errors
        raise UnsupportedSchemaError("schema", "/", f"malformed schema: {type(exc).__name__}: {exc}") from exc
    with _cache_lock:
        _cache[key] = skeleton
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return skeleton


class _Compiler:
    def __init__(self, schema: Any, options: CompileOptions) -> None:
        self.root = schema
        self.opts = options
        self.slots: list[Slot] = []

    def run(self, digest: str) -> Skeleton:
        node = self.node(self.root, "", ())
        if node is None:
            raise UnsupportedSchemaError(
                "$ref", "/", f"recursion cannot end within depth {self.opts.recursion_depth}: "
                "make the recursive property optional or allow empty arrays")
        return Skeleton(root=node, slots=self.slots, schema=self.root, digest=digest)

    def slot(self, kind: SlotKind, pointer: str, **kw: Any) -> Slot:
        s = Slot(index=len(self.slots), kind=kind, pointer=pointer or "/", **kw)
        self.slots.append(s)
        return s

    # ------------------------------------------------------------------ dispatch
    def node(self, schema: Any, ptr: str, stack: tuple[str, ...]) -> Node | None:
        """Compile one schema node; None means "unreachable within the recursion bound"."""
        if schema is True:
            schema = {}
        if schema is False:
            raise UnsatisfiableSchemaError("false", ptr, "a false schema admits no value here")
        if not isinstance(schema, dict):
            raise UnsupportedSchemaError("schema", ptr, "a schema must be an object or a boolean")
        for key in schema:
            if key in UNSUPPORTED:
                raise UnsupportedSchemaError(key, ptr)
        if "$ref" in schema:
            ref = schema["$ref"]
            if stack.count(ref) >= self.opts.recursion_depth:
                return None
            target, target_ptr = resolve_ref(self.root, ref, ptr)
            rest = {k: v for k, v in schema.items() if k != "$ref" and k not in ANNOTATIONS}
            if rest:
                target = merge(flatten(self.root, target, target_ptr), flatten(self.root, rest, ptr), ptr)
            return self.node(target, target_ptr, stack + (ref,))
        if "allOf" in schema:
            return self.node(flatten(self.root, schema, ptr), ptr, stack)
        if "const" in schema:
            return ConstNode(schema["const"])
        if "enum" in schema:
            return self.enum(schema, ptr)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return self.choice(schema, key, ptr, stack)
        return self.typed(schema, ptr, stack)

    def optional(self, schema: Any, ptr: str, stack: tuple[str, ...]) -> Node | None:
        """Like ``node`` for a part the schema lets us leave out: unsatisfiable means absent."""
        try:
            return self.node(schema, ptr, stack)
        except UnsatisfiableSchemaError:
            return None

    def typed(self, schema: dict, ptr: str, stack: tuple[str, ...]) -> Node | None:
        types = schema.get("type")
        if types is None:
            types = _infer_types(schema)
        if isinstance(types, str):
            types = [types]
        if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
            raise UnsupportedSchemaError("type", ptr, f"invalid type {schema.get('type')!r}")
        types = list(dict.fromkeys(types))
        non_null = [t for t in types if t != "null"]
        if len(non_null) == 1 and len(types) == 2 and non_null[0] in ("string", "integer", "number"):
            return self.single(non_null[0], schema, ptr, stack, nullable=True)
        if len(types) == 1:
            return self.single(types[0], schema, ptr, stack)
        branches = [self.single(t, schema, ptr, stack) for t in types]
        return self.choice_of(branches, ptr)

    def single(self, type_: str, s: dict, ptr: str, stack: tuple[str, ...], nullable: bool = False) -> Node | None:
        if type_ == "object":
            return self.object(s, ptr, stack)
        if type_ == "array":
            return self.array(s, ptr, stack)
        if type_ == "string":
            return self.string(s, ptr, nullable)
        if type_ in ("integer", "number"):
            return self.number(type_, s, ptr, nullable)
        if type_ == "boolean":
            return ValueNode(self.slot(SlotKind.ENUM, ptr, options=(True, False)))
        if type_ == "null":
            return ConstNode(None)
        raise UnsupportedSchemaError("type", ptr, f"unknown type {type_!r}")

    # ------------------------------------------------------------------ alternatives
    def enum(self, s: dict, ptr: str) -> Node:
        options = s["enum"]
        if not isinstance(options, list) or not options:
            raise UnsupportedSchemaError("enum", ptr, "enum must be a non-empty array")
        if "type" in s:
            options = [v for v in options if json_type_matches(v, s["type"])]
            if not options:
                raise UnsatisfiableSchemaError("enum", ptr, f"no enum value has type {s['type']!r}")
        options = list({json.dumps(v, sort_keys=True): v for v in options}.values())
        if len(options) == 1:
            return ConstNode(options[0])
        return ValueNode(self.slot(SlotKind.ENUM, ptr, options=tuple(options)))

    def choice(self, s: dict, key: str, ptr: str, stack: tuple[str, ...]) -> Node | None:
        parts = s[key]
        if not isinstance(parts, list) or not parts:
            raise UnsupportedSchemaError(key, ptr, f"{key} must be a non-empty array")
        rest = {k: v for k, v in s.items() if k != key and k not in ANNOTATIONS}
        branches: list[Node | None] = []
        for i, part in enumerate(parts):
            bptr = f"{ptr}/{key}/{i}"
            try:
                branch = merge(flatten(self.root, rest, ptr), flatten(self.root, part, bptr), bptr) if rest else part
            except UnsatisfiableSchemaError:
                branches.append(None)
                continue
            branches.append(self.optional(branch, bptr, stack))
        if all(b is None for b in branches):
            raise UnsatisfiableSchemaError(
                key, ptr, "no branch can be produced (unsatisfiable, or recursion beyond the depth bound)")
        node = self.choice_of(branches, ptr)
        if key == "oneOf" and not (disjoint(branches) and all(self.typed_schema(p, ptr) for p in parts)):
            if not self.opts.overlapping_one_of:
                raise UnsupportedSchemaError(
                    "oneOf", ptr, "branches may match the same value; use anyOf, make the branches differ "
                    "in type or constant values, or enable CompileOptions(overlapping_one_of=True)")
            # overlapping branches: exactly-one is checked on the rendered value (render.py)
            if not isinstance(node, ChoiceNode):
                node = ChoiceNode(self.slot(SlotKind.CHOICE, ptr, options=(0,)), [node])
            node.exclusive = True
            node.branch_schemas = tuple(parts)
        return node

    def typed_schema(self, schema: Any, ptr: str) -> bool:
        """The schema itself restricts the JSON type (type/const/enum), so its compiled node's
        types are all it accepts; {"properties": ...} alone also accepts strings, numbers..."""
        try:
            flat = flatten(self.root, schema, ptr)
        except UnsupportedSchemaError:
            return False
        return any(k in flat for k in ("type", "const", "enum"))

    def choice_of(self, branches: list[Node | None], ptr: str) -> Node | None:
        kept = [b for b in branches if b is not None]
        if not kept:
            return None
        if len(kept) == 1:
            return kept[0]
        return ChoiceNode(self.slot(SlotKind.CHOICE, ptr, options=tuple(range(len(kept)))), kept)

    # ------------------------------------------------------------------ containers
    def object(self, s: dict, ptr: str, stack: tuple[str, ...]) -> Node | None:
        props = s.get("properties", {}) or {}
        required = list(dict.fromkeys(s.get("required", []) or []))
        need = s.get("minProperties", 0) or 0
        for key in props:  # minProperties: the first optional members become always present
            if len(required) >= need:
                break
            if key not in required:
                required.append(key)
        for trigger, deps in _dependent_required(s, ptr).items():
            # "if trigger is present, deps are too": always emitting deps satisfies it soundly
            if trigger in props or trigger in required:
                required.extend(d for d in deps if d not in required)
        extra = s.get("additionalProperties", True)
        members: list[Member] = []
        patterns = _pattern_properties(s, ptr)
        for key in list(props) + [k for k in required if k not in props]:
            # we only ever emit these keys, so patternProperties reduce to extra conjuncts on them
            matching = [sub for rx, sub in patterns if rx.search(key)]
            if key in props:
                sub, sub_ptr = props[key], f"{ptr}/properties/{escape_pointer_token(key)}"
                if matching:
                    sub = {"allOf": [sub, *matching]}
            elif matching:
                sub, sub_ptr = {"allOf": matching}, f"{ptr}/patternProperties"
            elif extra is False:
                raise UnsatisfiableSchemaError(
                    "required", ptr, f"'{key}' is required but additionalProperties is false")
            else:
                sub, sub_ptr = extra, f"{ptr}/additionalProperties"
            node = self.node(sub, sub_ptr, stack) if key in required else self.optional(sub, sub_ptr, stack)
            if key in required:
                if node is None:
                    return None
                members.append(Member(key, node, None))
            elif node is not None:
                members.append(Member(key, node, self.slot(SlotKind.GATE, sub_ptr, marker='"')))
        if need > len(members):
            raise UnsupportedSchemaError(
                "minProperties", ptr, f"needs {need} properties but only {len(members)} can be produced")
        if "maxProperties" in s and s["maxProperties"] < len(members):
            raise UnsupportedSchemaError(
                "maxProperties", ptr, "only maxProperties >= number of declared properties is supported")
        return ObjectNode(members, self.extras(s, ptr, stack, members, extra, patterns))

    def extras(self, s: dict, ptr: str, stack: tuple[str, ...], members: list[Member], extra: Any,
               patterns: list) -> list[ExtraMember]:
        """Gated model-named members for open maps (no declared properties, no key patterns)."""
        count = self.opts.open_object_slots
        if "maxProperties" in s:
            count = min(count, s["maxProperties"] - len(members))
        if count <= 0 or extra is False or s.get("properties") or patterns:
            return []
        sub_ptr = f"{ptr}/additionalProperties"
        out: list[ExtraMember] = []
        for _ in range(count):
            node = self.optional(extra, sub_ptr, stack)
            if node is None:
                break
            key = self.slot(SlotKind.STRING, sub_ptr, constraints={"type": "string"}, budget=self.opts.key_budget)
            out.append(ExtraMember(key, node, self.slot(SlotKind.GATE, sub_ptr, marker=",")))
        return out

    def array(self, s: dict, ptr: str, stack: tuple[str, ...]) -> Node | None:
        items = s.get("items", True)
        prefix = s.get("prefixItems", []) or []
        if isinstance(items, list):  # draft-04 tuple form
            prefix, items = items, s.get("additionalItems", True)
        lo = int(s.get("minItems", 0) or 0)
        hi = s.get("maxItems")
        if lo > self.opts.max_min_items:
            raise UnsupportedSchemaError(
                "minItems", ptr, f"minItems {lo} exceeds the supported {self.opts.max_min_items}")
        count = max(lo, min(self.opts.max_array_slots, hi if hi is not None else self.opts.max_array_slots))
        if items is False:
            count = min(count, len(prefix))
        if hi is not None:
            count = min(count, int(hi))
        if lo > count:
            raise UnsupportedSchemaError("minItems", ptr, "minItems exceeds the items the schema allows")
        elements: list[Element] = []
        for i in range(count):
            if i < len(prefix):
                sub, sub_ptr = prefix[i], f"{ptr}/prefixItems/{i}"
            else:
                sub, sub_ptr = items, f"{ptr}/items"
            node = self.node(sub, sub_ptr, stack) if i < lo else self.optional(sub, sub_ptr, stack)
            if node is None:
                if i < lo:
                    return None
                break
            gate = None if i < lo else self.slot(SlotKind.GATE, sub_ptr, marker=",")
            elements.append(Element(node, gate))
        return ArrayNode(elements, unique=bool(s.get("uniqueItems")), min_items=lo)

    # ------------------------------------------------------------------ scalars
    def string(self, s: dict, ptr: str, nullable: bool) -> Node:
        constraints = {"type": "string", **{k: s[k] for k in _STRING_KEYS if k in s}}
        if "pattern" in s:
            try:
                re.compile(s["pattern"])
            except (re.error, TypeError) as exc:
                raise UnsupportedSchemaError("pattern", ptr, f"not a Python regex: {exc}") from exc
        fmt = s.get("format") if isinstance(s.get("format"), str) else None
        budget = self.opts.string_budget
        if fmt in FORMAT_LENGTH:
            budget = FORMAT_LENGTH[fmt]
        elif isinstance(s.get("maxLength"), int):
            budget = s["maxLength"]
        budget = max(budget, int(s.get("minLength", 0) or 0))
        budget = max(1, min(budget, self.opts.max_string_budget))
        slot = self.slot(SlotKind.STRING, ptr, constraints=constraints, budget=budget, nullable=nullable, fmt=fmt)
        if len(constraints) > 1:
            _require_witness(slot)
        return ValueNode(slot)

    def number(self, type_: str, s: dict, ptr: str, nullable: bool) -> Node:
        for key in ("exclusiveMinimum", "exclusiveMaximum"):
            if isinstance(s.get(key), bool):
                raise UnsupportedSchemaError(
                    key, ptr, "the boolean form is draft-04; use a number (draft 2020-12)")
        constraints = {"type": type_, **{k: s[k] for k in _NUMBER_KEYS if k in s}}
        budget = self.opts.integer_budget if type_ == "integer" else self.opts.number_budget
        bounds = [abs(s[k]) for k in _NUMBER_KEYS[:4] if isinstance(s.get(k), (int, float))]
        if type_ == "integer" and len(bounds) >= 2:
            budget = min(budget, len(str(int(max(bounds)))) + 1)
        kind = SlotKind.INTEGER if type_ == "integer" else SlotKind.NUMBER
        slot = self.slot(kind, ptr, constraints=constraints, budget=budget, nullable=nullable)
        if len(constraints) > 1:
            _require_witness(slot)
        return ValueNode(slot)


def _require_witness(slot: Slot) -> None:
    """Compile only slots that repair can always satisfy (an impossible pattern+length, empty
    bounds, an unknown-but-checked format refuse here instead of failing at run time)."""
    validator = Draft202012Validator(slot.constraints, format_checker=FORMAT_CHECKER)
    try:
        repair_value(slot, None, validator.is_valid)
    except StructuredOutputError as exc:
        keyword = next((k for k in ("pattern", "format", "multipleOf") if k in slot.constraints), "minimum")
        raise UnsatisfiableSchemaError(keyword, slot.pointer, f"no value satisfies {slot.constraints}") from exc


def _dependent_required(s: dict, ptr: str) -> dict[str, list[str]]:
    out = {k: list(v) for k, v in (s.get("dependentRequired") or {}).items()}
    for key, value in (s.get("dependencies") or {}).items():  # draft-04/07 spelling
        if isinstance(value, list):
            out.setdefault(key, []).extend(value)
        else:
            raise UnsupportedSchemaError(
                "dependencies", ptr, f"schema dependency for '{key}' is not supported; only property lists")
    return out


def _pattern_properties(s: dict, ptr: str) -> list[tuple[re.Pattern, Any]]:
    out = []
    for pattern, sub in (s.get("patternProperties") or {}).items():
        try:
            out.append((re.compile(pattern), sub))
        except re.error as exc:
            raise UnsupportedSchemaError("patternProperties", ptr, f"{pattern!r} is not a Python regex: {exc}") from exc
    return out


def _infer_types(s: dict) -> list[str]:
    if any(k in s for k in _OBJECT_HINTS):
        return ["object"]
    if any(k in s for k in _ARRAY_HINTS):
        return ["array"]
    if any(k in s for k in _STRING_KEYS):
        return ["string"]
    if any(k in s for k in _NUMBER_KEYS):
        return ["number"]
    return list(_ANY_TYPES)
