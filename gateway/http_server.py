"""The HTTP server around the app: uvicorn with the limits a public gateway needs.

- connections: at most ``server.max_connections`` (503 in OpenAI's envelope beyond);
- request heads: at most ``server.max_header_bytes`` (400 beyond), and
  ``server.max_headers`` fields (``HeaderCount``: 431);
- slow clients: a request's head and body must arrive within ``server.read_timeout_s``
  of its first byte (or of the connection, for one that sends nothing): 408, then closed;
- shutdown: on SIGTERM new connections stop; streams still running after
  ``server.drain_timeout_s`` end with an error event and ``[DONE]`` (``DRAIN``), and
  anything left a moment later is cancelled.

These are read once at start-up; a policy reload does not change them.
"""

from __future__ import annotations

import asyncio
import math
import time

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    _HAS_HTTPTOOLS = True
except ImportError:  # pragma: no cover - httptools is a declared dependency
    HttpToolsProtocol = H11Protocol
    _HAS_HTTPTOOLS = False

from router.policy_schema import ServerSettings


class Drain:
    """Process-wide shutdown state that long streams check between chunks."""

    def __init__(self) -> None:
        self.deadline: float | None = None

    def begin(self, timeout_s: float) -> None:
        if self.deadline is None:
            self.deadline = time.monotonic() + timeout_s

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


DRAIN = Drain()

_BUSY_RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
                  b"retry-after: 1\r\ncontent-length: %d\r\n\r\n%s")
_BUSY_BODY = (b'{"error": {"message": "Too many open connections (server.max_connections); retry shortly.", '
              b'"type": "server_error", "param": null, "code": "too_many_connections"}}')
_TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                     b"content-length: %d\r\n\r\n%s")
_TIMEOUT_BODY = (b'{"error": {"message": "The request did not arrive in time (server.read_timeout_s).", '
                 b'"type": "invalid_request_error", "param": null, "code": "request_timeout"}}')


class _ReadDeadline:
    """A deadline on reading each request: armed when the connection opens and when a
    request's first bytes arrive, cleared once the whole request (head and body) is in."""

    read_timeout_s: float = 30.0
    max_connections: int = 1024
    _read_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            # OpenAI's envelope, so an SDK backs off and retries as it does for a 503
            transport.write(_BUSY_RESPONSE % (len(_BUSY_BODY), _BUSY_BODY))
            transport.close()
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._read_timer = self.loop.call_later(self.read_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _too_slow(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        # the timer runs only while a request is read: the cycle, if any, is that request's
        # (nothing sent yet) or the previous one's on a kept-alive connection (all sent)
        if self.cycle is None or self.cycle.response_complete or not self.cycle.response_started:
            self.transport.write(_TIMEOUT_RESPONSE % (len(_TIMEOUT_BODY), _TIMEOUT_BODY))
        if self.cycle is not None:
            self.cycle.disconnected = True
            self.cycle.message_event.set()  # a handler waiting for the body sees a disconnect
        self.transport.close()


class _HeadTooLarge(Exception):
    pass


class GuardedHttpToolsProtocol(_ReadDeadline, HttpToolsProtocol):
    """uvicorn's httptools protocol (its fast default) with the read deadline and a cap on
    the request head, which llhttp itself does not bound."""

    max_head_bytes: int = 16384
    _head_bytes = 0

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        if self._read_timer is None:
            self._arm()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_head_bytes:
            raise _HeadTooLarge  # the parser turns it into a 400 and closes the connection


class GuardedH11Protocol(_ReadDeadline, H11Protocol):
    """The same over h11 (which bounds the head itself: ``h11_max_incomplete_event_size``)."""

    def data_received(self, data: bytes) -> None:
        if self._read_timer is None and self.conn.their_state is h11.IDLE:
            self._arm()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE and self.conn.their_state is not h11.SEND_BODY:
            self._disarm()  # the request is in (or the connection is over)


def guarded_protocol(settings: ServerSettings) -> type:
    """The protocol uvicorn would pick (httptools when installed, else h11), guarded."""
    base = GuardedHttpToolsProtocol if _HAS_HTTPTOOLS else GuardedH11Protocol
    return type(base.__name__, (base,), {"read_timeout_s": settings.read_timeout_s,
                                         "max_head_bytes": settings.max_header_bytes,
                                         "max_connections": settings.max_connections})


class HeaderCount:
    """ASGI guard: a request with more than ``limit`` header fields is a 431."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and len(scope.get("headers", ())) > self.limit:
            body = (b'{"error": {"message": "Too many header fields (server.max_headers is %d).", '
                    b'"type": "invalid_request_error", "param": null, "code": "too_many_headers"}}' % self.limit)
            await send({"type": "http.response.start", "status": 431,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, telling running streams when the drain deadline starts."""

    def __init__(self, config: uvicorn.Config, drain_timeout_s: float) -> None:
        super().__init__(config)
        self.drain_timeout_s = drain_timeout_s

    def handle_exit(self, sig, frame) -> None:
        DRAIN.begin(self.drain_timeout_s)
        super().handle_exit(sig, frame)


def run(app, host: str, port: int, settings: ServerSettings, log_level: str) -> None:
    config = uvicorn.Config(
        HeaderCount(app, settings.max_headers), host=host, port=port, log_level=log_level, access_log=False,
        http=guarded_protocol(settings),
        h11_max_incomplete_event_size=settings.max_header_bytes,
        # streams end themselves at the drain deadline; this cancels whatever is still left after it
        timeout_graceful_shutdown=math.ceil(settings.drain_timeout_s) + 2)
    DrainingServer(config, settings.drain_timeout_s).run()
