"""Adapting SmolLM2-135M-Instruct into a block-diffusion denoiser (data, layout, training loop)."""
