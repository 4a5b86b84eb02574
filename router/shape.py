"""Shape rules: what the request's fields alone (its plan) say about the task.

Precedence when several apply: tool_call (tools with tool_choice required or naming a
function, or auto/absent when ``router.tool_use`` decides a call) > structured (response_format json_schema/json_object) > code
(fill-in-the-middle markers) > the rest, which the content stage decides. tool_choice
"none", or auto deciding to answer, leaves the decision to the next rules. ``prediction`` (Predicted Outputs) is a hint:
the reply rewrites given text, so the content stage picks between edit and code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from router.plan import RequestPlan, ToolOffer


@dataclass(frozen=True)
class ShapeVerdict:
    """Outcome of the shape rules. ``task`` is None when the content must decide."""

    task: str | None
    reasons: tuple[str, ...] = ()
    #: ``prediction`` given: the reply rewrites given text (edit, or code if it is code)
    prediction_text: str | None = None


def _named_choice(offer: ToolOffer) -> str | None:
    """The function a ``tool_choice`` object names, or its type for the other objects that
    force a call (``allowed_tools``, ``custom``)."""
    if offer.named is not None:
        return offer.named
    choice = offer.choice
    if isinstance(choice, Mapping) and choice.get("type") in ("allowed_tools", "custom", "function"):
        return str(choice.get("type"))
    return None


def shape_rules(plan: RequestPlan, tool_use: Any = None) -> ShapeVerdict:
    """Apply the field-based rules to a request's plan. ``tool_use`` is
    ``router.tool_use.decide_tool_use``'s verdict for auto/absent tool_choice."""
    reasons: list[str] = []
    if plan.tools is not None:
        choice = plan.tools.choice
        named = _named_choice(plan.tools)
        if named:
            return ShapeVerdict("tool_call", (f"tools given and tool_choice names {named}",))
        if choice in (None, "auto"):
            if tool_use is None or tool_use.mode == "call":
                return ShapeVerdict("tool_call", (f"tools given, tool_choice {choice or 'absent'} (auto): "
                                                  f"{tool_use.reason if tool_use else 'call'}",))
            reasons.append(f"tools given, tool_choice auto: answer ({tool_use.reason}); content decides")
        elif choice != "none":
            return ShapeVerdict("tool_call", (f"tools given and tool_choice={choice}",))
        else:
            reasons.append("tool_choice=none: no tool call, content decides")

    if plan.output.kind != "text":
        return ShapeVerdict("structured", (*reasons, f"response_format {plan.output.kind}"))
    if plan.fim_markers:
        return ShapeVerdict("code", (*reasons, "fill-in-the-middle markers"))
    if plan.prediction is not None:
        reasons.append("prediction (Predicted Outputs) given: edit or code")
    return ShapeVerdict(None, tuple(reasons), prediction_text=plan.prediction)
