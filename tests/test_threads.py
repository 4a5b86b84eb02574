"""Torch thread counts are per thread: the router's one thread never shrinks the models'."""

from __future__ import annotations

import torch

from diffusion_engine.threads import PROCESS_THREADS, pinned_executor, router_threads


def test_router_and_model_threads_keep_their_own_counts(monkeypatch):
    monkeypatch.delenv("ROUTER_TORCH_THREADS", raising=False)
    assert router_threads() == 1
    router = pinned_executor("test-router", router_threads())
    model = pinned_executor("test-model")
    try:
        assert router.submit(torch.get_num_threads).result() == 1
        # started after the router changed the default for new threads: still the process's count
        assert model.submit(torch.get_num_threads).result() == PROCESS_THREADS
        assert router.submit(torch.get_num_threads).result() == 1
    finally:
        router.shutdown()
        model.shutdown()
        torch.set_num_threads(PROCESS_THREADS)  # the main thread's count, for later tests


def test_router_threads_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("ROUTER_TORCH_THREADS", "2")
    assert router_threads() == 2
