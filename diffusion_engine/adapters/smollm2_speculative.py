"""Draft-and-verify on ONE resident SmolLM2: the adapter drafts, the base checks.

This is the model side of the engine's ``verified`` acceptance rule
(:mod:`diffusion_engine.verified`). Two caches per request, because the same weights
play two roles:

* the **drafter** (adapter on) keeps the usual :class:`BlockCache`; each draft forward
  first commits the tokens accepted since the last round (causally) and, in the same
  forward, denoises a fresh all-mask canvas after them, so a round costs one drafter
  forward, not a commit plus a draft;
* the **verifier** (adapter off: bit-identical to the AR model) keeps plain K/V of every
  committed token *except the last*; a verify forward takes ``[last, d_1 .. d_k]`` and
  returns the AR logits that judge each draft token, and the rejected tail of its K/V
  is rolled back afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(eq=False)
class VerifierCache:
    """Adapter-off K/V of the committed tokens except the last one (held back so the
    next verify forward starts with it and its logits judge the first draft token)."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per layer, [1, kv_heads, length, head_dim]
    length: int


def dynamic_cache(kv: list[tuple[torch.Tensor, torch.Tensor]]):
    """A transformers ``DynamicCache`` over per-layer K/V (empty when ``kv`` is)."""
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=kv) if kv else DynamicCache()


def layer_kv(cache, keep: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-layer K/V of the first ``keep`` positions of a ``DynamicCache``."""
    return [(layer.keys[:, :, :keep], layer.values[:, :, :keep]) for layer in cache.layers]


class DraftAndVerify:
    """Mixin for :class:`~diffusion_engine.adapters.smollm2_block.SmolLM2BlockDenoiser`."""

    lm: Any
    mask_token_id: int
    device: torch.device

    # -- verifier (adapter off) ---------------------------------------------------
    @torch.inference_mode()
    def verifier_cache(self, prompt_ids: torch.Tensor) -> VerifierCache:
        """Encode all prompt tokens but the last with the adapter off."""
        ids = torch.as_tensor(prompt_ids, dtype=torch.long).flatten()
        if ids.numel() == 0:
            raise ValueError("the verifier needs at least one prompt token; pass BOS for an empty prompt")
        cache = VerifierCache(kv=[], length=0)
        if ids.numel() > 1:
            self.verify_logits(cache, ids[:-1], want_logits=False)
        return cache

    @torch.inference_mode()
    def verify_logits(self, cache: VerifierCache, ids: torch.Tensor, want_logits: bool = True) -> torch.Tensor | None:
        """AR logits ``[len(ids), V]`` (float32) after ``cache`` + ``ids``; appends ``ids``
        to ``cache`` (roll the rejected tail back with :meth:`verifier_rollback`)."""
        hidden = self.verify_hidden(cache, ids)
        return self.ar_head(hidden) if want_logits else None

    @torch.inference_mode()
    def verify_hidden(self, cache: VerifierCache, ids: torch.Tensor) -> torch.Tensor:
        """:meth:`verify_logits` without the LM head: final hidden states ``[len(ids), H]``
        (the caller applies :meth:`ar_head` where, and over which tokens, it needs scores)."""
        from diffusion_engine.adapters.smollm2_block import causal_mask

        ids = torch.as_tensor(ids, dtype=torch.long).flatten()
        t, dev = ids.numel(), self.device
        past = dynamic_cache(cache.kv)
        with self.lm.adapter_off() as model:
            out = model.model(
                input_ids=ids[None].to(dev),
                attention_mask=causal_mask(t, cache.length)[None, None].to(dev),
                position_ids=(cache.length + torch.arange(t))[None].to(dev),
                cache=past,
                use_cache=True,
            )
        cache.kv, cache.length = layer_kv(past, cache.length + t), cache.length + t
        return out.last_hidden_state[0]

    @torch.inference_mode()
    def ar_head(self, hidden: torch.Tensor, token_ids: torch.Tensor | None = None) -> torch.Tensor:
        """AR logits (float32) of ``hidden`` ``[..., H]``: over the whole vocabulary, or over
        ``token_ids`` only (``[..., len(token_ids)]``: a grammar that allows a few tokens
        needs no 49k-row head)."""
        with self.lm.adapter_off() as model:
            head = model.lm_head
            if token_ids is None:
                return head(hidden).float()
            rows = head.weight.index_select(0, token_ids.to(head.weight.device))
            out = hidden @ rows.T
            bias = getattr(head, "bias", None)
            return (out + bias[token_ids] if bias is not None else out).float()

    @staticmethod
    def verifier_rollback(cache: VerifierCache, count: int) -> None:
        """Forget the last ``count`` tokens (the rejected draft tail)."""
        keep = cache.length - count
        cache.kv = [(k[:, :, :keep], v[:, :, :keep]) for k, v in cache.kv]
        cache.length = keep

    # -- drafter (adapter on) -----------------------------------------------------
    @torch.inference_mode()
    def draft_logits(self, cache: Any, pending_ids: torch.Tensor, canvas_len: int) -> tuple[torch.Tensor, Any]:
        """Commit ``pending_ids`` to the drafter's ``cache`` and denoise an all-mask canvas
        of ``canvas_len`` after them, in one forward. Returns ``(logits [C, V], new cache)``."""
        pending = torch.as_tensor(pending_ids, dtype=torch.long).flatten()
        m, c, L = pending.numel(), canvas_len, cache.length
        q = m + c
        ids = torch.cat([pending, torch.full((c,), self.mask_token_id, dtype=torch.long)])
        mask = torch.ones(q, L + q, dtype=torch.bool)
        # committed tokens stay causal: pending i sees the context and pending <= i only
        mask[:m, L:] = torch.arange(q)[None, :] <= torch.arange(m)[:, None]
        dev = self.device
        past = dynamic_cache(cache.kv)
        hidden = self.lm.hidden_states(ids[None].to(dev), mask[None, None].to(dev),
                                       (L + torch.arange(q))[None].to(dev), past_key_values=past)[0]
        last = hidden[m - 1] if m else cache.last_hidden.to(hidden.dtype)
        # token shift: canvas[0] <- the last committed token, canvas[i] <- canvas hidden i-1
        shifted = torch.cat([last[None], hidden[m : m + c - 1]])
        new_cache = type(cache)(kv=layer_kv(past, L + m), last_hidden=last, length=L + m)
        return self.lm.logits(shifted), new_cache
