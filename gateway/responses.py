"""The Responses API over chat completions: one translation layer for every backend.

A Responses request (its items, plus the stored items of the ``previous_response_id``
chain) becomes one chat-completions body, so the classifier, the policy, the fallbacks
and every backend's guarantees (constrained tool calls, schema-valid JSON) apply as they
do to chat. The chat answer comes back as a ``response`` object, its chunks as the
Responses event sequence (``gateway.responses_stream``).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.errors import APIError, invalid
from gateway.response_store import RecordTooLarge, ResponseStore, StoreError, StoredResponse
from gateway.wire_responses import FunctionChoice, ResponsesRequest
from router.plan import content_text

log = logging.getLogger(__name__)

_ID_PREFIX = {"message": "msg_", "function_call": "fc_", "function_call_output": "fco_"}


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def input_items(request: ResponsesRequest) -> list[dict[str, Any]]:
    """This request's input as stored and listed: plain dicts, each with an id."""
    items = []
    for item in request.items():
        data = item.model_dump(by_alias=True, exclude_none=True)
        data.setdefault("id", new_id(_ID_PREFIX[data["type"]]))
        if data["type"] == "message" and isinstance(data["content"], str):  # listed as parts, as OpenAI does
            kind = "output_text" if data["role"] == "assistant" else "input_text"
            data["content"] = [{"type": kind, "text": data["content"]}]
        items.append(data)
    return items


#: the most earlier responses a turn carries (the store is read one deeper, to know)
MAX_CHAIN = 100


def history(chain: list[StoredResponse], truncation: str | None, max_bytes: int) -> list[dict[str, Any]]:
    """Every earlier turn's input and output items, oldest first, within ``MAX_CHAIN`` turns
    and ``max_bytes``. Beyond them, as OpenAI does with a conversation longer than the
    model's context: ``truncation: "auto"`` drops the oldest turns, otherwise a 400."""
    records = chain[-MAX_CHAIN:]
    sizes = [stored_size(r.input_items) + stored_size(r.response.get("output") or []) for r in records]
    while records and sum(sizes) > max_bytes:
        records, sizes = records[1:], sizes[1:]
    if len(records) < len(chain) and truncation != "auto":
        raise invalid(f"The conversation is longer than this gateway carries ({MAX_CHAIN} responses, "
                      f"{max_bytes} bytes of history: server.responses.max_history_bytes). Send truncation: "
                      "\"auto\" to drop the oldest turns, or start a new chain.", param="previous_response_id",
                      code="context_length_exceeded")
    items: list[dict[str, Any]] = []
    for record in records:
        items += record.input_items
        items += record.response.get("output") or []
    return items


def chat_messages(instructions: str | None, earlier: list[dict[str, Any]],
                  current: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items as chat messages. Function calls join the assistant turn before them (one
    assistant message may call several tools); a function_call_output must answer a call
    made earlier, in this input or in the chain."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": instructions}] if instructions else []
    called: set[str] = set()
    for index, item in enumerate([*earlier, *current]):
        kind = item["type"]
        if kind == "message":
            messages.append({"role": item["role"], "content": content_text(item["content"])})
        elif kind == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            called.add(item["call_id"])
        elif kind == "function_call_output":
            if item["call_id"] not in called and index < len(earlier):
                continue  # its call was in a turn truncation dropped: the result goes with it
            if item["call_id"] not in called:
                raise invalid(f"input[{index - len(earlier)}]: function_call_output for call_id '{item['call_id']}', which no earlier "
                              "function_call made (send the function_call item too, or chain with "
                              "previous_response_id)", param="input")
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": content_text(item["output"])})
        else:  # only stored output could hold another type; it has no chat counterpart
            continue
    if not any(m["role"] != "system" for m in messages):
        raise invalid("'input' holds no message to answer.", param="input")
    return messages


