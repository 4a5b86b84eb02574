"""The embedded SmolLM2 tokenizer without loading the model.

``diffusion_engine.embedded.load_smollm2`` loads (and caches) the whole model; the
structured path only needs the tokenizer, so we read it from the dense cache when it is
there and otherwise from the GGUF (≈6 s), saving a copy so later processes take <1 s.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
_lock = threading.Lock()
_tokenizer: Any = None


def _own_cache() -> Path:
    base = Path(os.environ.get("TANDEM_CACHE_DIR", Path.home() / ".cache" / "tandem"))
    return base / "smollm2-135m-instruct-tokenizer-v1"


def smollm2_tokenizer() -> Any:
    global _tokenizer
    with _lock:
        if _tokenizer is not None:
            return _tokenizer
        from transformers import AutoTokenizer

        from diffusion_engine.embedded import dense_cache_dir, gguf_path

        for folder in (dense_cache_dir(), _own_cache()):
            if (folder / "tokenizer.json").exists():
                _tokenizer = AutoTokenizer.from_pretrained(folder)
                break
        else:
            path = gguf_path()
            _tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            try:
                tmp = _own_cache().with_name(_own_cache().name + f".tmp{os.getpid()}")
                _tokenizer.save_pretrained(tmp)
                if not _own_cache().exists():
                    tmp.rename(_own_cache())
            except OSError as exc:
                log.warning("could not cache the tokenizer: %s", exc)
        if _tokenizer.pad_token_id is None:
            _tokenizer.pad_token = _tokenizer.eos_token
        return _tokenizer
