"""Generic masked-diffusion checkpoints (LLaDA / Dream style) from a local directory.

Such models are plain transformers run with *full bidirectional attention* over
``prefix + canvas (+ suffix)`` and a mask token in undecided positions. There is no KV
cache here: a bidirectional model's prefix states depend on the canvas, so every step
recomputes the whole sequence (the "cache" only stores committed token ids). That is
exact for these models and costs O(prefix) per step; block-causal models should get
their own adapter with a real cache (see ``smollm2_block.py``).

Loading is ``trust_remote_code=False`` by default: checkpoints whose architecture is a
``*ForMaskedLM`` load through ``AutoModelForMaskedLM``; others through
``AutoModelForCausalLM`` with a 4-D all-visible attention mask, which turns causal
attention bidirectional in transformers' attention implementations. Checkpoints that only
ship custom modelling code (the original LLaDA/Dream repos) need
``trust_remote_code=True`` and an explicit, reviewed local copy.

``shift=True`` is for models adapted from AR checkpoints (Dream): the hidden state at
``i-1`` predicts token ``i``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..loading import MODEL_LOAD_LOCK


@dataclass(eq=False)
class TokenPrefix:
    ids: torch.Tensor  # LongTensor[L]: prompt + committed blocks


class MaskedLMDenoiser:
    def __init__(
        self,
        model,
        *,
        mask_token_id: int,
        eos_token_ids: Sequence[int],
        pad_token_id: int,
        block_size: int = 32,
        shift: bool = False,
        bidirectional_mask: bool | None = None,
    ) -> None:
        self.model = model.eval()
        self.mask_token_id = int(mask_token_id)
        self.eos_token_ids = frozenset(int(e) for e in eos_token_ids)
        self.pad_token_id = int(pad_token_id)
        self.block_size = int(block_size)
        self.vocab_size = int(model.config.vocab_size)
        self.device = next(model.parameters()).device
        self.shift = shift
        # causal-by-default models need an explicit 4-D mask to see the whole sequence
        if bidirectional_mask is None:
            bidirectional_mask = not type(model).__name__.endswith("ForMaskedLM")
        self.bidirectional_mask = bidirectional_mask

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        block_size: int = 32,
        dtype: torch.dtype = torch.float32,
        device: str = "cpu",
        mask_token_id: int | None = None,
        shift: bool = False,
        trust_remote_code: bool = False,
    ) -> "MaskedLMDenoiser":
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"{path} is not a local checkpoint directory (nothing loads from a hub)")
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        archs = config.architectures or []
        auto = AutoModelForMaskedLM if any(a.endswith("ForMaskedLM") for a in archs) else AutoModelForCausalLM
        with MODEL_LOAD_LOCK:  # never beside another model load (``loading.py``)
            model = auto.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code).to(device)
        tokenizer = None
        if (path / "tokenizer_config.json").exists() or (path / "tokenizer.json").exists():
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        mask_id = mask_token_id
        if mask_id is None:
            mask_id = getattr(config, "mask_token_id", None)
        if mask_id is None and tokenizer is not None:
            mask_id = tokenizer.mask_token_id
        if mask_id is None:
            raise ValueError(
                f"no mask token id in {path}: pass mask_token_id=... (LLaDA uses 126336) "
                "or set mask_token_id in config.json"
            )
        eos = getattr(config, "eos_token_id", None)
        if eos is None and tokenizer is not None:
            eos = tokenizer.eos_token_id
        eos_ids = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
        pad = getattr(config, "pad_token_id", None)
        if pad is None:
            pad = eos_ids[0] if eos_ids else 0
        return cls(model, mask_token_id=mask_id, eos_token_ids=eos_ids, pad_token_id=pad,
                   block_size=block_size, shift=shift)

    # ------------------------------------------------------------------ cache
    def new_cache(self, prompt_ids: torch.Tensor) -> TokenPrefix:
        if self.shift and prompt_ids.numel() == 0:
            raise ValueError("a token-shift model needs at least one prompt token; prepend BOS")
        return TokenPrefix(prompt_ids.reshape(-1).to(self.device))

    def commit(self, cache: TokenPrefix, token_ids: torch.Tensor) -> TokenPrefix:
        cache.ids = torch.cat([cache.ids, token_ids.reshape(-1).to(self.device)])
        return cache

    # ----------------------------------------------------------------- logits
    @torch.inference_mode()
    def canvas_logits(
        self,
        canvases: torch.Tensor,
        caches: Sequence[TokenPrefix],
        suffix_ids: Sequence[torch.Tensor | None] | None = None,
    ) -> torch.Tensor:
        b, c = canvases.shape
        rows = []
        for i, cache in enumerate(caches):
            parts = [cache.ids, canvases[i].to(self.device)]
            if suffix_ids is not None and suffix_ids[i] is not None:
                parts.append(suffix_ids[i].to(self.device))
            rows.append(torch.cat(parts))
        longest = max(r.numel() for r in rows)
        # right padding keeps absolute positions equal to the unbatched ones
        ids = torch.full((b, longest), self.pad_token_id, dtype=torch.long, device=self.device)
        valid = torch.zeros((b, longest), dtype=torch.bool, device=self.device)
        for i, r in enumerate(rows):
            ids[i, : r.numel()] = r
            valid[i, : r.numel()] = True
        if self.bidirectional_mask:
            attention_mask = valid[:, None, None, :].expand(b, 1, longest, longest)
            positions = torch.arange(longest, device=self.device).expand(b, -1)
            out = self.model(input_ids=ids, attention_mask=attention_mask, position_ids=positions)
        else:
            out = self.model(input_ids=ids, attention_mask=valid.long())
        logits = out.logits.float()
        starts = torch.tensor([cache.ids.numel() for cache in caches], device=self.device)
        if self.shift:
            starts = starts - 1
        index = starts[:, None] + torch.arange(c, device=self.device)[None, :]
        return logits.gather(1, index[:, :, None].expand(-1, -1, logits.shape[-1]))
