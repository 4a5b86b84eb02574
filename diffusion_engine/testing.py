"""Tiny random models shared by tests and benches (seeded, built from config, never downloaded)."""

from __future__ import annotations

import torch

#: vocabulary of the tiny models; small so full-vocab ops stay cheap on 2 CPU cores
TINY_VOCAB = 96
TINY_CANVAS = 8


def tiny_diffusion_gemma(seed: int = 0, *, canvas_length: int = TINY_CANVAS, vocab_size: int = TINY_VOCAB):
    """A ~100k-parameter ``DiffusionGemmaForBlockDiffusion`` with random weights.

    ``vision_config`` is given explicitly and tiny: leaving it ``None`` silently builds the
    default 167M-parameter vision tower. MoE fields are filled small so the MoE path runs.
    Special ids (image/boi/eoi) are moved inside the tiny vocabulary.
    """
    from transformers import DiffusionGemmaConfig, DiffusionGemmaForBlockDiffusion

    text_config = {
        "vocab_size": vocab_size,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "global_head_dim": 16,
        "num_global_key_value_heads": 1,
        "layer_types": ["sliding_attention", "full_attention"],
        "sliding_window": 64,
        "max_position_embeddings": 512,
        "num_experts": 4,
        "top_k_experts": 2,
        "moe_intermediate_size": 16,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "bos_token_id": 2,
    }
    vision_config = {
        "model_type": "gemma4_vision",
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "patch_size": 4,
        "position_embedding_size": 16,
    }
    config = DiffusionGemmaConfig(
        text_config=text_config,
        vision_config=vision_config,
        canvas_length=canvas_length,
        image_token_id=vocab_size - 1,
        boi_token_id=vocab_size - 2,
        eoi_token_id=vocab_size - 3,
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    model = DiffusionGemmaForBlockDiffusion(config).eval()
    return model
