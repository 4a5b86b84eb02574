"""Admission: each served request holds one in-flight slot, and the object that takes it
is the one that gives it back.

``InFlight.admit`` sheds load (429) or returns a ``Slot``. Used as a context manager the
slot is released when the block exits, whatever happened inside it; a streamed answer
hands it to ``SlotStreamingResponse``, which releases it when the response ends, also
when the client went away before the first byte (Starlette never iterates the body then).
"""

from __future__ import annotations

import time
from typing import Any

from starlette.responses import StreamingResponse

from gateway import metrics
from gateway.errors import APIError
from router.decision import Decision


class InFlight:
    """The process-wide count of admitted requests."""

    def __init__(self) -> None:
        self.count = 0

    def admit(self, decision: Decision, limit: int, state: dict[str, Any]) -> "Slot":
        if self.count >= limit:
            raise APIError(429, f"Too many requests in flight (limit {limit}); retry shortly.",
                           code="too_many_requests", headers={"retry-after": "1"})
        return Slot(self, decision, state)


class Slot:
    def __init__(self, owner: InFlight, decision: Decision, state: dict[str, Any]) -> None:
        self.owner = owner
        self.decision = decision
        #: the request's access-log record (see gateway.access), filled as the request goes
        self.state = state
        self.start = time.perf_counter()
        self.released = False
        self.handed_off = False
        #: called with the usage when the slot is released (per-key limits give theirs back)
        self.on_release: list = []
        owner.count += 1
        metrics.IN_FLIGHT.inc()

    def release(self, outcome: str, backend: str | None = None, usage: dict[str, Any] | None = None) -> None:
        """Give the slot back and record the outcome; only the first call counts."""
        if self.released:
            return
        self.released = True
        self.owner.count -= 1
        metrics.IN_FLIGHT.dec()
        decision = self.decision
        backend = backend or decision.backend.name
        labels = (decision.route, backend, decision.task, str(decision.stream).lower())
        metrics.REQUESTS.labels(*labels, outcome).inc()
        metrics.LATENCY.labels(*labels).observe(time.perf_counter() - self.start)
        tokens = {}
        for kind in ("prompt", "completion"):
            count = (usage or {}).get(f"{kind}_tokens") or 0
            if isinstance(count, int) and count > 0:
                metrics.TOKENS.labels(backend, decision.task, kind).inc(count)
                tokens[kind] = count
        self.state.update(backend=backend, outcome=outcome, tokens=tokens)
        for hook in self.on_release:
            hook(usage)

    def hand_off(self) -> "Slot":
        """The streamed response owns the slot from here on."""
        self.handed_off = True
        return self

    def __enter__(self) -> "Slot":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.handed_off:
            self.release("error" if exc_type is not None else "ok")


class SlotStreamingResponse(StreamingResponse):
    """A streamed answer that releases its slot when the response is over, however it ends."""

    def __init__(self, content: Any, slot: Slot, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.slot = slot.hand_off()

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:  # never started (client gone): close the upstream stream too
                await aclose()
            self.slot.release("cancelled")  # a no-op when the stream already released it
