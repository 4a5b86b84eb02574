"""Per-API-key limits at the HTTP edge: the policy's ``server.limits`` applied to each request.

A request is admitted (counted, its tokens reserved, a concurrency slot taken) before it
is served, and released when its answer is over, with the tokens it really used. Keys are
never stored or sent anywhere: the limiter sees a fingerprint.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

from fastapi import Request

from gateway.access import bearer_token
from gateway.errors import APIError
from gateway.limits import (
    KeyLimits as LimiterKeyLimits, LimitExceeded, LimitSettings, LimitStoreUnavailable, RateLimiter,
)
from router.plan import RequestPlan
from router.policy_schema import LimitsSettings, ServerSettings

log = logging.getLogger(__name__)

#: what an unkeyed client counts as
ANONYMOUS = "anonymous"


def fingerprint(token: bytes | str) -> str:
    raw = token.encode() if isinstance(token, str) else token
    return hashlib.sha256(raw).hexdigest()[:32] if raw else ANONYMOUS


def estimated_tokens(plan: RequestPlan) -> int:
    """What a request may cost before it runs: its prompt (about 4 characters a token)
    plus the completion it allows, as providers reserve it."""
    return plan.text_chars // 4 + (plan.sampling.max_tokens or 256)


class Grant:
    """One admitted request; ``release`` gives its slot back (once)."""

    def __init__(self, limiter: RateLimiter, admission) -> None:
        self.limiter = limiter
        self.admission = admission
        self.headers: dict[str, str] = dict(admission.headers)
        self._released = False

    def release(self, usage: dict[str, Any] | None) -> None:
        if self._released:
            return
        self._released = True
        used = None
        if usage and isinstance(usage.get("total_tokens"), int):
            used = usage["total_tokens"]
        task = asyncio.ensure_future(self.limiter.release(self.admission, used))
        task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("releasing a rate-limit slot failed: %s", type(task.exception()).__name__)


class KeyLimiters:
    """One limiter per limits setting (a reload that changes them starts a new one)."""

    def __init__(self) -> None:
        self._open: dict[LimitsSettings, RateLimiter] = {}

    def _limiter(self, settings: LimitsSettings) -> RateLimiter:
        if settings not in self._open:
            def convert(limits) -> LimiterKeyLimits:
                return LimiterKeyLimits(limits.requests_per_minute, limits.tokens_per_minute, limits.concurrent)

            self._open[settings] = RateLimiter(LimitSettings(
                store=settings.store, default=convert(settings.default), on_store_error=settings.on_store_error,
                per_key={fingerprint(key): convert(limits) for key, limits in settings.keys}))
        return self._open[settings]

    async def admit(self, request: Request, server: ServerSettings, plan: RequestPlan) -> Grant | None:
        settings = server.limits
        if not settings.enabled():
            return None
        limiter = self._limiter(settings)
        # without configured keys any bearer is accepted, so a token names nobody: one budget
        # for all (else a client would get a fresh window per made-up token)
        caller = fingerprint(bearer_token(request)) if server.api_keys else ANONYMOUS
        try:
            admission = await limiter.admit(caller, estimated_tokens(plan))
        except LimitExceeded as exc:
            raise APIError(429, exc.message, code=f"rate_limit_{exc.which}", headers=dict(exc.headers)) from None
        except LimitStoreUnavailable:
            raise APIError(503, "Rate limits cannot be checked right now (limit store unavailable); retry shortly.",
                           code="limit_store_unavailable", headers={"retry-after": "1"}) from None
        return Grant(limiter, admission)

    async def aclose(self) -> None:
        for limiter in self._open.values():
            await limiter.aclose()
        self._open.clear()
