"""Denoiser adapters (see ``diffusion_engine/denoiser.py`` for the protocol).

* ``diffusion_gemma.DiffusionGemmaDenoiser``: DiffusionGemma via transformers, KV-cached prefix.
* ``masked_lm.MaskedLMDenoiser``: LLaDA/Dream-style local checkpoints, prefix recomputed.
* ``smollm2_block.SmolLM2BlockDenoiser``: SmolLM2 + LoRA adapted to block diffusion.

Imported lazily by callers: each pulls in transformers model code.
"""
