"""Chat answers written back as the Responses API writes them.

Unstreamed: one ``response`` object. Streamed: OpenAI's event sequence, each as
``event: <type>`` + ``data: {...}`` with a rising ``sequence_number``:
``response.created``, ``response.in_progress``, then per output item
``response.output_item.added`` → (text: ``content_part.added``, ``output_text.delta``…,
``output_text.done``, ``content_part.done`` | call: ``function_call_arguments.delta``…,
``function_call_arguments.done``) → ``response.output_item.done``, and last
``response.completed`` (or ``response.incomplete`` at ``max_output_tokens``). A backend
failure mid-way is an ``error`` event and ``response.failed``; the stream always ends.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, AsyncIterator, Callable

import orjson

from gateway.backends.base import BackendError
from gateway.errors import APIError
from gateway.executor import close_quietly, unexpected
from gateway.http_server import DRAIN
from gateway.streaming import ShuttingDown
from gateway.responses import ResponseTurn, new_id, output_items
from gateway.serving import token_usage

log = logging.getLogger(__name__)


class ResponsesPresenter:
    """Chat results and chunks as ``response`` objects and Responses events."""

    def __init__(self, turn: ResponseTurn) -> None:
        self.turn = turn

    async def complete(self, result: dict[str, Any], backend: str) -> dict[str, Any]:
        if result.get("object") == "response":  # passed through: the upstream answered in kind
            response = self.turn.adopt(backend, result)
            await self.turn.save(response)
            return response
        choice = (result.get("choices") or [{}])[0]
        status = "incomplete" if choice.get("finish_reason") == "length" else "completed"
        response = self.turn.response(backend, status, output_items(choice.get("message") or {}, status),
                                      result.get("usage"))
        await self.turn.save(response)
        return response

    def stream(self, first, rest, backend, task, on_done, fallbacks) -> AsyncIterator[bytes]:
        if first is not None and "choices" not in first and str(first.get("type", "")).startswith("response."):
            return passed_through_events(self.turn, first, rest, backend, on_done)
        return response_events(self.turn, first, rest, backend, on_done)


class _Output:
    """The output items as they build up from chat deltas, in the order they began. The
    assistant message holds its parts (text, refusal) in the order they began too."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.message: dict[str, Any] | None = None
        self.parts: dict[str, int] = {}  # part kind -> content index
        self.written: dict[str, str] = {}  # part kind -> what it says so far
        self.calls: dict[int, dict[str, Any]] = {}

    def add_part(self, kind: str, piece: str) -> list[tuple[str, dict[str, Any]]]:
        """``kind``: ``output_text`` or ``refusal``."""
        events = []
        if self.message is None:
            self.message = {"id": new_id("msg_"), "type": "message", "status": "in_progress", "role": "assistant",
                            "content": []}
            self.items.append(self.message)
            events.append(("response.output_item.added", {"output_index": len(self.items) - 1,
                                                          "item": dict(self.message)}))
        if kind not in self.parts:
            self.parts[kind], self.written[kind] = len(self.parts), ""
            events.append(("response.content_part.added", {**self._at(self.message),
                                                           "content_index": self.parts[kind], "part": _part(kind, "")}))
        self.written[kind] += piece
        event = "response.output_text.delta" if kind == "output_text" else "response.refusal.delta"
        extra = {"logprobs": []} if kind == "output_text" else {}
        events.append((event, {**self._at(self.message), "content_index": self.parts[kind], "delta": piece, **extra}))
        return events

    def add_call(self, delta: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        events = []
        index = delta.get("index", 0)
        function = delta.get("function") or {}
        item = self.calls.get(index)
        if item is None:
            item = {"id": new_id("fc_"), "type": "function_call", "status": "in_progress",
                    "call_id": delta.get("id") or new_id("call_"), "name": function.get("name") or "",
                    "arguments": ""}
            self.calls[index] = item
            self.items.append(item)
            events.append(("response.output_item.added", {"output_index": len(self.items) - 1, "item": dict(item)}))
        if function.get("arguments"):
            item["arguments"] += function["arguments"]
            events.append(("response.function_call_arguments.delta", {**self._at(item),
                                                                      "delta": function["arguments"]}))
        return events

    def close(self, status: str) -> list[tuple[str, dict[str, Any]]]:
        """Every item done, with ``status`` (``incomplete`` when cut at max_output_tokens)."""
        events = []
        for item in self.items:
            item["status"] = status
            if item["type"] == "message":
                item["content"] = [_part(kind, self.written[kind]) for kind in self.parts]
                for kind, index in self.parts.items():
                    said = self.written[kind]
                    done = ({"text": said, "logprobs": []} if kind == "output_text" else {"refusal": said})
                    event = "response.output_text.done" if kind == "output_text" else "response.refusal.done"
                    events.append((event, {**self._at(item), "content_index": index, **done}))
                    events.append(("response.content_part.done", {**self._at(item), "content_index": index,
                                                                  "part": _part(kind, said)}))
            else:
                events.append(("response.function_call_arguments.done", {**self._at(item),
                                                                         "arguments": item["arguments"]}))
            events.append(("response.output_item.done", {"output_index": self.items.index(item), "item": item}))
        return events

    def _at(self, item: dict[str, Any]) -> dict[str, Any]:
        return {"item_id": item["id"], "output_index": self.items.index(item)}


def _part(kind: str, said: str) -> dict[str, Any]:
    if kind == "refusal":
        return {"type": "refusal", "refusal": said}
    return _text_part(said)


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


class _Events:
    """Server-sent events with a rising ``sequence_number``."""

    def __init__(self) -> None:
        self._sequence = itertools.count()

    def __call__(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": next(self._sequence), **fields}
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def _failure(event: _Events, exc: Exception, turn: ResponseTurn, backend: str, output: list[dict[str, Any]],
             usage: dict[str, Any] | None) -> tuple[str, list[bytes]]:
    """How a stream that failed mid-way ends: its outcome and the ``error`` and
    ``response.failed`` events (a backend failure, a store failure or a bug alike)."""
    status = "error"
    if isinstance(exc, ShuttingDown):
        status, message, code = "drained", "The server is shutting down; retry this request.", "server_shutting_down"
    elif isinstance(exc, APIError):
        message, code = exc.message, exc.code or "server_error"
    else:
        error = exc if isinstance(exc, BackendError) else unexpected(backend, exc)
        log.warning("response stream from %s failed mid-way (%s)", backend, error.reason)
        message, code = f"The backend failed mid-stream: {error.message}", "stream_interrupted"
    return status, [event("error", code=code, message=message, param=None),
                    event("response.failed", response=turn.response(
                        backend, "failed", output, usage, error={"code": "server_error", "message": message}))]


async def response_events(turn: ResponseTurn, first: dict[str, Any] | None, rest: AsyncIterator[dict[str, Any]],
                          backend: str, on_done: Callable[[str, dict[str, Any] | None], None]) -> AsyncIterator[bytes]:
    """Chat chunks as the Responses event sequence."""
    event = _Events()
    output, usage, finish, status = _Output(), None, None, "cancelled"
    yield event("response.created", response=turn.response(backend, "in_progress", []))
    yield event("response.in_progress", response=turn.response(backend, "in_progress", []))
    try:
        async for chunk in _chunks(first, rest):
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                steps = output.add_part("output_text", delta["content"]) if delta.get("content") else []
                if delta.get("refusal"):
                    steps += output.add_part("refusal", delta["refusal"])
                for call in delta.get("tool_calls") or []:
                    steps += output.add_call(call)
                for kind, fields in steps:
                    yield event(kind, **fields)
                finish = choice.get("finish_reason") or finish
            if DRAIN.expired():
                raise ShuttingDown
        final = "incomplete" if finish == "length" else "completed"
        for kind, fields in output.close(final):
            yield event(kind, **fields)
        response = turn.response(backend, final, output.items, usage)
        await turn.save(response)
        status = "ok"
        yield event(f"response.{final}", response=response)
    except Exception as exc:
        status, events = _failure(event, exc, turn, backend, output.items, usage)
        for data in events:
            yield data
    finally:
        on_done(status, usage)
        await close_quietly(rest)


async def passed_through_events(turn: ResponseTurn, first: dict[str, Any], rest: AsyncIterator[dict[str, Any]],
                                backend: str, on_done: Callable[[str, dict[str, Any] | None], None]
                                ) -> AsyncIterator[bytes]:
    """An upstream's own Responses events, as it sent them but numbered by us, with every
    ``response`` object made this turn's (``ResponseTurn.adopt``); the finished one is stored."""
    event = _Events()
    output: list[dict[str, Any]] = []
    usage, status = None, "cancelled"
    try:
        async for upstream in _chunks(first, rest):
            kind = upstream["type"]
            fields = {key: value for key, value in upstream.items() if key not in ("type", "sequence_number")}
            if kind == "response.output_item.done" and isinstance(fields.get("item"), dict):
                output.append(fields["item"])
            if isinstance(fields.get("response"), dict):
                usage = fields["response"].get("usage") or usage
                fields["response"] = turn.adopt(backend, fields["response"])
                if kind in ("response.completed", "response.incomplete"):
                    await turn.save(fields["response"])
                    status = "ok"
                elif kind == "response.failed":
                    status = "error"
            yield event(kind, **fields)
            if DRAIN.expired() and status == "cancelled":
                raise ShuttingDown
    except Exception as exc:
        status, events = _failure(event, exc, turn, backend, output, None)
        for data in events:
            yield data
    finally:
        on_done(status, token_usage(usage))
        await close_quietly(rest)


async def _chunks(first: dict[str, Any] | None, rest: AsyncIterator[dict[str, Any]]):
    if first is not None:
        yield first
    async for chunk in rest:
        yield chunk
