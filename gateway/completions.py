"""Legacy ``POST /v1/completions``: what code editors send for fill-in-the-middle.

One translation into a chat request, so the classifier, the policy and every backend
serve it as they serve chat: ``prompt`` + ``suffix`` (or FIM sentinels in the prompt,
``router.fim``) is infill, which the router sends to the diffusion engine; a prompt alone
is a continuation, asked of the model as one. Infill is generated unstreamed (the hole is
filled as one canvas) and, when the client streams, sent as one chunk.
"""

from __future__ import annotations

import uuid
from typing import Any, AsyncIterator

from pydantic import Field, field_validator

from gateway.executor import close_quietly
from gateway.streaming import DONE, encode, sse_stream
from gateway.wire import StreamOptions, _Open, now
from router.fim import Infill, split_infill

CONTINUE_INSTRUCTION = "Continue the text. Reply with the continuation only, nothing else."


class CompletionRequest(_Open):
    model: str
    prompt: str | list[str]
    suffix: str | None = None
    max_tokens: int | None = Field(default=16, ge=1)  # OpenAI's default for this endpoint
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    echo: bool = False
    n: int | None = Field(default=None, ge=1, le=1)
    best_of: int | None = Field(default=None, ge=1, le=1)
    logprobs: int | None = None
    seed: int | None = None
    user: str | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError("send one prompt per request (a string, or a list of one string)")
        return value

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, value: bool) -> bool:
        if value:
            raise ValueError("echo=true is not supported; the prompt is yours already")
        return value

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, value: int | None) -> int | None:
        if value:
            raise ValueError("logprobs are not supported on this endpoint")
        return value

    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def infill(self) -> Infill | None:
        if self.suffix is not None:
            return Infill(self.text(), self.suffix, "suffix")
        return split_infill(self.text())

    def as_chat(self) -> dict[str, Any]:
        """The chat-completions body this request is served as."""
        infill = self.infill()
        if infill is not None:
            messages = [{"role": "user", "content": infill.prompt()}]
        else:
            messages = [{"role": "system", "content": CONTINUE_INSTRUCTION}, {"role": "user", "content": self.text()}]
        body: dict[str, Any] = {"model": self.model, "messages": messages,
                                "stream": self.stream and infill is None}
        for name in ("max_tokens", "temperature", "top_p", "stop", "seed", "user", "presence_penalty",
                     "frequency_penalty"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        if self.stream and self.stream_options is not None and infill is None:
            body["stream_options"] = self.stream_options.model_dump()
        return body


class CompletionPresenter:
    """Chat results and chunks written back as ``text_completion`` objects."""

    def __init__(self, request: CompletionRequest) -> None:
        self.request = request
        self.id = "cmpl-" + uuid.uuid4().hex[:24]

    def _object(self, backend: str, created: int, text: str, finish: str | None,
                usage: dict[str, Any] | None = None) -> dict[str, Any]:
        body = {"id": self.id, "object": "text_completion", "created": created, "model": backend,
                "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}]}
        if usage is not None:
            body["usage"] = usage
        return body

    async def complete(self, result: dict[str, Any], backend: str) -> dict[str, Any]:
        choice = (result.get("choices") or [{}])[0]
        finish = choice.get("finish_reason") or "stop"
        text = (choice.get("message") or {}).get("content") or ""
        return self._object(backend, result.get("created") or now(), text,
                            "length" if finish == "length" else "stop", result.get("usage"))

    async def whole_as_events(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        """An unstreamed answer to a streaming client: one chunk, usage if asked, ``[DONE]``."""
        usage = body.pop("usage", None)
        yield encode(body)
        if usage is not None and self.request.stream_options and self.request.stream_options.include_usage:
            yield encode({**body, "choices": [], "usage": usage})
        yield DONE

    def stream(self, first, rest, backend, task, on_done, fallbacks) -> AsyncIterator[bytes]:
        created = (first or {}).get("created") or now()

        def convert(chunk: dict[str, Any]) -> dict[str, Any]:
            if not chunk.get("choices"):  # usage or Tandem's trailer: no text to carry
                return {**chunk, "id": self.id, "object": "text_completion"}
            choice = chunk["choices"][0]
            finish = choice.get("finish_reason")
            text = (choice.get("delta") or {}).get("content") or ""
            return self._object(backend, created, text, None if finish is None else
                                ("length" if finish == "length" else "stop"))

        async def converted() -> AsyncIterator[dict[str, Any]]:
            try:
                async for chunk in rest:
                    yield convert(chunk)
            finally:
                await close_quietly(rest)

        return sse_stream(None if first is None else convert(first), converted(), backend, task,
                          on_done=on_done, fallbacks=fallbacks)
