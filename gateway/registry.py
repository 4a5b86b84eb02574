"""Backend objects for the current policy, built once per distinct backend spec.

A policy reload that keeps a backend's settings keeps its object (and its warm
connection pool or loaded model); changed settings get a new object.
"""

from __future__ import annotations

import logging
import threading

from gateway.backends.base import Backend
from router.policy import BackendSpec

log = logging.getLogger(__name__)


def _key(spec: BackendSpec) -> tuple:
    return (spec.name, spec.kind, spec.model, spec.api_base, spec.api_key, spec.api, spec.timeout_s, spec.max_retries,
            repr(sorted(spec.engine.items())))


def build_backend(spec: BackendSpec) -> Backend:
    if spec.kind == "diffusion":
        from gateway.backends.diffusion import DiffusionBackend

        return DiffusionBackend(spec)
    from gateway.backends.openai_compat import OpenAICompatBackend, is_direct

    if is_direct(spec):
        return OpenAICompatBackend(spec)
    from gateway.backends.litellm_backend import LiteLLMBackend

    return LiteLLMBackend(spec)


class BackendRegistry:
    def __init__(self) -> None:
        self._backends: dict[tuple, Backend] = {}
        self._lock = threading.Lock()

    def get(self, spec: BackendSpec) -> Backend:
        key = _key(spec)
        backend = self._backends.get(key)
        if backend is None:
            with self._lock:
                backend = self._backends.get(key)
                if backend is None:
                    backend = build_backend(spec)
                    self._backends[key] = backend
        return backend

    def all(self) -> list[Backend]:
        return list(self._backends.values())

    async def aclose(self) -> None:
        for backend in self.all():
            await backend.aclose()
