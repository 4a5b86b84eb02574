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


def tiny_block_denoiser(vocab_size: int, *, block_size: int = 4, mask_token_id: int = 5,
                        eos_token_ids: tuple[int, ...] = (2,), seed: int = 0, lora_scale: float = 0.05,
                        dtype: torch.dtype = torch.float64):
    """A tiny random Llama with the SmolLM2 block-diffusion adapter attached
    (``SmolLM2BlockDenoiser``). The LoRA weights are random (``lora_scale`` = 0 makes the
    drafter equal to the base), so drafts agree with the AR base often, not always.
    float64 by default so "identical to AR greedy" tests are exact, not up to float ties."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from diffusion_engine.adapters.smollm2_block import AdapterConfig, BlockDiffusionLM, SmolLM2BlockDenoiser

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=16 if vocab_size > 1000 else 32,
                      intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      head_dim=4 if vocab_size > 1000 else 8, max_position_embeddings=1024,
                      tie_word_embeddings=True)
    cfg._attn_implementation = "sdpa"
    model = LlamaForCausalLM(cfg).eval().to(dtype)
    lm = BlockDiffusionLM(model, AdapterConfig(block_size=block_size, mask_token_id=mask_token_id, pad_token_id=0,
                                               eos_token_ids=eos_token_ids, lora_rank=4, lora_alpha=8.0))
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in lm.lora.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * lora_scale)
    return SmolLM2BlockDenoiser(lm)
