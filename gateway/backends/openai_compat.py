"""Direct pass-through to OpenAI-compatible upstreams (OpenAI, vLLM, SGLang, llama.cpp).

litellm adds ~9 ms per call on this machine (translation + logging); servers that
already speak the OpenAI wire format don't need translation, so they get one
pooled httpx client and the bytes they send are parsed once and passed on.
"""

from __future__ import annotations

from typing import Any, AsyncIterator

import httpx
import orjson

from gateway.backends.base import Backend, BackendError, upstream_model
from router.policy import BackendSpec

#: model prefixes whose upstream speaks the OpenAI wire format when api_base is set
DIRECT_PREFIXES = ("openai/", "hosted_vllm/", "openai_compatible/")


def is_direct(spec: BackendSpec) -> bool:
    return bool(spec.api_base) and spec.model.startswith(DIRECT_PREFIXES)


class OpenAICompatBackend(Backend):
    def __init__(self, spec: BackendSpec) -> None:
        super().__init__(spec)
        headers = {"content-type": "application/json"}
        if spec.api_key:
            headers["authorization"] = f"Bearer {spec.api_key}"
        timeout = httpx.Timeout(spec.timeout_s, connect=min(10.0, spec.timeout_s))
        self._client = httpx.AsyncClient(
            base_url=str(spec.api_base).rstrip("/"),
            headers=headers,
            timeout=timeout,
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=128),
        )
        self._model = upstream_model(spec.model)

    def _payload(self, body: dict[str, Any], stream: bool) -> bytes:
        return orjson.dumps({**body, "model": self._model, "stream": stream})

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        attempts = 1 + max(0, self.spec.max_retries)
        for attempt in range(attempts):
            try:
                response = await self._client.post("/chat/completions", content=self._payload(body, False))
            except httpx.TimeoutException as exc:
                error = BackendError(f"{self.name}: upstream timed out ({exc.__class__.__name__})", timeout=True)
            except httpx.TransportError as exc:
                error = BackendError(f"{self.name}: cannot reach upstream ({exc.__class__.__name__})", connection=True)
            else:
                if response.status_code < 400:
                    return orjson.loads(response.content)
                error = _status_error(self.name, response.status_code, response.content)
                if error.client_error:
                    raise error
            if attempt + 1 == attempts:
                raise error
        raise AssertionError("unreachable")

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        try:
            async with self._client.stream("POST", "/chat/completions", content=self._payload(body, True)) as response:
                if response.status_code >= 400:
                    raise _status_error(self.name, response.status_code, await response.aread())
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    chunk = orjson.loads(data)
                    if "error" in chunk and "choices" not in chunk:
                        raise BackendError(f"{self.name}: upstream error mid-stream: {chunk['error']}", status=502)
                    yield chunk
            raise BackendError(f"{self.name}: upstream closed the stream without [DONE]", connection=True)
        except httpx.TimeoutException as exc:
            raise BackendError(f"{self.name}: upstream timed out ({exc.__class__.__name__})", timeout=True) from exc
        except httpx.TransportError as exc:
            raise BackendError(f"{self.name}: upstream connection failed ({exc.__class__.__name__})", connection=True) from exc

    async def aclose(self) -> None:
        await self._client.aclose()


def _status_error(name: str, status: int, content: bytes) -> BackendError:
    try:
        detail = orjson.loads(content)["error"]["message"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        detail = content[:200].decode(errors="replace")
    client_error = 400 <= status < 500 and status not in (408, 429)
    return BackendError(f"{name}: upstream returned {status}: {detail}", status=status, client_error=client_error)
