"""``CanvasLayout`` ↔ the engine's ``CanvasTemplate`` (diffusion_engine/template.py)."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch

from ..template import MASK as TEMPLATE_MASK
from ..template import AllowedTokens, CanvasTemplate
from .layout import MASK, CanvasLayout
from .skeleton import Slot


def choose_terminator(tokenizer: Any, *, pad_token_id: int | None = None,
                      eos_token_ids: Iterable[int] = (), mask_token_id: int | None = None) -> int:
    """The id that pads slots (absent member, end of a short value).

    The engine stops a templated generation when an EOS id is sampled at a position whose
    mask allows it, so the terminator must not be an EOS id (SmolLM2 pads with
    ``<|endoftext|>``, which is also an EOS). We take the first of: the model's pad id,
    the tokenizer's pad id, then unused added special tokens -- skipping EOS, BOS and mask.
    """
    banned = {int(e) for e in eos_token_ids}
    for extra in (mask_token_id, getattr(tokenizer, "bos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if extra is not None:
            banned.add(int(extra))
    added = sorted(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    for cand in [pad_token_id, getattr(tokenizer, "pad_token_id", None), *added]:
        if cand is not None and int(cand) not in banned:
            return int(cand)
    raise ValueError("no token can serve as slot terminator (every candidate is EOS/BOS/mask); "
                     "pass pad_id explicitly")


def model_terminator(tokenizer: Any, model: Any) -> int:
    """``choose_terminator`` for a model's ``pad_token_id``, ``eos_token_ids`` and
    ``mask_token_id`` (a denoiser, or the adapter config it is trained from): the one place
    inference (``StructuredGenerator``) and the adapter's skeleton training data get it, so
    the two cannot pad slots differently."""
    return choose_terminator(tokenizer, pad_token_id=model.pad_token_id, eos_token_ids=model.eos_token_ids,
                             mask_token_id=model.mask_token_id)


def to_canvas_template(
    layout: CanvasLayout,
    filled: Sequence[int] | None = None,
    open_slots: Iterable[Slot] | None = None,
) -> CanvasTemplate:
    """Template for the engine.

    Without ``filled``: the skeleton's fixed tokens, every slot position free under its mask.
    With ``filled`` and ``open_slots`` (a refill): every position keeps its filled token and is
    fixed, except the positions of ``open_slots``, which are free again.
    """
    assert MASK == TEMPLATE_MASK, "layout and template must agree on the MASK sentinel"
    n = len(layout)
    tokens = torch.tensor(layout.token_ids, dtype=torch.long)
    fixed = torch.tensor([m is None for m in layout.allowed], dtype=torch.bool)
    if filled is not None:
        if len(filled) != n:
            raise ValueError(f"filled canvas has {len(filled)} tokens, the layout {n}")
        tokens = torch.as_tensor([int(t) for t in filled], dtype=torch.long)
        fixed = torch.ones(n, dtype=torch.bool)
        for slot in open_slots or ():
            pos = layout.slot_positions[slot.index]
            tokens[pos] = MASK
            fixed[pos] = False
    allowed = AllowedTokens(n, layout.vocab.vocab_size)
    by_mask: dict[int, tuple[torch.Tensor, list[int]]] = {}
    for pos, mask in enumerate(layout.allowed):
        if mask is not None and not bool(fixed[pos]):
            by_mask.setdefault(id(mask), (mask, []))[1].append(pos)
    for mask, positions in by_mask.values():
        allowed[positions] = mask
    return CanvasTemplate(tokens=tokens, fixed=fixed, allowed=allowed,
                          meta={"schema_digest": layout.skeleton.digest, "slots": len(layout.skeleton.slots)})
