"""Runs a routing decision: the chosen backend first, then its fallbacks in order.

A fallback is taken only when the failure is one its ``on`` list names. A stream can
fall back only before its first chunk (afterwards the client already has text); a
failure mid-stream ends it with an error event and ``[DONE]``, never a hang.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from gateway import metrics
from gateway.backends.base import Backend, BackendError
from gateway.registry import BackendRegistry
from router.decision import Decision
from router.policy import BackendSpec, FallbackSpec, Policy

log = logging.getLogger(__name__)


@dataclass
class Attempts:
    """What happened before the backend that served: shown in ``x-tandem-fallbacks``."""

    failed: list[str] = field(default_factory=list)

    def record(self, backend: str, error: BackendError) -> None:
        self.failed.append(f"{backend}:{error.reason}")

    def header(self) -> str:
        return ",".join(self.failed) if self.failed else "none"


def _chain(policy: Policy, decision: Decision) -> list[tuple[BackendSpec, FallbackSpec | None]]:
    chain: list[tuple[BackendSpec, FallbackSpec | None]] = [(decision.backend, None)]
    for fallback in decision.fallbacks:
        chain.append((policy.backends[fallback.backend], fallback))
    return chain


def with_defaults(body: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Policy params are defaults: anything the client set wins."""
    if not params:
        return body
    merged = dict(body)
    for key, value in params.items():
        if merged.get(key) is None:
            merged[key] = value
    return merged


def _may_fall_back(error: BackendError, fallback: FallbackSpec | None) -> bool:
    if fallback is None:
        return False
    if error.client_error and error.status not in fallback.on:
        return False  # the request itself is wrong: another backend won't fix it
    return fallback.applies(status=error.status, timeout=error.timeout, connection=error.connection)


class Executor:
    def __init__(self, registry: BackendRegistry) -> None:
        self.registry = registry

    def _attempts(self, policy: Policy, decision: Decision, body: dict[str, Any]):
        chain = _chain(policy, decision)
        for index, (spec, fallback) in enumerate(chain):
            params = decision.params if index == 0 else spec.params
            next_fallback = chain[index + 1][1] if index + 1 < len(chain) else None
            yield self.registry.get(spec), with_defaults(body, params), next_fallback

    async def complete(self, policy: Policy, decision: Decision, body: dict[str, Any]) -> tuple[dict[str, Any], Backend, Attempts]:
        attempts = Attempts()
        for backend, request, next_fallback in self._attempts(policy, decision, body):
            try:
                return await backend.complete(request), backend, attempts
            except BackendError as error:
                log.warning("backend %s failed (%s)", backend.name, error.reason)
                if not _may_fall_back(error, next_fallback):
                    raise
                attempts.record(backend.name, error)
                metrics.FALLBACKS.labels(decision.route, backend.name, next_fallback.backend, error.reason).inc()
        raise AssertionError("the chain always ends in return or raise")

    async def open_stream(
        self, policy: Policy, decision: Decision, body: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, AsyncIterator[dict[str, Any]], Backend, Attempts]:
        """Start streaming; returns the first chunk so failures before it can still fall back."""
        attempts = Attempts()
        for backend, request, next_fallback in self._attempts(policy, decision, body):
            iterator = backend.stream(request).__aiter__()
            try:
                first = await asyncio.wait_for(iterator.__anext__(), timeout=backend.spec.timeout_s)
                return first, iterator, backend, attempts
            except StopAsyncIteration:
                return None, iterator, backend, attempts
            except asyncio.TimeoutError:
                error = BackendError(f"{backend.name}: no first chunk within {backend.spec.timeout_s:g} s", timeout=True)
                await _close(iterator)
            except BackendError as exc:
                error = exc
            log.warning("backend %s failed before its first chunk (%s)", backend.name, error.reason)
            if not _may_fall_back(error, next_fallback):
                raise error
            attempts.record(backend.name, error)
            metrics.FALLBACKS.labels(decision.route, backend.name, next_fallback.backend, error.reason).inc()
        raise AssertionError("the chain always ends in return or raise")


async def _close(iterator: AsyncIterator[Any]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # closing a failed upstream must not mask the real error
            pass
