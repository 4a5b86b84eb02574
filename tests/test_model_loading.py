"""Model loads are serialised: transformers patches torch's init functions process-wide while
it loads, and two loads in two threads left SmolLM2 with a random lm_head in the gateway."""

from __future__ import annotations

import threading

from diffusion_engine.loading import MODEL_LOAD_LOCK


def test_a_model_load_waits_for_the_one_in_progress():
    from router.embedding import SentenceEmbedder

    embedder = SentenceEmbedder()
    loaded = threading.Event()
    with MODEL_LOAD_LOCK:  # another model is loading
        worker = threading.Thread(target=lambda: (embedder.load(), loaded.set()), daemon=True)
        worker.start()
        assert not loaded.wait(8.0)  # unserialised, this embedder loads in ~2 s
    worker.join(120)
    assert loaded.is_set()
