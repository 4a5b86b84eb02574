"""Shape rules: what the request body's fields alone say about the task.

Precedence when several apply: tool_call (tools with tool_choice required or naming a
function, or auto/absent when ``router.tool_use`` decides a call) > structured (response_format json_schema/json_object) > code
(fill-in-the-middle markers) > the rest, which the content stage decides. tool_choice
"none", or auto deciding to answer, leaves the decision to the next rules. ``prediction`` (Predicted Outputs) is a hint:
the reply rewrites given text, so the content stage picks between edit and code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from router.fim import has_markers

@dataclass(frozen=True)
class ShapeVerdict:
    """Outcome of the shape rules. ``task`` is None when the content must decide."""

    task: str | None
    reasons: tuple[str, ...] = ()
    #: ``prediction`` given: the reply rewrites given text (edit, or code if it is code)
    prediction_text: str | None = None


def content_text(content: Any) -> str:
    """Text of a message's content: the string itself, or its text parts (chat ``text``,
    Responses ``input_text`` / ``output_text``, refusals) one per line, as vLLM joins them.
    The one reader of content for the router, the backends' prompts and the Responses API."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts = []
    for part in content:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, Mapping):
            text = part.get("text") if part.get("text") is not None else part.get("refusal")
            if isinstance(text, str):
                parts.append(text)
    return "\n".join(parts)


def message_text(message: Mapping[str, Any]) -> str:
    """Text of one message (see ``content_text``)."""
    return content_text(message.get("content"))


def offered_tools(request: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The tools a request offers, as chat ``tools`` entries; legacy ``functions`` become
    function tools. The one reader of the field for the router and the embedded backends."""
    tools = request.get("tools")
    if isinstance(tools, list) and tools:
        return [t for t in tools if isinstance(t, Mapping)]
    functions = request.get("functions")  # legacy function calling
    if isinstance(functions, list) and functions:
        return [{"type": "function", "function": f} for f in functions if isinstance(f, Mapping)]
    return []


def uses_legacy_functions(request: Mapping[str, Any]) -> bool:
    """The request offers legacy ``functions`` (no ``tools``): OpenAI answers it with
    ``message.function_call`` and ``finish_reason: "function_call"``."""
    tools = request.get("tools")
    return not (isinstance(tools, list) and tools) and isinstance(request.get("functions"), list) \
        and bool(request["functions"])


def tool_choice_of(request: Mapping[str, Any]) -> Any:
    """``tool_choice`` as sent, or the legacy ``function_call`` in its terms ("none", "auto",
    or ``{"name": f}`` → ``{"type": "function", "function": {"name": f}}``); None when absent."""
    if "tool_choice" in request:
        return request.get("tool_choice")
    legacy = request.get("function_call")
    if isinstance(legacy, Mapping) and legacy.get("name"):
        return {"type": "function", "function": {"name": str(legacy["name"])}}
    return legacy


def _named_choice(choice: Any) -> str | None:
    if not isinstance(choice, Mapping):
        return None
    fn = choice.get("function")
    if isinstance(fn, Mapping) and fn.get("name"):
        return str(fn["name"])
    if choice.get("name"):
        return str(choice["name"])
    if choice.get("type") in ("allowed_tools", "custom", "function"):
        return str(choice.get("type"))
    return None


def _has_fim(request: Mapping[str, Any]) -> bool:
    prompt = request.get("prompt")
    if isinstance(prompt, str) and has_markers(prompt):
        return True
    for message in request.get("messages") or []:
        if isinstance(message, Mapping) and message.get("role") in ("user", None):
            if has_markers(message_text(message)):
                return True
    return False


def _prediction_text(request: Mapping[str, Any]) -> str | None:
    prediction = request.get("prediction")
    if not isinstance(prediction, Mapping):
        return None
    content = prediction.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return content_text(content)
    return ""


def shape_rules(request: Mapping[str, Any], tool_use: Any = None) -> ShapeVerdict:
    """Apply the field-based rules to a parsed chat-completion body. ``tool_use`` is
    ``router.tool_use.decide_tool_use``'s verdict for auto/absent tool_choice."""
    tools = offered_tools(request)
    choice = tool_choice_of(request)
    reasons: list[str] = []
    if tools:
        named = _named_choice(choice)
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

    response_format = request.get("response_format")
    rf_type = response_format.get("type") if isinstance(response_format, Mapping) else None
    if rf_type in ("json_schema", "json_object"):
        return ShapeVerdict("structured", (*reasons, f"response_format {rf_type}"))
    if _has_fim(request):
        return ShapeVerdict("code", (*reasons, "fill-in-the-middle markers"))
    prediction = _prediction_text(request)
    if prediction is not None:
        reasons.append("prediction (Predicted Outputs) given: edit or code")
    return ShapeVerdict(None, tuple(reasons), prediction_text=prediction)
