"""The local diffusion engine as a backend (filled in when the engine lands)."""

from __future__ import annotations

from typing import Any, AsyncIterator

from gateway.backends.base import Backend, BackendError


class DiffusionBackend(Backend):
    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        raise BackendError(f"{self.name}: the diffusion engine is not available in this build", status=503)

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        raise BackendError(f"{self.name}: the diffusion engine is not available in this build", status=503)
        yield {}
