"""The one reader of what an OpenAI-compatible upstream sends back.

Every upstream body, whole answer or stream chunk, goes through here: anything that is
not the shape the rest of Tandem relies on (a JSON object; ``choices`` a list) becomes a
``BackendError``, so fallbacks apply before the first byte and a stream ends with an
error event and ``[DONE]`` after it. Upstream error text is kept as ``detail`` only:
it may hold anything (credentials, HTML pages), so clients see it only where the policy
allows (``server.expose_upstream_errors``).
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.backends.base import BackendError

#: upstream statuses that say the *request* is wrong; another backend would refuse it too.
#: 401/403 are not among them: they are about Tandem's own upstream credential.
_CLIENT_STATUSES = frozenset(range(400, 500)) - {401, 403, 408, 429}


def parse_object(name: str, content: bytes, what: str) -> dict[str, Any]:
    """``content`` as a JSON object with a ``choices`` list, or a BackendError (502)."""
    value = _json_object(name, content, what)
    if not isinstance(value.get("choices", []), list):
        raise BackendError(f"{name}: upstream sent a {what} whose 'choices' is not a list", status=502)
    return value


def parse_completion(name: str, content: bytes) -> dict[str, Any]:
    completion = parse_object(name, content, "completion")
    if not completion.get("choices"):
        raise BackendError(f"{name}: upstream sent a completion without choices", status=502)
    return completion


def parse_chunk(name: str, data: bytes) -> dict[str, Any]:
    return parse_object(name, data, "stream chunk")


#: the events that end a Responses stream (OpenAI sends no ``[DONE]`` after them)
RESPONSE_END_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def parse_response(name: str, content: bytes) -> dict[str, Any]:
    """A Responses API ``response`` object (``output`` a list), or a BackendError (502)."""
    value = _json_object(name, content, "response")
    if value.get("object") != "response" or not isinstance(value.get("output"), list):
        raise BackendError(f"{name}: upstream sent a response that is not a Responses API 'response'",
                           status=502)
    return value


def parse_response_event(name: str, data: bytes) -> dict[str, Any]:
    """One Responses stream event: an object with a string ``type``."""
    event = _json_object(name, data, "stream event")
    if not isinstance(event.get("type"), str):
        raise BackendError(f"{name}: upstream sent a stream event without a type", status=502)
    if event["type"] == "error":
        raise BackendError(f"{name}: upstream sent an error event", status=502, detail=_error_message(
            {"error": event}))
    return event


def _json_object(name: str, content: bytes, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise BackendError(f"{name}: upstream sent a {what} that is not valid JSON", status=502) from None
    if not isinstance(value, dict):
        raise BackendError(f"{name}: upstream sent a {what} that is not a JSON object", status=502)
    # a chat body never has "error"; a response always has it, null unless it failed
    if "error" in value and "choices" not in value and (value["error"] is not None or "output" not in value):
        raise BackendError(f"{name}: upstream sent an error in a {what}", status=502,
                           detail=_error_message(value))
    return value


def status_error(name: str, status: int, content: bytes) -> BackendError:
    """An upstream HTTP error; the upstream's own text goes to ``detail`` only."""
    try:
        detail = _error_message(orjson.loads(content))
    except orjson.JSONDecodeError:
        detail = None
    if detail is None:
        detail = content[:200].decode(errors="replace")
    return BackendError(f"{name}: upstream returned {status}", status=status,
                        client_error=status in _CLIENT_STATUSES, detail=detail)


def is_client_status(status: int | None) -> bool:
    return status in _CLIENT_STATUSES


def _error_message(value: Any) -> str | None:
    error = value.get("error") if isinstance(value, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    if isinstance(error, str):
        return error
    return None
