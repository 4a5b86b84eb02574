"""Server-sent events in OpenAI's format: ``data: {chunk}`` lines, then ``data: [DONE]``.

Chunks are passed on as they arrive (no buffering). A backend failure mid-stream
becomes one error event (OpenAI's envelope, which the SDKs raise as an APIError)
followed by ``[DONE]``, so clients never hang on a half-open stream; so does a stream
still running when the shutdown's drain deadline passes.
"""

from __future__ import annotations

import logging
from typing import Any, AsyncIterator, Callable

import orjson

from gateway.backends.base import BackendError
from gateway.executor import close_quietly, unexpected
from gateway.http_server import DRAIN

log = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"


class ShuttingDown(Exception):
    """The drain deadline passed while this stream was still running."""


def encode(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def error_event(message: str, code: str) -> bytes:
    return encode({"error": {"message": message, "type": "server_error", "param": None, "code": code}})


async def sse_stream(
    first: dict[str, Any] | None,
    rest: AsyncIterator[dict[str, Any]],
    model_name: str,
    task: str,
    on_done: Callable[[str, dict[str, Any] | None], None],
    fallbacks: list[str] | None = None,
) -> AsyncIterator[bytes]:
    """Encode ``first`` then ``rest``; ``fallbacks`` (backends that failed before this one)
    are repeated in a last chunk before ``[DONE]`` for clients that cannot read headers."""
    status = "cancelled"  # until proven otherwise: a disconnect ends us without reaching the end
    usage: dict[str, Any] | None = None  # from the include_usage chunk, for token metrics
    try:
        if first is not None:
            first["model"] = model_name
            yield encode(first)
        async for chunk in rest:
            chunk["model"] = model_name
            usage = chunk.get("usage") or usage
            yield encode(chunk)
            if DRAIN.expired():
                raise ShuttingDown
        status = "ok"
    except ShuttingDown:
        status = "drained"
        yield error_event("The server is shutting down; retry this request.", "server_shutting_down")
    except Exception as exc:  # a BackendError, or any bug below: the client gets an event and [DONE]
        error = exc if isinstance(exc, BackendError) else unexpected(model_name, exc)
        status = "error"
        log.warning("stream from %s failed mid-way (%s)", model_name, error.reason)
        yield error_event(f"The backend failed mid-stream: {error.message}", "stream_interrupted")
    finally:
        on_done(status, usage)
        await close_quietly(rest)
    if fallbacks:
        yield encode({"id": (first or {}).get("id", "chatcmpl-tandem"), "object": "chat.completion.chunk",
                      "created": (first or {}).get("created", 0), "model": model_name, "choices": [],
                      "tandem": {"fallbacks": fallbacks, "served_by": model_name}})
    yield DONE