def chat_body(request: ResponsesRequest, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The chat-completions body the request is served as."""
    body: dict[str, Any] = {"model": request.model, "messages": messages, "stream": request.stream}
    if request.stream:
        body["stream_options"] = {"include_usage": True}  # response.completed carries usage
    if request.function_tools():
        body["tools"] = [{"type": "function", "function": tool.model_dump(exclude={"type"}, exclude_none=True)}
                         for tool in request.function_tools()]
    choice = request.tool_choice
    if isinstance(choice, FunctionChoice):
        body["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    elif choice is not None:
        body["tool_choice"] = choice
    fmt = request.text.format if request.text else None
    if fmt is not None and fmt.type == "json_schema":
        body["response_format"] = {"type": "json_schema", "json_schema": {
            key: value for key, value in (("name", fmt.name or "response"), ("schema", fmt.schema_),
                                          ("strict", fmt.strict), ("description", fmt.description))
            if value is not None}}
    elif fmt is not None and fmt.type == "json_object":
        body["response_format"] = {"type": "json_object"}
    for ours, theirs in (("max_output_tokens", "max_completion_tokens"), ("temperature", "temperature"),
                         ("top_p", "top_p"), ("parallel_tool_calls", "parallel_tool_calls"), ("user", "user"),
                         ("metadata", "metadata")):
        value = getattr(request, ours)
        if value is not None:
            body[theirs] = value
    return body


#: our own request fields, never sent upstream: the chain and the store are Tandem's
_OWN_FIELDS = ("previous_response_id", "store", "input", "model", "stream")


def passthrough_body(body: dict[str, Any], earlier: list[dict[str, Any]],
                     current: list[dict[str, Any]]) -> dict[str, Any]:
    """The request for an upstream that speaks the Responses API: every field the client
    sent (hosted tools, ``reasoning``, ``include`` …) as sent, the whole conversation as
    ``input`` (Tandem's store holds the chain, so the upstream stores nothing and is given
    no ``previous_response_id`` it would not know)."""
    forwarded = {key: value for key, value in body.items() if key not in _OWN_FIELDS}
    forwarded["input"] = [item for item in (_forwardable(i) for i in [*earlier, *current]) if item is not None]
    forwarded["store"] = False
    return forwarded


def _forwardable(item: dict[str, Any]) -> dict[str, Any] | None:
    """An item as an upstream that stores nothing accepts it. Messages and calls go without
    our ids (an upstream looks an id up, and it never saw ours). An earlier turn's hosted-tool
    and reasoning items exist only upstream and would be looked up too, so they are left out
    (the answer they led to is in the message), except reasoning the client asked to carry
    along (``include: ["reasoning.encrypted_content"]``)."""
    kind = item.get("type")
    if kind in _ID_PREFIX:
        return {key: value for key, value in item.items() if key not in ("id", "status")}
    if kind == "reasoning" and item.get("encrypted_content"):
        return item
    return None


def output_items(message: dict[str, Any], status: str = "completed") -> list[dict[str, Any]]:
    """A chat answer's message as Responses output items: the text, then each call, each
    with ``status`` (``incomplete`` when the answer was cut at max_output_tokens)."""
    items = []
    parts = []
    if message.get("content"):
        parts.append({"type": "output_text", "text": message["content"], "annotations": [], "logprobs": []})
    if message.get("refusal"):
        parts.append({"type": "refusal", "refusal": message["refusal"]})
    if parts:
        items.append({"id": new_id("msg_"), "type": "message", "status": status, "role": "assistant",
                      "content": parts})
    for call in message.get("tool_calls") or []:
        items.append({"id": new_id("fc_"), "type": "function_call", "status": status, "call_id": call["id"],
                      "name": call["function"]["name"], "arguments": call["function"]["arguments"]})
    return items


def response_usage(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    if not usage:
        return None
    converted = {
        "input_tokens": usage.get("prompt_tokens", 0),
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": usage.get("completion_tokens", 0),
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.get("total_tokens", 0),
    }
    if "tandem" in usage:
        converted["tandem"] = usage["tandem"]
    return converted


@dataclass
class ResponseTurn:
    """One Responses request being served: what it asked, where it is stored."""

    request: ResponsesRequest
    items: list[dict[str, Any]]
    store: ResponseStore
    owner: str
    id: str = field(default_factory=lambda: new_id("resp_"))
    created_at: int = field(default_factory=lambda: int(time.time()))

    def response(self, model: str, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None = None,
                 *, error: dict[str, Any] | None = None) -> dict[str, Any]:
        request = self.request
        fmt = request.text.format.model_dump(by_alias=True, exclude_none=True) if request.text and request.text.format \
            else {"type": "text"}
        choice = request.tool_choice
        return {
            "id": self.id, "object": "response", "created_at": self.created_at, "status": status,
            "completed_at": int(time.time()) if status in ("completed", "incomplete") else None,
            "error": error,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": request.instructions, "max_output_tokens": request.max_output_tokens,
            "model": model, "output": output,
            "parallel_tool_calls": request.parallel_tool_calls is not False,
            "previous_response_id": request.previous_response_id,
            "temperature": request.temperature, "top_p": request.top_p,
            "tool_choice": choice.model_dump() if isinstance(choice, FunctionChoice) else (choice or "auto"),
            "tools": [tool.model_dump(by_alias=True, exclude_none=True) for tool in request.tools or []],
            "text": {"format": fmt}, "truncation": request.truncation or "disabled",
            "metadata": request.metadata or {}, "store": request.store, "user": request.user,
            "usage": response_usage(usage),
        }

    def adopt(self, model: str, upstream: dict[str, Any]) -> dict[str, Any]:
        """An upstream's ``response`` as this turn's: its output, status and usage as it
        sent them, under our id, chain and store settings."""
        status = upstream.get("status") or "completed"
        response = self.response(model, status, list(upstream.get("output") or []), error=upstream.get("error"))
        response["usage"] = upstream.get("usage")
        for key in ("incomplete_details", "reasoning", "service_tier", "completed_at"):
            if key in upstream:
                response[key] = upstream[key]
        return response

    async def save(self, response: dict[str, Any]) -> None:
        """Keep the finished response for ``previous_response_id`` and GET (``store``)."""
        if not self.request.store:
            return
        record = StoredResponse(id=self.id, owner=self.owner, created_at=self.created_at, response=response,
                                input_items=self.items, previous_response_id=self.request.previous_response_id)
        try:
            await self.store.put(record)
        except RecordTooLarge as exc:
            log.warning("response %s not stored: %s", self.id, exc)
            response["store"] = False
        except StoreError as exc:
            log.error("response store failed: %s", exc)
            raise APIError(503, "The response could not be stored; retry, or send store: false.",
                           code="store_unavailable") from None


def stored_size(items: list[dict[str, Any]]) -> int:
    return len(orjson.dumps(items))
