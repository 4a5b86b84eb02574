"""Training sequence layout: ``[clean prompt | clean answer | noisy copy 1 | noisy copy 2]``.

* The clean part is causal, exactly like the AR base and like the committed context at
  inference time (which the adapter KV-caches).
* Each noisy copy holds the answer, padded to whole blocks, with some positions replaced
  by the mask token. Copy 2 masks exactly the positions copy 1 keeps (complementary
  masks), so every answer token is supervised once per example.
* A noisy token in answer block ``b`` sees the clean prompt and clean answer blocks
  ``< b`` and, bidirectionally, its own block of its own copy: the same view the canvas
  has at inference.
* Token shift: the target at answer index ``u`` is predicted from the hidden state of
  index ``u-1`` in the same noisy copy, except at a block start, where (as at
  inference) the last clean token before the block predicts it.
* Skeleton answers (``Example.roles``) keep their fixed text clean in both copies, the
  view the engine gives the denoiser of a structured-output canvas; only slot tokens are
  masked and supervised.
* Padding after the answer's ``<|im_end|>`` is, by default, a mask token in both copies
  and never a target: the engine stops at the first accepted EOS, so nothing needs to be
  predicted there, and supervising pads taught a strong "the answer ends here" prior at
  far canvas positions (early stops on free text). ``supervise_padding=True`` restores
  LLaDA-style EOS/pad supervision.

Several examples are packed into one row with a block-diagonal mask (positions restart
per example), which keeps 1-thread CPU matmuls large without padding waste.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# roles of skeleton answer tokens: given text, a supervised token, a position nothing is asked of
from diffusion_engine.structured.fillers import FIXED, IGNORED, TARGET

N_COPIES = 2


@dataclass(frozen=True)
class Example:
    prompt_ids: tuple[int, ...]
    answer_ids: tuple[int, ...]
    #: per answer token (skeleton canvases): FIXED tokens stay clean in both noisy copies and
    #: are never targets, as the engine's fixed template text; IGNORED ones are masked in both
    #: and never targets. None: every answer token is a TARGET
    roles: tuple[int, ...] | None = None


@dataclass
class PackedBatch:
    input_ids: torch.Tensor  # [1, L]
    position_ids: torch.Tensor  # [1, L]
    attention_mask: torch.Tensor  # [1, 1, L, L] bool, True = may attend
    source_index: torch.Tensor  # [N] flat index of the hidden state that predicts each target
    targets: torch.Tensor  # [N]
    answer_tokens: int  # real (unpadded) answer tokens in the row

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[1])


def pad_to_blocks(answer: list[int] | tuple[int, ...], block_size: int, pad_id: int) -> list[int]:
    """Pad ``answer`` with ``pad_id`` up to a multiple of ``block_size`` (at least one block)."""
    n_blocks = max(1, -(-len(answer) // block_size))
    return list(answer) + [pad_id] * (n_blocks * block_size - len(answer))


def sample_block_masks(n_tokens: int, block_size: int, generator: torch.Generator) -> torch.Tensor:
    """Mask for copy 1: per block a ratio ``t ~ U(0, 1)``, each token masked with prob ``t``."""
    n_blocks = n_tokens // block_size
    t = torch.rand(n_blocks, 1, generator=generator)
    return (torch.rand(n_blocks, block_size, generator=generator) < t).reshape(-1)


def example_length(ex: Example, block_size: int) -> int:
    a = max(1, -(-len(ex.answer_ids) // block_size)) * block_size
    return len(ex.prompt_ids) + (1 + N_COPIES) * a


def pack(
    examples: list[Example],
    block_size: int,
    mask_id: int,
    pad_id: int,
    generator: torch.Generator,
    copy1_masks: list[torch.Tensor] | None = None,
    supervise_padding: bool = False,
) -> PackedBatch:
    """Lay out ``examples`` in one row (see module doc). ``copy1_masks`` overrides sampling (tests)."""
    ids, pos, kind, block, sample = [], [], [], [], []
    sources, targets = [], []
    answer_tokens = 0
    offset = 0
    for n, ex in enumerate(examples):
        if not ex.prompt_ids:
            raise ValueError("an example needs a non-empty prompt: its last token predicts the first answer token")
        p = len(ex.prompt_ids)
        answer = pad_to_blocks(ex.answer_ids, block_size, pad_id)
        a = len(answer)
        answer_tokens += len(ex.answer_ids)
        m1 = copy1_masks[n] if copy1_masks is not None else sample_block_masks(a, block_size, generator)
        copy_masks = [m1, ~m1]
        is_pad = torch.arange(a) >= len(ex.answer_ids)
        if not supervise_padding:
            copy_masks = [m | is_pad for m in copy_masks]
        not_target = torch.zeros(a, dtype=torch.bool)
        if ex.roles is not None:
            if len(ex.roles) != len(ex.answer_ids):
                raise ValueError(f"example {n}: {len(ex.roles)} roles for {len(ex.answer_ids)} answer tokens")
            roles = torch.tensor(list(ex.roles) + [IGNORED] * (a - len(ex.roles)))
            copy_masks = [(m & (roles != FIXED)) | (roles == IGNORED) for m in copy_masks]
            not_target = roles != TARGET
        if not supervise_padding:
            not_target |= is_pad
        # clean prompt + clean answer
        clean = list(ex.prompt_ids) + answer
        ids += clean
        pos += range(p + a)
        kind += [0] * (p + a)
        block += [-1] * (p + a)
        sample += [n] * (p + a)
        answer_t = torch.tensor(answer)
        for c, m in enumerate(copy_masks, start=1):
            start = offset + p + a + (c - 1) * a
            ids += torch.where(m, torch.full_like(answer_t, mask_id), answer_t).tolist()
            pos += range(p, p + a)
            kind += [c] * a
            block += [u // block_size for u in range(a)]
            sample += [n] * a
            supervised = m & ~not_target
            for u in torch.nonzero(supervised).flatten().tolist():
                src = offset + p + u - 1 if u % block_size == 0 else start + u - 1
                sources.append(src)
                targets.append(answer[u])
        offset += p + (1 + N_COPIES) * a

    pos_t = torch.tensor(pos)
    kind_t = torch.tensor(kind)
    block_t = torch.tensor(block)
    sample_t = torch.tensor(sample)
    # the first answer position of each example = its prompt length, per token
    prompt_len = torch.tensor([len(examples[s].prompt_ids) for s in sample])
    q_kind, k_kind = kind_t[:, None], kind_t[None, :]
    q_pos, k_pos = pos_t[:, None], pos_t[None, :]
    q_block, k_block = block_t[:, None], block_t[None, :]
    clean_limit = torch.where(q_kind == 0, q_pos + 1, prompt_len[:, None] + q_block * block_size)
    sees_clean = (k_kind == 0) & (k_pos < clean_limit)
    sees_own_block = (q_kind > 0) & (k_kind == q_kind) & (k_block == q_block)
    allowed = (sees_clean | sees_own_block) & (sample_t[:, None] == sample_t[None, :])
    return PackedBatch(
        input_ids=torch.tensor(ids).unsqueeze(0),
        position_ids=pos_t.unsqueeze(0),
        attention_mask=allowed[None, None],
        source_index=torch.tensor(sources, dtype=torch.long),
        targets=torch.tensor(targets, dtype=torch.long),
        answer_tokens=answer_tokens,
    )
