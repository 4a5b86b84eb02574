"""The request plan: a validated chat-completions body, read once into what every stage needs.

The classifier, the policy, the per-key limits and every backend read the plan, never the
body's fields themselves, so no two stages can disagree about what a request asks for
(which tools, which output contract, whether it is infill, how many tokens). The output
contract decides *how* a request is generated; ``stream`` only decides how it is sent.

``body`` stays on the plan: it is the request as the client sent it, which providers get
(their own field semantics apply there). A stage that changes the request (the policy's
default params, the router's tool-use decision) makes a new plan from the changed body
(``RequestPlan.of``), so the plan and the body never drift apart.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from router.fim import Infill, has_markers, split_infill

OutputKind = Literal["text", "json_schema", "json_object"]


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


@dataclass(frozen=True)
class ToolOffer:
    """The tools a request offers and how the client lets the model use them."""

    #: chat ``tools`` entries (legacy ``functions`` folded in)
    tools: tuple[Mapping[str, Any], ...]
    #: ``tool_choice`` as sent ("none", "auto", "required", a named function), legacy
    #: ``function_call`` in its terms; None when absent (which means auto)
    choice: Any
    #: False only when the client sent ``parallel_tool_calls: false``
    parallel: bool
    #: offered as legacy ``functions`` (answered as ``function_call``)
    legacy: bool

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> "ToolOffer | None":
        """What ``body`` offers; None without tools."""
        offered = offered_tools(body)
        if not offered:
            return None
        return cls(tuple(offered), tool_choice_of(body), body.get("parallel_tool_calls") is not False,
                   uses_legacy_functions(body))

    @property
    def named(self) -> str | None:
        """The function a named ``tool_choice`` forces."""
        choice = self.choice
        if isinstance(choice, Mapping):
            function = choice.get("function")
            name = function.get("name") if isinstance(function, Mapping) else choice.get("name")
            return str(name) if name else None
        return None

    def functions(self) -> list[dict[str, Any]]:
        """The function definitions the model may call: none for ``tool_choice: "none"``,
        the named one for a named choice, else all."""
        found = [dict(t["function"]) for t in self.tools
                 if t.get("type", "function") == "function" and isinstance(t.get("function"), Mapping)]
        if self.choice == "none":
            return []
        if self.named is not None:
            return [f for f in found if f.get("name") == self.named]
        return found


@dataclass(frozen=True)
class OutputFormat:
    """What the text of the answer must be (``response_format``)."""

    kind: OutputKind = "text"
    #: the ``json_schema`` schema as given (None for text and json_object)
    schema: Mapping[str, Any] | None = None
    name: str | None = None
    strict: bool | None = None


@dataclass(frozen=True)
class Sampling:
    """How tokens are drawn and when generation stops."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> "Sampling":
        """From a body or from the keyword arguments litellm hands a custom provider."""
        stop = params.get("stop")
        stops = (stop,) if isinstance(stop, str) else tuple(s for s in stop or () if isinstance(s, str))
        limit = params.get("max_completion_tokens") or params.get("max_tokens")
        return cls(max_tokens=int(limit) if isinstance(limit, (int, float)) and limit else None,
                   temperature=_number(params.get("temperature")), top_p=_number(params.get("top_p")),
                   stop=stops, seed=params.get("seed") if isinstance(params.get("seed"), int) else None)


@dataclass(frozen=True)
class RequestPlan:
    """One chat request, read once (see the module doc)."""

    body: Mapping[str, Any]
    messages: tuple[Mapping[str, Any], ...]
    tools: ToolOffer | None
    output: OutputFormat
    #: fill-in-the-middle sentinels in a user turn or the prompt (the router calls it code)
    fim_markers: bool
    #: the hole the last user turn asks to fill, when its spelling parses
    infill: Infill | None
    #: Predicted Outputs: the text the answer rewrites ("" when given empty), None if absent
    prediction: str | None
    sampling: Sampling
    stream: bool
    #: characters of message text (and a legacy prompt): for routes and per-key budgets
    text_chars: int

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> "RequestPlan":
        messages = tuple(m for m in body.get("messages") or () if isinstance(m, Mapping))
        prompt = body.get("prompt")
        prompt = prompt if isinstance(prompt, str) else "".join(p for p in prompt or () if isinstance(p, str)) \
            if isinstance(prompt, list) else ""
        users = [message_text(m) for m in messages if m.get("role") in ("user", None)]
        return cls(
            body=body, messages=messages, tools=ToolOffer.of(body), output=_output_format(body.get("response_format")),
            fim_markers=has_markers(prompt) or any(has_markers(text) for text in users),
            infill=split_infill(users[-1]) if users else None,
            prediction=_prediction(body.get("prediction")), sampling=Sampling.of(body),
            stream=body.get("stream") is True,
            text_chars=len(prompt) + sum(len(message_text(m)) for m in messages),
        )

    @property
    def include_usage(self) -> bool:
        """A stream should end with a usage chunk (``stream_options.include_usage``)."""
        options = self.body.get("stream_options")
        return isinstance(options, Mapping) and options.get("include_usage") is True

    def with_defaults(self, params: Mapping[str, Any]) -> "RequestPlan":
        """The plan with the policy's params as defaults: anything the client set wins.
        Policy params are sampling params only (``policy_schema.PARAM_KEYS``), so only the
        body and the sampling change; the messages are not read again."""
        missing = {key: value for key, value in params.items() if self.body.get(key) is None}
        if not missing:
            return self
        body = {**self.body, **missing}
        return dataclasses.replace(self, body=body, sampling=Sampling.of(body))

    def with_tools(self, body: Mapping[str, Any]) -> "RequestPlan":
        """The plan for ``body``, which differs from this plan's only in its tool fields."""
        return dataclasses.replace(self, body=body, tools=ToolOffer.of(body))

    @property
    def calls_tools(self) -> bool:
        """Tools are offered and the client did not rule calls out (``tool_choice: "none"``)."""
        return self.tools is not None and self.tools.choice != "none" and bool(self.tools.functions())

    @property
    def contract(self) -> Literal["tools", "json_schema", "json_object", "text"]:
        """What the answer must be: tool calls may be (the router decides auto), else the
        response format."""
        return "tools" if self.calls_tools else self.output.kind


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _output_format(response_format: Any) -> OutputFormat:
    if not isinstance(response_format, Mapping):
        return OutputFormat()
    kind = response_format.get("type")
    if kind == "json_object":
        return OutputFormat("json_object")
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        spec = spec if isinstance(spec, Mapping) else {}
        schema = spec.get("schema")
        return OutputFormat("json_schema", schema if isinstance(schema, Mapping) else {},
                            spec.get("name"), spec.get("strict"))
    return OutputFormat()


def _prediction(prediction: Any) -> str | None:
    if not isinstance(prediction, Mapping):
        return None
    return content_text(prediction.get("content"))
