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

import itertools
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Sequence

import torch
import torch.nn.functional as F

from ..loading import MODEL_LOAD_LOCK


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


@dataclass(eq=False)
class GemmaPrefixCache:
    kv: object  # transformers DynamicCache holding prompt + committed blocks
    length: int  # positions encoded so far (next canvas starts here)
    version: int = 0
    suffix_kv: dict = field(default_factory=dict)  # (version, suffix ids, canvas len) -> DynamicCache
    #: never reused (unlike id()), so memoised batch layouts cannot mix up requests
    uid: int = field(default_factory=itertools.count().__next__)


def _suffix_key(suffix: torch.Tensor | None) -> tuple[int, ...] | None:
    """Memo key of an infill suffix: its token ids. Not ``id()``: a freed tensor's id is
    reused by the next one, which then hit another suffix's memoised K/V."""
    return None if suffix is None else tuple(suffix.flatten().tolist())


class _StackedKV:
    """Duck-typed read-only cache for the decoder attention (`layers[i].keys/values`)."""

    is_compileable = False

    def __init__(self, layers: list[SimpleNamespace]) -> None:
        self.layers = layers


class DiffusionGemmaDenoiser:
    mask_token_id = None  # uniform-noise model
    uses_self_conditioning = True

    def __init__(self, model, *, eos_token_ids: Sequence[int] | None = None, fast: bool | None = None) -> None:
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
        self._rope_memo: list = []
        if fast is None:  # fusing weights duplicates the attention/MLP projections
            fast = sum(p.numel() for p in model.parameters()) < LEAN_MAX_PARAMS
        self._lean = _LeanDecoder(self.decoder) if fast and _LeanDecoder.supports(self.decoder) else None
        if self._lean is not None:
            self._attn_impl = "sdpa"  # the lean path calls SDPA itself with boolean masks
        self._stack_key: tuple | None = None
        self._stack: tuple | None = None

    @classmethod
    def from_pretrained(cls, path: str, *, dtype: torch.dtype = torch.bfloat16, device: str = "cpu"):
        from transformers import DiffusionGemmaForBlockDiffusion

        with MODEL_LOAD_LOCK:  # never beside another model load (``loading.py``)
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
        key = (cache.version, _suffix_key(suffix), canvas_len)
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
            layout = tuple(
                (cache.uid, cache.version, _suffix_key(suffix_ids[i]) if suffix_ids else None)
                for i, cache in enumerate(caches)
            )
            kv, masks = self._stacked(kvs, c, layout)
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
        if self._lean is not None:
            hidden = self._lean(embeds, soft, kv, masks, self._rope(positions))
        else:
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

    def _rope(self, positions: torch.Tensor) -> dict:
        """cos/sin per layer type, memoised: consecutive steps reuse the same positions."""
        key = (positions[:, 0].tolist(), positions.shape[1])
        for k, v in self._rope_memo:
            if k == key:
                return v
        dummy = torch.empty(0, dtype=self.decoder.embed_tokens.weight.dtype, device=self.device)
        value = {}
        for lt in self.decoder.unique_layer_types:
            cos, sin = self.decoder.rotary_emb(dummy, positions, lt)
            value[lt] = (cos.unsqueeze(2), sin.unsqueeze(2))
        self._rope_memo = [(key, value)] + self._rope_memo[:7]
        return value

    def _stacked(self, kvs: list, canvas_len: int, layout: tuple):
        key = (layout, canvas_len)
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


# ----------------------------------------------------------------------------------
# Lean decoder: the math of DiffusionGemmaSelfConditioning + DiffusionGemmaDecoderTextLayer
# (+ final norm) on the model's own parameters, with q/k/v and gate/up projections fused
# and, for few experts, a dense expert product. On small models a denoising step is
# dominated by per-op dispatch and per-module Python overhead, not FLOPs, so fewer,
# larger ops are what makes a step faster. Checked against the module path in tests.

LEAN_MAX_PARAMS = 1_000_000_000  # above this, duplicated fused weights cost too much memory
DENSE_EXPERTS_MAX = 8  # dense expert product costs num_experts/top_k x the FLOPs


