"""The routing decision for one request: which backend, what to try next, and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from router.policy_schema import BackendSpec, FallbackSpec


@dataclass(frozen=True)
class Decision:
    """Made by ``Policy.decide``; immutable so it can be logged and reused safely.

    ``route`` is the matched route's name, or ``alias:<name>`` when a model alias pins a
    backend directly (no route involved). ``params`` are the policy's parameter defaults
    (backend params overlaid by route params), a fresh dict per decision.
    """

    task: str
    stream: bool
    model_alias: str | None
    route: str
    backend: BackendSpec
    fallbacks: tuple[FallbackSpec, ...] = ()
    params: dict = field(default_factory=dict)
    reasons: tuple[str, ...] = ()
    #: ``router.tool_use.ToolUse`` when the request has tools (None otherwise)
    tool_use: Any = None
    #: the classifier's probability for ``task`` (None when a shape rule decided)
    confidence: float | None = None

    def explain(self) -> dict:
        """JSON-ready summary for logs and debug headers (no secrets)."""
        return {
            "task": self.task,
            "stream": self.stream,
            "route": self.route,
            "backend": self.backend.name,
            "fallbacks": [f.backend for f in self.fallbacks],
            "reasons": list(self.reasons),
            "confidence": self.confidence,
            "tool_use": None if self.tool_use is None else {
                "mode": self.tool_use.mode, "tools": list(self.tool_use.tools), "reason": self.tool_use.reason},
        }
