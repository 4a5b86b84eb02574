"""Canvas templates: what the structured-output layer hands the engine.

A template describes every output position ``0..N-1`` of one generation:

* ``tokens[i]``: a token id, or :data:`MASK` for "the model decides". A given id at a
  non-fixed position is only the *initial* value (a draft the model may resample).
* ``fixed[i]``: the token at ``i`` is given and is never resampled (JSON punctuation,
  keys, tool-call scaffolding...).
* ``allowed``: per-position allowed-token sets (``BoolTensor[V]`` or ``None`` = any token).
  Masks are stored once and referenced by index, so a 500-position enum field that uses
  one mask costs one ``V``-sized tensor, not 500.

With a template the engine generates exactly ``len(template)`` tokens (chained in blocks
of ``block_size``). EOS is not a stop unless the template allows it: set ``allow_eos`` to
let any free position end the answer, or include EOS ids in a position's allowed mask to
let that position end it. Elsewhere EOS ids are banned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch

#: sentinel in ``CanvasTemplate.tokens``: position is free, the model decides
MASK = -1


class AllowedTokens:
    """Map ``position -> BoolTensor[V] | None`` with masks shared by reference.

    ``index[i] == -1`` means position ``i`` is unconstrained; otherwise it points into
    ``masks``. Setting the same tensor object at many positions stores it once.
    """

    def __init__(self, length: int, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self.index = torch.full((length,), -1, dtype=torch.long)
        self.masks: list[torch.Tensor] = []
        self._slot_of: dict[int, int] = {}  # id(mask) -> slot, so re-used masks are not copied

    def __len__(self) -> int:
        return int(self.index.numel())

    def __getitem__(self, position: int) -> torch.Tensor | None:
        slot = int(self.index[position])
        return None if slot < 0 else self.masks[slot]

    def __setitem__(self, positions: int | slice | Sequence[int], mask: torch.Tensor | None) -> None:
        if mask is None:
            self.index[positions] = -1
            return
        if mask.dtype != torch.bool or mask.shape != (self.vocab_size,):
            raise ValueError(
                f"allowed mask must be BoolTensor[{self.vocab_size}], got {mask.dtype} {tuple(mask.shape)}; "
                "build it with torch.zeros(vocab_size, dtype=torch.bool) and set allowed ids to True"
            )
        if not bool(mask.any()):
            raise ValueError("allowed mask permits no token at all; allow at least one id")
        slot = self._slot_of.get(id(mask))
        if slot is None:
            slot = len(self.masks)
            self.masks.append(mask)
            self._slot_of[id(mask)] = slot
        self.index[positions] = slot

    def any_constraint(self, start: int, end: int) -> bool:
        return bool((self.index[start:end] >= 0).any())

    def block_mask(self, start: int, end: int, device: torch.device) -> torch.Tensor | None:
        """``BoolTensor[end-start, V]`` for a block, or ``None`` when nothing there is constrained."""
        idx = self.index[start:end]
        if not bool((idx >= 0).any()):
            return None
        out = torch.ones((idx.numel(), self.vocab_size), dtype=torch.bool)
        for pos in torch.nonzero(idx >= 0).flatten().tolist():
            out[pos] = self.masks[int(idx[pos])]
        return out.to(device)


@dataclass
class CanvasTemplate:
    """Per-position tokens, fixed flags and allowed-token constraints for one generation."""

    tokens: torch.Tensor  # LongTensor[N], MASK where free
    fixed: torch.Tensor  # BoolTensor[N]
    allowed: AllowedTokens
    #: when True, EOS accepted at any free position ends the answer
    allow_eos: bool = False
    meta: dict = field(default_factory=dict)  # free-form, for the structured-output layer

    def __post_init__(self) -> None:
        n = self.tokens.numel()
        if self.tokens.dim() != 1 or self.fixed.shape != (n,) or len(self.allowed) != n:
            raise ValueError("tokens, fixed and allowed must all describe the same N positions")
        if bool((self.fixed & (self.tokens == MASK)).any()):
            raise ValueError("a fixed position needs a token id, not MASK")

    def __len__(self) -> int:
        return int(self.tokens.numel())

    @classmethod
    def free(cls, length: int, vocab_size: int, *, allow_eos: bool = False) -> "CanvasTemplate":
        """``length`` free positions, no constraints."""
        return cls(
            tokens=torch.full((length,), MASK, dtype=torch.long),
            fixed=torch.zeros(length, dtype=torch.bool),
            allowed=AllowedTokens(length, vocab_size),
            allow_eos=allow_eos,
        )

    @classmethod
    def from_segments(
        cls, segments: Iterable[Sequence[int] | int | tuple[int, torch.Tensor]], vocab_size: int
    ) -> "CanvasTemplate":
        """Build from a skeleton: a list of ids = fixed text, an int ``n`` = ``n`` free
        positions, ``(n, mask)`` = ``n`` free positions constrained to ``mask``."""
        parts: list[tuple[str, object]] = []
        length = 0
        for seg in segments:
            if isinstance(seg, int):
                parts.append(("free", (seg, None)))
                length += seg
            elif isinstance(seg, tuple) and len(seg) == 2 and isinstance(seg[1], torch.Tensor):
                parts.append(("free", seg))
                length += int(seg[0])
            else:
                ids = list(seg)
                parts.append(("fixed", ids))
                length += len(ids)
        tpl = cls.free(length, vocab_size)
        pos = 0
        for kind, value in parts:
            if kind == "fixed":
                ids = value  # type: ignore[assignment]
                tpl.fix(pos, ids)
                pos += len(ids)
            else:
                n, mask = value  # type: ignore[misc]
                if mask is not None:
                    tpl.allowed[pos : pos + n] = mask
                pos += n
        return tpl

    def fix(self, start: int, token_ids: Sequence[int]) -> None:
        """Give tokens at ``start..``; they are never resampled."""
        ids = torch.as_tensor(list(token_ids), dtype=torch.long)
        self.tokens[start : start + ids.numel()] = ids
        self.fixed[start : start + ids.numel()] = True