def _rms(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    if x.dtype == torch.float32:
        return torch.rms_norm(x, (x.shape[-1],), weight, eps)
    return torch.rms_norm(x.float(), (x.shape[-1],), weight, eps).to(x.dtype)


def _w(norm_module) -> torch.Tensor | None:
    return norm_module.weight.detach().float() if norm_module.with_scale else None


def _act(name: str, module):
    if name == "gelu_pytorch_tanh":
        return lambda x: F.gelu(x, approximate="tanh")
    return module


class _LeanLayer:
    def __init__(self, layer, config) -> None:
        attn, mlp, router, experts = layer.self_attn, layer.mlp, layer.router, layer.experts
        eps = config.rms_norm_eps
        self.eps = eps
        self.head_dim = attn.head_dim
        projections = [attn.q_proj.weight, attn.k_proj.weight]
        if attn.v_proj is not None:
            projections.append(attn.v_proj.weight)
        self.qkv = torch.cat([w.detach() for w in projections]).contiguous()
        self.split = [w.shape[0] for w in projections]
        self.shared_kv = attn.v_proj is None  # values are the un-normalised keys
        self.q_norm, self.k_norm = _w(attn.q_norm), _w(attn.k_norm)
        self.o_proj = attn.o_proj.weight.detach()
        self.scaling = attn.scaling
        self.gqa = attn.num_key_value_groups > 1
        self.in_norm, self.post_attn_norm = _w(layer.input_layernorm), _w(layer.post_attention_layernorm)
        self.pre_ff, self.post_ff1 = _w(layer.pre_feedforward_layernorm), _w(layer.post_feedforward_layernorm_1)
        self.pre_ff2, self.post_ff2 = _w(layer.pre_feedforward_layernorm_2), _w(layer.post_feedforward_layernorm_2)
        self.post_ff = _w(layer.post_feedforward_layernorm)
        self.gate_up = torch.cat([mlp.gate_proj.weight.detach(), mlp.up_proj.weight.detach()]).contiguous()
        self.down = mlp.down_proj.weight.detach()
        self.act = _act(config.hidden_activation, mlp.act_fn)
        self.router_scale = (router.scale.detach() * router.scalar_root_size).float()
        self.router_proj = router.proj.weight.detach()
        self.per_expert_scale = router.per_expert_scale.detach()
        self.top_k = config.top_k_experts
        self.num_experts = experts.num_experts
        self.experts = experts
        self.dense = experts.num_experts <= DENSE_EXPERTS_MAX
        if self.dense:
            self.e_gate_up = experts.gate_up_proj.detach().transpose(1, 2).contiguous()  # [E, H, 2I]
            self.e_down = experts.down_proj.detach().transpose(1, 2).contiguous()  # [E, I, H]
        self.layer_scalar = layer.layer_scalar

    def __call__(self, hidden, cos, sin, mask, kv_layer):
        b, c, _ = hidden.shape
        eps, d = self.eps, self.head_dim
        x = _rms(hidden, self.in_norm, eps)
        parts = F.linear(x, self.qkv).split(self.split, dim=-1)
        q = _rms(parts[0].view(b, c, -1, d), self.q_norm, eps)
        k_raw = parts[1].view(b, c, -1, d)
        v = k_raw if self.shared_kv else parts[2].view(b, c, -1, d)
        k = _rms(k_raw, self.k_norm, eps)
        v = _rms(v, None, eps).transpose(1, 2)
        q = (q * cos + _rotate_half(q) * sin).transpose(1, 2)
        k = (k * cos + _rotate_half(k) * sin).transpose(1, 2)
        keys = torch.cat([kv_layer.keys, k], dim=-2)
        values = torch.cat([kv_layer.values, v], dim=-2)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=self.scaling,
                                             enable_gqa=self.gqa)
        out = F.linear(out.transpose(1, 2).reshape(b, c, -1), self.o_proj)
        hidden = hidden + _rms(out, self.post_attn_norm, eps)

        residual = hidden
        gate, up = F.linear(_rms(residual, self.pre_ff, eps), self.gate_up).chunk(2, dim=-1)
        dense = _rms(F.linear(self.act(gate) * up, self.down), self.post_ff1, eps)
        flat = residual.reshape(-1, residual.shape[-1])
        scores = F.linear(_rms(flat, None, eps) * self.router_scale, self.router_proj)
        top_w, top_i = torch.topk(F.softmax(scores, dim=-1, dtype=torch.float32), k=self.top_k, dim=-1)
        top_w = top_w / top_w.sum(dim=-1, keepdim=True) * self.per_expert_scale[top_i]
        expert_in = _rms(flat, self.pre_ff2, eps)
        if self.dense:
            eg, eu = torch.matmul(expert_in, self.e_gate_up).chunk(2, dim=-1)  # [E, T, I]
            per_expert = torch.matmul(self.act(eg) * eu, self.e_down)  # [E, T, H]
            weights = torch.zeros(flat.shape[0], self.num_experts, dtype=top_w.dtype,
                                  device=flat.device).scatter_(1, top_i, top_w)
            sparse = torch.einsum("eth,te->th", per_expert, weights.to(per_expert.dtype))
        else:
            sparse = self.experts(expert_in, top_i, top_w)
        sparse = _rms(sparse.reshape(residual.shape), self.post_ff2, eps)
        hidden = residual + _rms(dense + sparse, self.post_ff, eps)
        return hidden * self.layer_scalar


class _LeanDecoder:
    @staticmethod
    def supports(decoder) -> bool:
        cfg = decoder.text_config
        if cfg.attention_bias or not getattr(cfg, "num_experts", None):
            return False
        return not any(getattr(layer.experts, "has_bias", False) for layer in decoder.layers)

    def __init__(self, decoder) -> None:
        cfg = decoder.text_config
        sc = decoder.self_conditioning
        self.eps = cfg.rms_norm_eps
        self.sc_pre, self.sc_post = _w(sc.pre_norm), _w(sc.post_norm)
        self.sc_gate_up = torch.cat([sc.gate_proj.weight.detach(), sc.up_proj.weight.detach()]).contiguous()
        self.sc_down = sc.down_proj.weight.detach()
        self.sc_act = _act(cfg.hidden_activation, sc.act_fn)
        self.layers = [_LeanLayer(layer, cfg) for layer in decoder.layers[: cfg.num_hidden_layers]]
        self.layer_types = list(cfg.layer_types)
        self.final_norm = _w(decoder.norm)

    def __call__(self, embeds, soft, kv, masks, rope):
        eps = self.eps
        gate, up = F.linear(_rms(soft, self.sc_pre, eps), self.sc_gate_up).chunk(2, dim=-1)
        hidden = _rms(embeds + F.linear(self.sc_act(gate) * up, self.sc_down), self.sc_post, eps)
        for i, layer in enumerate(self.layers):
            lt = self.layer_types[i]
            hidden = layer(hidden, *rope[lt], masks[lt], kv.layers[i])
        return _rms(hidden, self.final_norm, eps)
