"""Skeleton + tokenizer → canvas positions (``CanvasLayout``), cached per (schema, tokenizer).

Fixed text (braces, keys, quotes, commas) becomes fixed tokens; every slot gets its
positions and, per position, a shared allowed-token mask. The fixed tokens are context
for the denoiser only: ``render.py`` rebuilds the JSON from the tree, so separators
around absent members never leak into the output.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

import torch

from .compiler import DEFAULT_OPTIONS, CompileOptions, compile_schema
from .errors import SchemaTooLargeError, UnsupportedSchemaError
from .formats import format_charset
from .skeleton import (
    ArrayNode, ChoiceNode, ConstNode, Node, ObjectNode, Skeleton, Slot, SlotKind,
)
from .vocab import CHOICE_LABELS, SlotVocab, slot_vocab

#: token id written into positions the filler must decide
MASK = -1
DEFAULT_MAX_CANVAS = 4096


@dataclass(eq=False)
class CanvasLayout:
    skeleton: Skeleton
    vocab: SlotVocab
    #: fixed token id per position, MASK at slot positions
    token_ids: list[int]
    #: allowed-token mask per position (None where fixed); masks are shared objects
    allowed: list[torch.Tensor | None]
    #: positions of each slot, indexed by ``Slot.index``
    slot_positions: list[list[int]]
    #: ENUM slot index -> token ids of each option
    enum_tokens: dict[int, list[list[int]]] = field(default_factory=dict)
    #: CHOICE slot index -> label token id of each branch
    choice_ids: dict[int, list[int]] = field(default_factory=dict)
    #: GATE slot index -> "present" token id
    gate_ids: dict[int, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def fixed(self) -> list[bool]:
        return [m is None for m in self.allowed]

    def slot_tokens(self, filled: Any, slot: Slot) -> list[int]:
        return [int(filled[p]) for p in self.slot_positions[slot.index]]


class _Builder:
    def __init__(self, skeleton: Skeleton, vocab: SlotVocab, limit: int) -> None:
        self.sk = skeleton
        self.vocab = vocab
        self.limit = limit
        self.text: list[str] = []
        self.ids: list[int] = []
        self.allowed: list[torch.Tensor | None] = []
        self.positions: list[list[int]] = [[] for _ in skeleton.slots]
        self.layout_extra: dict[str, dict] = {"enum": {}, "choice": {}, "gate": {}}

    def fixed(self, text: str) -> None:
        self.text.append(text)

    def flush(self) -> None:
        if self.text:
            for tid in self.vocab.encode_cached("".join(self.text)):
                self.ids.append(tid)
                self.allowed.append(None)
            self.text.clear()

    def open(self, slot: Slot, masks: list[torch.Tensor]) -> None:
        self.flush()
        if len(self.ids) + len(masks) > self.limit:
            raise SchemaTooLargeError(slot.pointer, len(self.ids) + len(masks), self.limit)
        for m in masks:
            self.positions[slot.index].append(len(self.ids))
            self.ids.append(MASK)
            self.allowed.append(m)

    # ------------------------------------------------------------------ tree walk
    def node(self, node: Node) -> None:
        if isinstance(node, ConstNode):
            self.fixed(json.dumps(node.value, ensure_ascii=False))
        elif isinstance(node, ObjectNode):
            self.fixed("{")
            for i, m in enumerate(node.members):
                if i:
                    self.fixed(", ")
                key = json.dumps(m.key, ensure_ascii=False)
                if m.gate is not None:
                    self.gate(m.gate)
                    self.fixed(key[1:] + ": ")
                else:
                    self.fixed(key + ": ")
                self.node(m.node)
            for i, x in enumerate(node.extras):
                self.gate(x.gate)
                self.value(x.key)
                self.fixed(": ")
                self.node(x.node)
            self.fixed("}")
        elif isinstance(node, ArrayNode):
            self.fixed("[")
            for i, e in enumerate(node.elements):
                if e.gate is not None:
                    self.gate(e.gate)
                elif i:
                    self.fixed(", ")
                self.node(e.node)
            self.fixed("]")
        elif isinstance(node, ChoiceNode):
            self.choice(node)
        else:
            self.value(node.slot)

    def gate(self, slot: Slot) -> None:
        present = self.vocab.single_token(slot.marker)
        if present is None or present == self.vocab.pad_id:
            present = self.vocab.single_token(",")
        if present is None:
            raise UnsupportedSchemaError("tokenizer", slot.pointer, "no single token for a gate marker")
        self.layout_extra["gate"][slot.index] = present
        self.open(slot, [self.vocab.ids_mask([present, self.vocab.pad_id])])

    def choice(self, node: ChoiceNode) -> None:
        slot = node.slot
        if len(node.branches) > len(CHOICE_LABELS):
            raise UnsupportedSchemaError(
                "anyOf", slot.pointer, f"more than {len(CHOICE_LABELS)} alternatives")
        labels = [self.vocab.single_token(c) for c in CHOICE_LABELS[: len(node.branches)]]
        if any(t is None for t in labels) or len(set(labels)) != len(labels):
            raise UnsupportedSchemaError("anyOf", slot.pointer, "tokenizer lacks single-character labels")
        self.layout_extra["choice"][slot.index] = labels
        self.open(slot, [self.vocab.ids_mask(labels)])
        for i, branch in enumerate(node.branches):
            self.fixed(": " if i == 0 else " | ")
            self.node(branch)

    def value(self, slot: Slot) -> None:
        v = self.vocab
        if slot.kind is SlotKind.ENUM:
            seqs = [v.encode_cached(json.dumps(o, ensure_ascii=False)) for o in slot.options]
            self.layout_extra["enum"][slot.index] = seqs
            width = max(len(s) for s in seqs)
            masks = []
            for k in range(width):
                ids = {s[k] for s in seqs if len(s) > k}
                if any(len(s) <= k for s in seqs):
                    ids.add(v.pad_id)
                masks.append(v.ids_mask(ids))
            self.open(slot, masks)
        elif slot.kind is SlotKind.STRING:
            charset = format_charset(slot.fmt)
            self.fixed('"')
            self.open(slot, [v.string_mask(charset, pad=True, null=slot.nullable and k == 0)
                             for k in range(slot.budget)])
            self.fixed('"')
        else:
            integer = slot.kind is SlotKind.INTEGER
            c = slot.constraints
            lows = [c[k] for k in ("minimum", "exclusiveMinimum") if isinstance(c.get(k), (int, float))]
            negative = not lows or min(lows) < 0
            self.open(slot, [v.number_mask(first=k == 0, integer=integer, negative=negative,
                                           pad=k > 0, null=slot.nullable and k == 0)
                             for k in range(slot.budget)])


def build_layout(skeleton: Skeleton, vocab: SlotVocab, max_canvas: int = DEFAULT_MAX_CANVAS) -> CanvasLayout:
    b = _Builder(skeleton, vocab, max_canvas)
    b.node(skeleton.root)
    b.flush()
    if len(b.ids) > max_canvas:
        raise SchemaTooLargeError("/", len(b.ids), max_canvas)
    return CanvasLayout(
        skeleton=skeleton, vocab=vocab, token_ids=b.ids, allowed=b.allowed,
        slot_positions=b.positions, enum_tokens=b.layout_extra["enum"],
        choice_ids=b.layout_extra["choice"], gate_ids=b.layout_extra["gate"],
    )


_layouts: dict[tuple, CanvasLayout] = {}
_layout_lock = threading.Lock()
_LAYOUT_CACHE = 512


def layout_for(
    schema: Any,
    tokenizer: Any,
    *,
    options: CompileOptions = DEFAULT_OPTIONS,
    vocab_size: int | None = None,
    pad_id: int | None = None,
    max_canvas: int = DEFAULT_MAX_CANVAS,
) -> CanvasLayout:
    """Compiled + laid-out canvas for ``schema``, cached by (schema digest, tokenizer)."""
    skeleton = compile_schema(schema, options)
    vocab = slot_vocab(tokenizer, vocab_size, pad_id)
    key = (skeleton.digest, options, id(vocab), max_canvas)
    with _layout_lock:
        hit = _layouts.get(key)
        if hit is not None and hit.vocab is vocab:
            return hit
    layout = build_layout(skeleton, vocab, max_canvas)
    with _layout_lock:
        if len(_layouts) >= _LAYOUT_CACHE:
            _layouts.pop(next(iter(_layouts)))
        _layouts[key] = layout
    return layout
