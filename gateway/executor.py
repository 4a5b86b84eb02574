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
from gateway.backends.tool_calls import follow_tool_use
from gateway.registry import BackendRegistry
from router.decision import Decision
from router.plan import RequestPlan
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


@dataclass(frozen=True)
class Native:
    """A request in its own API (the Responses API) for backends that speak it; the others
    get the chat translation. ``required``: it uses what only those backends can serve
    (hosted tools), so the others are left out of the chain."""

    body: dict[str, Any]
    required: bool = False


class FallbacksExhausted(Exception):
    """Every backend of the chain failed: ``tried`` names each (``backend:reason``),
    ``error`` is the last one's."""

    def __init__(self, tried: list[str], error: BackendError) -> None:
        super().__init__(error.message)
        self.tried = tried
        self.error = error


def _give_up(attempts: Attempts, backend: Backend, error: BackendError) -> Exception:
    """What to raise when no further backend applies: the error itself, or, after fallbacks
    were taken, all of them."""
    if not attempts.failed:
        return error
    return FallbacksExhausted([*attempts.failed, f"{backend.name}:{error.reason}"], error)


def backend_chain(policy: Policy, decision: Decision) -> list[tuple[BackendSpec, FallbackSpec | None]]:
    """The decision's backend, then its fallbacks, each with the fallback rule that leads to it."""
    chain: list[tuple[BackendSpec, FallbackSpec | None]] = [(decision.backend, None)]
    for fallback in decision.fallbacks:
        chain.append((policy.backends[fallback.backend], fallback))
    return chain


def _may_fall_back(error: BackendError, fallback: FallbackSpec | None) -> bool:
    if fallback is None:
        return False
    if error.client_error and error.status not in fallback.on:
        return False  # the request itself is wrong: another backend won't fix it
    return fallback.applies(status=error.status, timeout=error.timeout, connection=error.connection)


class Executor:
    def __init__(self, registry: BackendRegistry) -> None:
        self.registry = registry

    def _attempts(self, policy: Policy, decision: Decision, plan: RequestPlan, native: Native | None):
        chain = backend_chain(policy, decision)
        if native is not None and native.required:  # only Responses-speaking backends can serve it
            chain = [link for link in chain if link[0].api == "responses"]
        for index, (spec, fallback) in enumerate(chain):
            params = decision.params if index == 0 else spec.params
            next_fallback = chain[index + 1][1] if index + 1 < len(chain) else None
            backend = self.registry.get(spec)
            request = plan.with_defaults(params)
            if backend.follows_tool_use:
                request = follow_tool_use(request, decision.tool_use)
            passes_through = native is not None and backend.speaks_responses
            yield backend, (native.body if passes_through else request), passes_through, next_fallback

    async def complete(self, policy: Policy, decision: Decision, plan: RequestPlan,
                       native: Native | None = None) -> tuple[dict[str, Any], Backend, Attempts]:
        """The answer: a chat completion, or (passed through) the upstream's ``response``."""
        attempts = Attempts()
        for backend, request, passes_through, next_fallback in self._attempts(policy, decision, plan, native):
            try:
                work = backend.respond(request) if passes_through else backend.complete(request)
                # one deadline for the whole attempt, however the bytes arrive
                result = await asyncio.wait_for(work, timeout=backend.spec.timeout_s)
                return result, backend, attempts
            except asyncio.TimeoutError:
                error = BackendError(f"{backend.name}: no answer within {backend.spec.timeout_s:g} s", timeout=True)
            except BackendError as exc:
                error = exc
            except Exception as exc:  # a backend's bug is still that backend's failure, not a 500
                error = unexpected(backend.name, exc)
            log.warning("backend %s failed (%s)", backend.name, error.reason)
            if not _may_fall_back(error, next_fallback):
                raise _give_up(attempts, backend, error)
            attempts.record(backend.name, error)
            metrics.FALLBACKS.labels(decision.route, backend.name, next_fallback.backend, error.reason).inc()
        raise AssertionError("the chain always ends in return or raise")

    async def open_stream(
        self, policy: Policy, decision: Decision, plan: RequestPlan, native: Native | None = None
    ) -> tuple[dict[str, Any] | None, AsyncIterator[dict[str, Any]], Backend, Attempts]:
        """Start streaming; returns the first chunk (or, passed through, the upstream's first
        Responses event) so failures before it can still fall back."""
        attempts = Attempts()
        for backend, request, passes_through, next_fallback in self._attempts(policy, decision, plan, native):
            iterator = (backend.respond_stream(request) if passes_through else backend.stream(request)).__aiter__()
            try:
                first = await asyncio.wait_for(iterator.__anext__(), timeout=backend.spec.timeout_s)
                return first, iterator, backend, attempts
            except StopAsyncIteration:
                return None, iterator, backend, attempts
            except asyncio.TimeoutError:
                error = BackendError(f"{backend.name}: no first chunk within {backend.spec.timeout_s:g} s", timeout=True)
                await close_quietly(iterator)
            except BackendError as exc:
                error = exc
            except Exception as exc:
                error = unexpected(backend.name, exc)
                await close_quietly(iterator)
            log.warning("backend %s failed before its first chunk (%s)", backend.name, error.reason)
            if not _may_fall_back(error, next_fallback):
                raise _give_up(attempts, backend, error)
            attempts.record(backend.name, error)
            metrics.FALLBACKS.labels(decision.route, backend.name, next_fallback.backend, error.reason).inc()
        raise AssertionError("the chain always ends in return or raise")


def unexpected(name: str, exc: Exception) -> BackendError:
    log.error("backend %s raised %s", name, exc.__class__.__name__, exc_info=exc)
    return BackendError(f"{name}: internal error ({exc.__class__.__name__})", status=500)


async def close_quietly(iterator: AsyncIterator[Any]) -> None:
    """Close a stream that may already be broken (its own error is not the one to report)."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # closing a failed upstream must not mask the real error
            pass
