"""Types shared by the classifier, the policy engine and the gateway."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Task = Literal["chat", "structured", "edit", "code", "tool_call"]
TASKS: tuple[str, ...] = ("chat", "structured", "edit", "code", "tool_call")


@dataclass(frozen=True)
class Classification:
    """What a request asks for. ``stream`` is a separate flag, not a task."""

    task: str
    stream: bool
    reasons: tuple[str, ...] = field(default_factory=tuple)
    #: probability of ``task`` when the content model decided; None for shape rules
    confidence: float | None = None
    #: ``router.tool_use.ToolUse`` for requests with tools (call or answer, and why)
    tool_use: Any = None
