"""The masked-diffusion loss: cross-entropy at masked positions only.

The 49k-vocab ``lm_head`` dominates cost if applied to every position, so the hidden
states that predict masked tokens are gathered first and only they go through it.
With complementary masks each answer token is a target exactly once, so a plain mean
(no 1/t weighting) weights all answer tokens equally.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from diffusion_engine.adapters.smollm2_block import BlockDiffusionLM
from diffusion_engine.training.layout import PackedBatch


def masked_diffusion_loss(lm: BlockDiffusionLM, batch: PackedBatch) -> torch.Tensor:
    device = lm.device
    hidden = lm.hidden_states(
        batch.input_ids.to(device),
        batch.attention_mask.to(device),
        batch.position_ids.to(device),
    )
    picked = hidden[0, batch.source_index.to(device)]
    logits = lm.logits(picked)
    return F.cross_entropy(logits, batch.targets.to(device))
