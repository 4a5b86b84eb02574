"""Fillers that need no model: random allowed fillings (property tests, coverage bench)."""

from __future__ import annotations

import random
from typing import Any

import torch

from .layout import CanvasLayout, MASK


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
