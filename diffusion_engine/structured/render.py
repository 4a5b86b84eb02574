"""Filled canvas → Python value (→ JSON text), with per-slot checks.

Rendering never produces malformed JSON: values are rebuilt from the skeleton tree and
serialized with ``json.dumps``. What it can produce is a value that violates a slot's
own constraints (pattern, bounds, format, length); those slots are reported as issues so
the caller can remask and refill them, or repaired deterministically.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from jsonschema import Draft202012Validator

from .formats import FORMAT_CHECKER
from .layout import CanvasLayout
from .repair import repair_value
from .skeleton import ArrayNode, ChoiceNode, ConstNode, Node, ObjectNode, Slot, SlotKind



@dataclass
class SlotIssue:
    slot: Slot
    reason: str
    raw: Any = None


@dataclass
class Rendered:
    value: Any
    issues: list[SlotIssue] = field(default_factory=list)
    repaired: list[SlotIssue] = field(default_factory=list)
    #: values that were valid only after canonicalisation (enum snapped, number normalised)
    normalized: int = 0

    @property
    def text(self) -> str:
        return json.dumps(self.value, ensure_ascii=False)


def document_validator(layout: CanvasLayout) -> Draft202012Validator:
    v = layout.__dict__.get("_doc_validator")
    if v is None:
        v = Draft202012Validator(layout.skeleton.schema, format_checker=FORMAT_CHECKER)
        layout.__dict__["_doc_validator"] = v
    return v


def slot_validator(layout: CanvasLayout, slot: Slot) -> Draft202012Validator:
    cache = layout.__dict__.setdefault("_validators", {})
    v = cache.get(slot.index)
    if v is None:
        v = Draft202012Validator(slot.constraints, format_checker=FORMAT_CHECKER)
        cache[slot.index] = v
    return v


def render(layout: CanvasLayout, filled: Sequence[int], *, repair: bool = False) -> Rendered:
    """Value of a filled canvas; slot-constraint failures are issues, or repaired when ``repair``."""
    out = Rendered(value=None)
    out.value = _Renderer(layout, filled, out, repair).node(layout.skeleton.root)
    return out


class _Renderer:
    def __init__(self, layout: CanvasLayout, filled: Sequence[int], out: Rendered, repair: bool) -> None:
        self.layout = layout
        self.vocab = layout.vocab
        self.filled = [int(t) for t in filled]
        if len(self.filled) != len(layout):
            raise ValueError(f"filled canvas has {len(self.filled)} tokens, layout {len(layout)}")
        self.out = out
        self.repair = repair
        #: None: gates as filled; False/True: every gate absent/present (oneOf repair variants)
        self.gates: bool | None = None

    def tokens(self, slot: Slot) -> list[int]:
        return [self.filled[p] for p in self.layout.slot_positions[slot.index]]

    def node(self, node: Node) -> Any:
        if isinstance(node, ConstNode):
            return node.value
        if isinstance(node, ObjectNode):
            obj = {}
            for m in node.members:
                if m.gate is None or self.present(m.gate):
                    obj[m.key] = self.node(m.node)
            for x in node.extras:
                if self.present(x.gate):
                    key = self.value(x.key)
                    if key in obj:  # a repeated name would silently overwrite: drop it
                        self.out.normalized += 1
                        continue
                    obj[key] = self.node(x.node)
            return obj
        if isinstance(node, ArrayNode):
            return self.array(node)
        if isinstance(node, ChoiceNode):
            labels = self.layout.choice_ids[node.slot.index]
            tok = self.tokens(node.slot)[0]
            if tok not in labels:
                self.out.normalized += 1
            chosen = labels.index(tok) if tok in labels else 0
            value = self.node(node.branches[chosen])
            if node.exclusive and not self.exactly_one(node, value):
                return self.exclusive_fallback(node, chosen, value)
            return value
        return self.value(node.slot)

    def exactly_one(self, node: ChoiceNode, value: Any) -> bool:
        cache = self.layout.__dict__.setdefault("_branch_validators", {})
        validators = cache.get(id(node))
        if validators is None:
            root = document_validator(self.layout)
            validators = cache[id(node)] = [root.evolve(schema=s) for s in node.branch_schemas]
        return sum(1 for v in validators if v.is_valid(value)) == 1

    def exclusive_fallback(self, node: ChoiceNode, chosen: int, value: Any) -> Any:
        """oneOf value matching several (or no) branches: refill the choice, or when repairing
        take the first branch (chosen one first) whose repaired value matches exactly one."""
        if not self.repair:
            self.out.issues.append(SlotIssue(node.slot, "value must match exactly one oneOf branch"))
            return value
        order = [chosen] + [i for i in range(len(node.branches)) if i != chosen]
        outer = self.gates
        try:
            for gates in (outer, False, True):  # as filled, then minimal, then maximal members
                self.gates = gates
                for i in order:
                    candidate = self.node(node.branches[i])
                    if self.exactly_one(node, candidate):
                        self.out.repaired.append(SlotIssue(node.slot, f"oneOf: branch {i}, gates={gates}"))
                        return candidate
        finally:
            self.gates = outer
        return value  # whole-document validation reports it

    def present(self, gate: Slot) -> bool:
        if self.gates is not None:
            return self.gates
        return self.tokens(gate)[0] != self.vocab.pad_id

    def array(self, node: ArrayNode) -> list:
        items: list[Any] = []
        for e in node.elements:
            if e.gate is not None and not self.present(e.gate):
                break  # length = first absent element (keeps tuple positions aligned)
            items.append(self.node(e.node))
        if node.unique:
            kept, seen = [], set()
            for item in items:
                key = json.dumps(item, sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    kept.append(item)
            if len(kept) != len(items):
                self.out.normalized += 1
            if len(kept) >= node.min_items:
                items = kept
        return items

    # ------------------------------------------------------------------ scalars
    def value(self, slot: Slot) -> Any:
        ids = self.tokens(slot)
        if slot.kind is SlotKind.ENUM:
            return self.enum(slot, ids)
        if slot.nullable and ids and ids[0] == self.vocab.null_id:
            return None
        body = [t for t in ids if t != self.vocab.pad_id]
        text = self.vocab.decode(body)
        if slot.kind is SlotKind.STRING:
            raw: Any = text
        else:
            raw = self.number(text, slot.kind is SlotKind.INTEGER)
        if raw is not None and slot_validator(self.layout, slot).is_valid(raw):
            return raw
        issue = SlotIssue(slot, self.reason(slot, raw, text), text)
        if not self.repair:
            self.out.issues.append(issue)
            return raw if raw is not None else (None if slot.nullable else "")
        self.out.repaired.append(issue)
        return repair_value(slot, raw, slot_validator(self.layout, slot).is_valid)

    def reason(self, slot: Slot, raw: Any, text: str) -> str:
        if raw is None:
            return f"no {slot.kind.value} in {text!r}"
        err = next(iter(slot_validator(self.layout, slot).iter_errors(raw)), None)
        return err.message if err is not None else "invalid"

    def number(self, text: str, integer: bool) -> int | float | None:
        """Lenient numeral: sign, digits, first '.', digits (extra dots dropped)."""
        negative = text.startswith("-")
        body = text[1:] if negative else text
        whole, _, frac = body.partition(".")
        whole = "".join(c for c in whole if c.isdigit())
        frac = "".join(c for c in frac if c.isdigit())
        if not whole and not frac:
            return None
        canonical = ("-" if negative else "") + (whole or "0") + (f".{frac}" if frac and not integer else "")
        if canonical != text:
            self.out.normalized += 1
        if integer or not frac:
            return int(canonical)
        value = float(canonical)
        return value if math.isfinite(value) else None

    def enum(self, slot: Slot, ids: list[int]) -> Any:
        seqs = self.layout.enum_tokens[slot.index]
        pad = self.vocab.pad_id
        best, best_score = 0, -1
        for i, seq in enumerate(seqs):
            padded = seq + [pad] * (len(ids) - len(seq))
            score = 0
            while score < len(ids) and padded[score] == ids[score]:
                score += 1
            if score > best_score:
                best, best_score = i, score
        if best_score < len(ids):
            self.out.normalized += 1
        return slot.options[best]
