"""Direct pass-through to OpenAI-compatible upstreams (OpenAI, vLLM, SGLang, llama.cpp).

litellm adds ~9 ms per call on this machine (translation + logging) and httpx ~1.2 ms
more than aiohttp per loopback round trip (measured side by side); servers that already
speak the OpenAI wire format need no translation, so they get one pooled aiohttp
session and their chunks are parsed once and passed on as they arrive.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from typing import Any, AsyncIterator

import aiohttp
import orjson

from gateway.backends.base import Backend, BackendError, upstream_model
from gateway.backends.upstream import (RESPONSE_END_EVENTS, parse_chunk, parse_completion, parse_response,
                                       parse_response_event, status_error)
from gateway.wire import forwarded_fields
from router.plan import RequestPlan
from router.policy import BackendSpec

#: the largest whole answer read from an upstream; more is a backend error, not a memory spike
MAX_RESPONSE_BYTES = 32 * 1024 * 1024

#: model prefixes whose upstream speaks the OpenAI wire format when api_base is set
DIRECT_PREFIXES = ("openai/", "hosted_vllm/", "openai_compatible/")


def is_direct(spec: BackendSpec) -> bool:
    return bool(spec.api_base) and spec.model.startswith(DIRECT_PREFIXES)


class OpenAICompatBackend(Backend):
    def __init__(self, spec: BackendSpec) -> None:
        super().__init__(spec)
        base = str(spec.api_base).rstrip("/")
        self._url, self._responses_url = base + "/chat/completions", base + "/responses"
        self._headers = {"content-type": "application/json"}
        if spec.api_key:
            self._headers["authorization"] = f"Bearer {spec.api_key}"
        # Streams: no total deadline (a long stream is fine), each read within timeout_s.
        # Whole answers: the executor gives each attempt timeout_s in all (a trickling
        # upstream cannot hold a slot by sending one byte per read timeout).
        self._timeout = aiohttp.ClientTimeout(total=None, connect=min(10.0, spec.timeout_s),
                                              sock_read=spec.timeout_s)
        self._model = upstream_model(spec.model)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use so it binds to the server's running event loop.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=512, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                                  headers=self._headers, json_serialize=lambda o: orjson.dumps(o).decode())
        return self._session

    def _payload(self, request: RequestPlan, stream: bool) -> bytes:
        return orjson.dumps({**forwarded_fields(request.body), "model": self._model, "stream": stream})

    async def complete(self, request: RequestPlan) -> dict[str, Any]:
        return await self._whole(self._url, self._payload(request, False), parse_completion)

    async def stream(self, request: RequestPlan) -> AsyncIterator[dict[str, Any]]:
        async with aclosing(self._events(self._url, self._payload(request, True))) as events:
            async for data in events:
                if data == b"[DONE]":
                    return
                yield parse_chunk(self.name, data)
        raise BackendError(f"{self.name}: upstream closed the stream without [DONE]", connection=True)

    async def respond(self, body: dict[str, Any]) -> dict[str, Any]:
        payload = orjson.dumps({**body, "model": self._model, "stream": False})
        return await self._whole(self._responses_url, payload, parse_response)

    async def respond_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        payload = orjson.dumps({**body, "model": self._model, "stream": True})
        async with aclosing(self._events(self._responses_url, payload)) as events:
            async for data in events:
                event = parse_response_event(self.name, data)
                yield event
                if event["type"] in RESPONSE_END_EVENTS:
                    return
        raise BackendError(f"{self.name}: upstream closed the stream before the response ended", connection=True)

    async def _whole(self, url: str, payload: bytes, parse) -> dict[str, Any]:
        attempts = 1 + max(0, self.spec.max_retries)
        for attempt in range(attempts):
            try:
                async with self._client().post(url, data=payload) as response:
                    content = await _read_capped(self.name, response)
                    if response.status < 400:
                        return parse(self.name, content)
                    error = status_error(self.name, response.status, content)
            except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
                error = BackendError(f"{self.name}: upstream timed out", timeout=True)
            except aiohttp.ClientError as exc:
                error = BackendError(f"{self.name}: cannot reach upstream ({exc.__class__.__name__})", connection=True)
            if error.client_error or attempt + 1 == attempts:
                raise error
        raise AssertionError("unreachable")

    async def _events(self, url: str, payload: bytes) -> AsyncIterator[bytes]:
        """The ``data:`` payloads of an SSE stream (chat chunks or Responses events)."""
        try:
            async with self._client().post(url, data=payload) as response:
                if response.status >= 400:
                    raise status_error(self.name, response.status, await response.read())
                async for line in response.content:
                    if line.startswith(b"data:"):
                        yield line[5:].strip()
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise BackendError(f"{self.name}: upstream timed out", timeout=True) from exc
        except aiohttp.ClientError as exc:
            raise BackendError(f"{self.name}: upstream connection failed ({exc.__class__.__name__})",
                               connection=True) from exc
        except ValueError as exc:  # aiohttp: a line longer than its reader's limit
            raise BackendError(f"{self.name}: upstream sent an oversized stream line", status=502) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()



async def _read_capped(name: str, response: aiohttp.ClientResponse) -> bytes:
    parts, size = [], 0
    async for part in response.content.iter_chunked(1 << 16):
        size += len(part)
        if size > MAX_RESPONSE_BYTES:
            raise BackendError(f"{name}: upstream answer is larger than {MAX_RESPONSE_BYTES} bytes", status=502)
        parts.append(part)
    return b"".join(parts)
