"""Shape rules: what the request body's fields alone say about the task.

Precedence when several apply: tool_call (tools with tool_choice required or a named
function) > structured (response_format json_schema/json_object) > code (fill-in-the-middle
markers) > the rest, which the content stage decides. Two shapes only give hints:
tools with tool_choice auto/absent (a tool call unless the turn needs no tool) and
``prediction`` (Predicted Outputs: a rewrite of given text, edit unless it is code).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

#: fill-in-the-middle sentinels of common code models (StarCoder, CodeLlama, DeepSeek,
#: Qwen/CodeGemma style) and the plain-text PREFIX/SUFFIX convention.
FIM_PATTERN = re.compile(
    r"<\|?fim[_▁\-](?:prefix|suffix|middle|begin|hole|end)\|?>"
    r"|<｜fim▁(?:begin|hole|end)｜>|<(?:PRE|SUF|MID)>"
    r"|(?m:^\s*(?:PREFIX|SUFFIX)\s*:\s*$)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ShapeVerdict:
    """Outcome of the shape rules. ``task`` is None when the content must decide."""

    task: str | None
    reasons: tuple[str, ...] = ()
    #: tools offered with tool_choice auto/absent: a tool call unless the turn needs none
    tools_auto: bool = False
    #: ``prediction`` given: the reply rewrites given text (edit, or code if it is code)
    prediction_text: str | None = None
    tool_texts: tuple[str, ...] = field(default_factory=tuple)


def message_text(message: Mapping[str, Any]) -> str:
    """Text of one message; multimodal content parts contribute their text parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    return ""


def _tools(request: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    tools = request.get("tools")
    if isinstance(tools, list) and tools:
        return [t for t in tools if isinstance(t, Mapping)]
    functions = request.get("functions")  # legacy function calling
    if isinstance(functions, list) and functions:
        return [{"type": "function", "function": f} for f in functions if isinstance(f, Mapping)]
    return []


def _tool_choice(request: Mapping[str, Any]) -> Any:
    if "tool_choice" in request:
        return request.get("tool_choice")
    return request.get("function_call")  # legacy: "none" | "auto" | {"name": ...}


def _tool_text(tool: Mapping[str, Any]) -> str:
    fn = tool.get("function") if isinstance(tool.get("function"), Mapping) else tool
    name = str(fn.get("name", "")).replace("_", " ").replace("-", " ")
    return f"{name}: {fn.get('description', '')}".strip()


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
    if isinstance(prompt, str) and FIM_PATTERN.search(prompt):
        return True
    for message in request.get("messages") or []:
        if isinstance(message, Mapping) and message.get("role") in ("user", None):
            if FIM_PATTERN.search(message_text(message)):
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
        return message_text({"content": content})
    return ""


def shape_rules(request: Mapping[str, Any]) -> ShapeVerdict:
    """Apply the field-based rules to a parsed chat-completion body."""
    tools = _tools(request)
    choice = _tool_choice(request)
    tool_texts = tuple(_tool_text(t) for t in tools)
    no_tools_reason: tuple[str, ...] = ()
    if tools:
        named = _named_choice(choice)
        if choice == "required":
            return ShapeVerdict("tool_call", ("tools given and tool_choice=required",))
        if named:
            return ShapeVerdict("tool_call", (f"tools given and tool_choice names {named}",))
        if choice == "none":
            no_tools_reason = ("tool_choice=none: tools not used, content decides",)

    response_format = request.get("response_format")
    rf_type = response_format.get("type") if isinstance(response_format, Mapping) else None
    tools_auto = bool(tools) and choice != "none"
    if rf_type in ("json_schema", "json_object"):
        # tool_call outranks structured, so with tools on auto the tool check still runs.
        return ShapeVerdict("structured", (*no_tools_reason, f"response_format {rf_type}"),
                            tools_auto=tools_auto, tool_texts=tool_texts)
    if _has_fim(request):
        return ShapeVerdict("code", (*no_tools_reason, "fill-in-the-middle markers"),
                            tools_auto=tools_auto, tool_texts=tool_texts)

    reasons = list(no_tools_reason)
    if tools_auto:
        shown = "auto" if choice is None or choice == "auto" else str(choice)
        label = "absent" if choice is None else f"={shown}"
        reasons.append(f"tools given and tool_choice {label}")
    prediction = _prediction_text(request)
    if prediction is not None:
        reasons.append("prediction (Predicted Outputs) given")
    return ShapeVerdict(None, tuple(reasons), tools_auto=tools_auto,
                        prediction_text=prediction, tool_texts=tool_texts)
