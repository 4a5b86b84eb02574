"""What a chat request asks of the diffusion engine: plain text, a JSON document for a
schema, a tool call, or a fill-in-the-middle. Pure functions over the request body."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gateway.backends.local_ar import template_messages
from gateway.backends.tool_calls import call_schema, functions, with_tool_prompt

#: <|fim_prefix|>…<|fim_suffix|>…<|fim_middle|> and the <fim_prefix> spelling
FIM = re.compile(
    r"<\|?fim[_-]prefix\|?>(?P<prefix>.*?)<\|?fim[_-]suffix\|?>(?P<suffix>.*?)(?:<\|?fim[_-]middle\|?>|$)", re.S
)


@dataclass(frozen=True)
class ToolSpec:
    """Tools the model may call, as one JSON Schema whose ``name`` slot picks the tool."""

    schema: dict[str, Any]
    names: tuple[str, ...]


@dataclass(frozen=True)
class DiffusionJob:
    kind: str  # text | json | tool | infill | predict
    messages: list[dict[str, Any]]
    schema: dict[str, Any] | None = None
    tools: ToolSpec | None = None
    prefix: str = ""
    suffix: str = ""
    #: Predicted Outputs: the current document, seeded into the canvas and edited in place
    prediction: str = ""


def tool_spec(body: dict[str, Any]) -> ToolSpec | None:
    tools = functions(body)
    if not tools:
        return None
    return ToolSpec(schema=call_schema(tools), names=tuple(t["name"] for t in tools))


def response_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return (response_format.get("json_schema") or {}).get("schema")
    if response_format.get("type") == "json_object":
        return {"type": "object"}
    return None


def plan(body: dict[str, Any]) -> DiffusionJob:
    """Decide the job from the request's shape (the router already chose diffusion)."""
    messages = template_messages(body["messages"])
    tools = tool_spec(body)
    if tools is not None:
        return DiffusionJob("tool", template_messages(with_tool_prompt(body["messages"], functions(body))),
                            schema=tools.schema, tools=tools)
    schema = response_schema(body)
    if schema is not None:
        return DiffusionJob("json", messages, schema=schema)
    last = messages[-1]["content"] if messages else ""
    match = FIM.search(last)
    if match:
        instruction = "Fill in the missing code between the given prefix and suffix."
        return DiffusionJob("infill", messages[:-1] + [{"role": "user", "content": instruction}],
                            prefix=match.group("prefix"), suffix=match.group("suffix"))
    prediction = body.get("prediction") or {}
    if prediction.get("type") == "content":
        content = prediction.get("content")
        text = content if isinstance(content, str) else "".join(p.get("text") or "" for p in content or [])
        if text:
            return DiffusionJob("predict", messages, prediction=text)
    return DiffusionJob("text", messages)
