"""DiffusionGemma through transformers' own ``DiffusionGemmaForBlockDiffusion``.

The model is an encoder/decoder pair sharing weights: the (causal) encoder writes the
prefix KV cache, the decoder refines a canvas with bidirectional attention over
``cache + canvas`` and reads the cache without writing it. It denoises *uniform noise*
(no mask token) and is self-conditioned on the previous step's logits.

This adapter keeps one ``DynamicCache`` per request (prompt + committed blocks, each
encoded once) and runs the decoder layers directly for a batch of rows whose caches
have different lengths: the rows' KV are left-padded into one tensor per layer and the
padding is masked out. RoPE is already baked into cached keys, so padding does not
shift anything. The stacked batch is memoised until a row joins, leaves or commits.

Infill (``suffix_ids``): the suffix is encoded by the encoder at the positions right
after the canvas, on a throwaway copy of the row's cache, and the decoder attends to
it like any cached token. The encoder is causal, so the suffix itself does not see the
canvas; the canvas sees the suffix. DiffusionGemma was not trained for infill.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Sequence

import torch


@dataclass(eq=False)
class GemmaPrefixCache:
    kv: object  # transformers DynamicCache holding prompt + committed blocks
    length: int  # positions encoded so far (next canvas starts here)
    version: int = 0
    suffix_kv: dict = field(default_factory=dict)  # (version, suffix id, canvas len) -> DynamicCache


class _StackedKV:
    """Duck-typed read-only cache for the decoder attention (`layers[i].keys/values`)."""

    is_compileable = False

    def __init__(self, layers: list[SimpleNamespace]) -> None:
        self.layers = layers


class DiffusionGemmaDenoiser:
    mask_token_id = None  # uniform-noise model
    uses_self_conditioning = True

    def __init__(self, model, *, eos_token_ids: Sequence[int] | None = None) -> None:
        from transformers import DynamicCache

        self._DynamicCache = DynamicCache
        self.model = model.eval()
        self.config = model.config
        self.text_config = model.config.text_config
        self.decoder = model.model.decoder
        self.encoder = model.model.encoder
        eos = eos_token_ids if eos_token_ids is not None else self.text_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        self.eos_token_ids = frozenset(int(e) for e in eos)
        self.pad_token_id = int(self.text_config.pad_token_id or 0)
        self.block_size = int(self.config.canvas_length)
        self.vocab_size = int(self.text_config.vocab_size)
        self.device = next(model.parameters()).device
        self.layer_types = list(self.text_config.layer_types)
        self._attn_impl = self.text_config._attn_implementation or "sdpa"
        self._stack_key: tuple | None = None
        self._stack: tuple | None = None

    @classmethod
    def from_pretrained(cls, path: str, *, dtype: torch.dtype = torch.bfloat16, device: str = "cpu"):
        from transformers import DiffusionGemmaForBlockDiffusion

        model = DiffusionGemmaForBlockDiffusion.from_pretrained(path, dtype=dtype).to(device)
        return cls(model)

    # ------------------------------------------------------------------ cache
    @torch.inference_mode()
    def new_cache(self, prompt_ids: torch.Tensor) -> GemmaPrefixCache:
        if prompt_ids.numel() == 0:
            raise ValueError("DiffusionGemma needs at least one prompt token; prepend BOS for an empty prompt")
        cache = GemmaPrefixCache(kv=self._DynamicCache(config=self.text_config), length=0)
        return self.commit(cache, prompt_ids)

    @torch.inference_mode()
    def commit(self, cache: GemmaPrefixCache, token_ids: torch.Tensor) -> GemmaPrefixCache:
        self._encode(cache.kv, token_ids, cache.length)
        cache.length += int(token_ids.numel())
        cache.version += 1
        cache.suffix_kv.clear()
        return cache

    def _encode(self, kv, token_ids: torch.Tensor, start: int) -> None:
        ids = token_ids.reshape(1, -1).to(self.device)
        pos = torch.arange(start, start + ids.shape[1], device=self.device).unsqueeze(0)
        self.encoder(input_ids=ids, cache=kv, position_ids=pos)

    def _with_suffix(self, cache: GemmaPrefixCache, suffix: torch.Tensor, canvas_len: int):
        key = (cache.version, id(suffix), canvas_len)
        kv = cache.suffix_kv.get(key)
        if kv is None:
            kv = self._DynamicCache(config=self.text_config)
            for src, dst in zip(cache.kv.layers, kv.layers):
                # DynamicLayer.update concatenates into new tensors, so sharing is safe
                dst.lazy_initialization(src.keys, src.values)
                dst.keys, dst.values = src.keys, src.values
                if hasattr(src, "cumulative_length"):
                    dst.cumulative_length = src.cumulative_length
            self._encode(kv, suffix, cache.length + canvas_len)
            cache.suffix_kv = {key: kv}
        return kv

    # ----------------------------------------------------------------- logits
    @torch.inference_mode()
    def canvas_logits(
        self,
        canvases: torch.Tensor,
        caches: Sequence[GemmaPrefixCache],
        suffix_ids: Sequence[torch.Tensor | None] | None = None,
        self_conditioning: Sequence[torch.Tensor | None] | None = None,
    ) -> torch.Tensor:
        b, c = canvases.shape
        kvs = [
            self._with_suffix(cache, suffix_ids[i], c) if suffix_ids and suffix_ids[i] is not None else cache.kv
            for i, cache in enumerate(caches)
        ]
        positions = torch.stack(
            [torch.arange(cache.length, cache.length + c, device=self.device) for cache in caches]
        )
        if b == 1:
            kv, masks = kvs[0], {lt: None for lt in set(self.layer_types)}
        else:
            kv, masks = self._stacked(kvs, c)
        sc = None
        if self_conditioning is not None and any(x is not None for x in self_conditioning):
            sc = torch.stack(
                [x if x is not None else torch.zeros((c, self.vocab_size), device=self.device)
                 for x in self_conditioning]
            )
            sc_mask = torch.tensor([x is not None for x in self_conditioning], device=self.device)
        return self._decode(canvases.to(self.device), kv, masks, positions, sc, sc_mask if sc is not None else None)

    def _decode(self, canvases, kv, masks, positions, sc, sc_mask) -> torch.Tensor:
        """DiffusionGemmaDecoderModel.forward + lm_head + softcap, minus the per-call
        wrapper work (output recording, mask building, config merging)."""
        dec = self.decoder
        embeds = dec.embed_tokens(canvases)
        if sc is not None:
            weight = dec.embed_tokens.weight
            soft = torch.matmul(sc.softmax(dim=-1, dtype=torch.float32).to(weight.dtype), weight)
            soft = soft * dec.embed_tokens.embed_scale.to(embeds.dtype)
            if sc_mask is not None and not bool(sc_mask.all()):
                soft = soft * sc_mask.to(soft.dtype)[:, None, None]
        else:
            soft = torch.zeros_like(embeds)
        hidden = dec.self_conditioning(embeds, soft)
        rope = {lt: dec.rotary_emb(hidden, positions, lt) for lt in dec.unique_layer_types}
        for i, layer in enumerate(dec.layers[: self.text_config.num_hidden_layers]):
            lt = self.layer_types[i]
            hidden = layer(hidden, position_embeddings=rope[lt], attention_mask=masks[lt],
                           position_ids=positions, cache=kv)
        hidden = dec.norm(hidden)
        logits = self.model.lm_head(hidden).float()
        cap = self.model.final_logit_softcapping
        if cap is not None:
            logits = torch.tanh(logits / cap) * cap
        return logits

    def _stacked(self, kvs: list, canvas_len: int):
        key = (tuple(id(kv) for kv in kvs), tuple(kv.get_seq_length() for kv in kvs), canvas_len)
        if key == self._stack_key:
            return self._stack
        layers, masks = [], {}
        for li, lt in enumerate(self.layer_types):
            keys = [kv.layers[li].keys for kv in kvs]
            values = [kv.layers[li].values for kv in kvs]
            longest = max(k.shape[2] for k in keys)
            valid = torch.zeros((len(kvs), longest + canvas_len), dtype=torch.bool, device=self.device)
            pk, pv = [], []
            for row, (k, v) in enumerate(zip(keys, values)):
                pad = longest - k.shape[2]
                pk.append(torch.nn.functional.pad(k, (0, 0, pad, 0)))
                pv.append(torch.nn.functional.pad(v, (0, 0, pad, 0)))
                valid[row, pad:] = True
            layers.append(SimpleNamespace(keys=torch.cat(pk), values=torch.cat(pv)))
            if lt not in masks:
                masks[lt] = self._mask(valid, canvas_len)
        self._stack_key, self._stack = key, (_StackedKV(layers), masks)
        return self._stack

    def _mask(self, valid: torch.Tensor, canvas_len: int) -> torch.Tensor:
        mask = valid[:, None, None, :].expand(-1, 1, canvas_len, -1)
        if self._attn_impl == "eager":
            dtype = self.decoder.embed_tokens.weight.dtype
            return torch.zeros(mask.shape, dtype=dtype, device=self.device).masked_fill(
                ~mask, torch.finfo(dtype).min
            )
        return mask
