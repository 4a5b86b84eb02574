"""Fillers that need no model: random allowed fillings (property tests, coverage bench) and
the gold filling of a known value (the adapter's training targets)."""

from __future__ import annotations

import json
import random
from typing import Any

import torch

from .layout import CanvasLayout, MASK
from .render import document_validator, render
from .skeleton import ArrayNode, ChoiceNode, ConstNode, ObjectNode, SlotKind


def _choices(layout: CanvasLayout, mask: torch.Tensor) -> list[int]:
    cache = layout.vocab.__dict__.setdefault("_nonzero", {})
    hit = cache.get(id(mask))
    if hit is None or hit[0] is not mask:
        hit = (mask, mask.nonzero().flatten().tolist())
        cache[id(mask)] = hit
    return hit[1]


def random_allowed_filling(layout: CanvasLayout, rng: random.Random, pad_bias: float = 0.3,
                           base: list[int] | None = None) -> list[int]:
    """A canvas whose every open position holds a token its mask allows.

    ``pad_bias`` makes pads (absent members, short values) as likely as real tokens
    often enough to exercise collapsed slots. ``base`` keeps its non-MASK positions.
    """
    start = list(base) if base is not None else list(layout.token_ids)
    pad = layout.vocab.pad_id
    out = []
    for tok, mask in zip(start, layout.allowed):
        if mask is None or tok != MASK:
            out.append(tok)
            continue
        ids = _choices(layout, mask)
        if pad in ids and rng.random() < pad_bias:
            out.append(pad)
        else:
            out.append(ids[rng.randrange(len(ids))])
    return out


def filling_from_values(layout: CanvasLayout, choose: Any) -> list[int]:
    """Canvas filled by ``choose(position, allowed_ids) -> id`` (test helper for targeted fillings)."""
    out = []
    for pos, (tok, mask) in enumerate(zip(layout.token_ids, layout.allowed)):
        out.append(tok if mask is None else int(choose(pos, _choices(layout, mask))))
    return out


#: roles of canvas positions in a gold filling (training targets, see ``filling_for_value``)
FIXED, TARGET, IGNORED = 0, 1, 2


class _NoFit(Exception):
    """The value cannot be written into this layout (too long, disallowed token, extras...)."""


def filling_for_value(layout: CanvasLayout, value: Any) -> tuple[list[int], list[int]] | None:
    """The canvas that renders to ``value``, and a role per position, or None if it does not fit
    (or ``value`` is not valid for the schema).

    Roles: ``FIXED`` (skeleton text, given), ``TARGET`` (a slot token the filler must
    produce, pads after a short value included) and ``IGNORED`` (slots under an absent
    member or element: their tokens never reach the output, so nothing is asked of them).
    The training data of the diffusion adapter uses this to teach the exact canvases the
    structured-output engine fills at inference.
    """
    # ignored positions hold the pad: later blocks see them as committed context
    ids = [t if m is None else layout.vocab.pad_id for t, m in zip(layout.token_ids, layout.allowed)]
    roles = [FIXED if m is None else IGNORED for m in layout.allowed]
    try:
        _GoldWriter(layout, ids, roles).node(layout.skeleton.root, value)
    except _NoFit:
        return None
    rendered = render(layout, ids)
    if rendered.issues or rendered.value != value or not document_validator(layout).is_valid(value):
        return None
    return ids, roles


class _GoldWriter:
    def __init__(self, layout: CanvasLayout, ids: list[int], roles: list[int]) -> None:
        self.layout, self.ids, self.roles = layout, ids, roles
        self.vocab = layout.vocab

    def put(self, slot: Any, tokens: list[int]) -> None:
        positions = self.layout.slot_positions[slot.index]
        if len(tokens) > len(positions):
            raise _NoFit(slot.pointer)
        tokens = tokens + [self.vocab.pad_id] * (len(positions) - len(tokens))
        for p, t in zip(positions, tokens):
            if not bool(self.layout.allowed[p][t]):
                raise _NoFit(slot.pointer)
            self.ids[p], self.roles[p] = t, TARGET

    def node(self, node: Any, value: Any) -> None:
        if isinstance(node, ConstNode):
            if node.value != value:
                raise _NoFit("const")
        elif isinstance(node, ObjectNode):
            if not isinstance(value, dict) or set(value) - {m.key for m in node.members}:
                raise _NoFit("object")
            for m in node.members:
                if m.gate is not None:
                    self.put(m.gate, [self.layout.gate_ids[m.gate.index]] if m.key in value else [])
                if m.key in value:
                    self.node(m.node, value[m.key])
                elif m.gate is None:
                    raise _NoFit(f"required {m.key}")
            for x in node.extras:
                self.put(x.gate, [])
        elif isinstance(node, ArrayNode):
            if not isinstance(value, list) or len(value) > len(node.elements):
                raise _NoFit("array")
            for i, e in enumerate(node.elements):
                if e.gate is not None:
                    self.put(e.gate, [self.layout.gate_ids[e.gate.index]] if i < len(value) else [])
                if i < len(value):
                    self.node(e.node, value[i])
                elif e.gate is None:
                    raise _NoFit("minItems")
                else:
                    break  # elements after the first absent one are never rendered
        elif isinstance(node, ChoiceNode):
            raise _NoFit("choice")  # branch selection by value is not needed by the training data
        else:
            slot = node.slot
            if value is None:
                if not slot.nullable or self.vocab.null_id is None:
                    raise _NoFit("null")
                self.put(slot, [self.vocab.null_id])
            elif slot.kind is SlotKind.ENUM:
                if value not in slot.options:
                    raise _NoFit("enum")
                self.put(slot, list(self.layout.enum_tokens[slot.index][slot.options.index(value)]))
            elif slot.kind is SlotKind.STRING:
                if not isinstance(value, str):
                    raise _NoFit("string")
                self.put(slot, self.vocab.encode(value))
            else:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise _NoFit("number")
                self.put(slot, self.vocab.encode(json.dumps(value)))
