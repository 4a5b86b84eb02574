"""The access log and request ids: one line per HTTP request, at info.

A pure ASGI wrapper (Starlette's BaseHTTPMiddleware would re-pipe every streamed
chunk). Each request gets an id, taken from a well-formed ``x-request-id`` header or
made here, sent back in ``x-request-id`` and named in error messages. Handlers add
what they know (alias, task, route, backend, fallbacks, tokens) to
``scope["state"]["access"]``. The line never holds prompt text, headers or keys.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

log = logging.getLogger("tandem.access")

_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_FIELDS = ("alias", "task", "route", "backend", "fallbacks", "outcome")


def request_id(scope: dict[str, Any]) -> str:
    return scope.get("state", {}).get("access", {}).get("request_id", "")


def bearer_token(request) -> bytes:
    """The bearer token as the raw header bytes (Starlette decodes headers as latin-1, so
    this round-trips every byte; a non-ASCII token is just a wrong key, never an error)."""
    header = request.headers.get("authorization", "").encode("latin-1")
    return header[7:].strip() if header[:7].lower() == b"bearer " else b""


def access_record(scope: dict[str, Any]) -> dict[str, Any]:
    return scope.setdefault("state", {}).setdefault("access", {})


class AccessLog:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = access_record(scope)
        given = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"x-request-id"), "")
        record["request_id"] = given if _CLIENT_ID.match(given) else "req_" + uuid.uuid4().hex[:24]
        start = time.perf_counter()
        status = 0

        async def send_with_id(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", record["request_id"].encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log.info("%s", _line(scope, record, status, time.perf_counter() - start))


def _line(scope: dict[str, Any], record: dict[str, Any], status: int, seconds: float) -> str:
    parts = [f"id={record['request_id']}", f"{scope.get('method', '-')} {scope.get('path', '-')}",
             f"status={status or 'none'}"]
    parts += [f"{key}={record[key]}" for key in _FIELDS if record.get(key) not in (None, "")]
    tokens = record.get("tokens") or {}
    if tokens:
        parts.append(f"tokens={tokens.get('prompt', 0)}+{tokens.get('completion', 0)}")
    parts.append(f"ms={seconds * 1000:.1f}")
    return " ".join(parts)
