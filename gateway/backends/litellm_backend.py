"""AR backends through litellm: hosted providers and the embedded SmolLM2.

Provider translation (Anthropic, Ollama, Bedrock, …) is litellm's job. The embedded
model is registered as the litellm custom provider ``embedded`` so it takes the same
path as every other AR call (timeouts, retries, streaming).
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

import orjson

from gateway.backends.base import Backend, BackendError
from gateway.backends.tool_calls import (TOOL_FIELDS, call_schema, completion_as_chunks, cut_tool_call, tool_call,
                                        with_tool_prompt)
from gateway.backends.upstream import RESPONSE_END_EVENTS, is_client_status
from gateway.wire import forwarded_fields
from router.plan import RequestPlan
from router.policy import BackendSpec



class LiteLLMBackend(Backend):
    def __init__(self, spec: BackendSpec) -> None:
        super().__init__(spec)
        from gateway.backends import embedded_provider

        embedded_provider.register()
        import litellm

        self._litellm = litellm
        self._own_text = spec.model.startswith("embedded/")
        # the router's tool-use decision binds the embedded model; providers decide themselves
        self.follows_tool_use = self._own_text

    @property
    def ready(self) -> bool:
        from gateway.backends import embedded_provider

        return not self.spec.model.startswith("embedded/") or embedded_provider.local_model().ready

    def warmup(self) -> None:
        if self.spec.model.startswith("embedded/"):
            from gateway.backends import embedded_provider

            embedded_provider.local_model().load()

    def _kwargs(self, request: RequestPlan, stream: bool) -> dict[str, Any]:
        kwargs = forwarded_fields(request.body)
        kwargs.update(
            model=self.spec.model,
            stream=stream,
            timeout=self.spec.timeout_s,
            num_retries=self.spec.max_retries,
        )
        if self.spec.api_base:
            kwargs["api_base"] = self.spec.api_base
        if self.spec.api_key:
            kwargs["api_key"] = self.spec.api_key
        return kwargs

    async def complete(self, request: RequestPlan) -> dict[str, Any]:
        if self._own_text and request.calls_tools:
            return await self._embedded_tool_call(request)
        try:
            response = await asyncio.wait_for(
                self._litellm.acompletion(**self._kwargs(request, False)), timeout=self.spec.timeout_s
            )
        except Exception as exc:  # litellm raises many types; map them once
            raise _map_error(self.name, exc, self._own_text) from exc
        return response.model_dump(exclude_none=True)

    async def _embedded_tool_call(self, request: RequestPlan) -> dict[str, Any]:
        """A tool call by the embedded AR model: its ``{"name", "arguments"}`` document is
        decoded under the tools' schema, then returned as ``tool_calls``."""
        assert request.tools is not None
        tools = request.tools.functions()
        call_request = {k: v for k, v in request.body.items() if k not in TOOL_FIELDS}
        call_request["messages"] = with_tool_prompt(list(request.messages), tools)
        call_request["response_format"] = {"type": "json_schema",
                                           "json_schema": {"name": "tool_call", "schema": call_schema(tools)}}
        completion = await self.complete(RequestPlan.of(call_request))
        choice = completion["choices"][0]
        text = choice["message"].get("content") or ""
        if choice.get("finish_reason") == "length":
            # cut mid-call: the call so far with finish "length", as OpenAI does (clients see
            # the truncation and do not run it), never our call document as text
            call = cut_tool_call(text)
            choice["message"] = {"role": "assistant", "content": None if call else "",
                                 **({"tool_calls": [call.model_dump()]} if call else {})}
            return completion
        call = tool_call(orjson.loads(text))
        choice["message"] = {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]}
        choice["finish_reason"] = "tool_calls"
        return completion

    def _responses_kwargs(self, body: dict[str, Any], stream: bool) -> dict[str, Any]:
        kwargs = {**body, "model": self.spec.model, "stream": stream, "timeout": self.spec.timeout_s}
        if self.spec.api_base:
            kwargs["api_base"] = self.spec.api_base
        if self.spec.api_key:
            kwargs["api_key"] = self.spec.api_key
        return kwargs

    async def respond(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._litellm.aresponses(**self._responses_kwargs(body, False))
        except Exception as exc:
            raise _map_error(self.name, exc) from exc
        return response.model_dump(mode="json", exclude_none=True)

    async def respond_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        try:
            events = await self._litellm.aresponses(**self._responses_kwargs(body, True))
            async for event in events:
                data = event.model_dump(mode="json", exclude_none=True)  # event types are enums
                yield data
                if data.get("type") in RESPONSE_END_EVENTS:
                    return
        except BackendError:
            raise
        except Exception as exc:
            raise _map_error(self.name, exc) from exc

    async def stream(self, request: RequestPlan) -> AsyncIterator[dict[str, Any]]:
        if self._own_text and request.calls_tools:
            # a call is sent once it is whole (its arguments validated against the schema)
            for chunk in completion_as_chunks(await self._embedded_tool_call(request), request):
                yield chunk
            return
        try:
            response = await self._litellm.acompletion(**self._kwargs(request, True))
            async for chunk in response:
                yield chunk.model_dump(exclude_none=True)
        except BackendError:
            raise
        except Exception as exc:
            raise _map_error(self.name, exc, self._own_text) from exc


def _map_error(name: str, exc: Exception, own_text: bool = False) -> BackendError:
    if isinstance(exc, BackendError):
        return exc
    import litellm

    # litellm's text quotes the upstream's: detail only (see gateway.backends.upstream)
    text = str(exc).splitlines()[0][:300] if str(exc) else exc.__class__.__name__
    if isinstance(exc, (asyncio.TimeoutError, litellm.exceptions.Timeout)):
        return BackendError(f"{name}: timed out", timeout=True)
    if isinstance(exc, litellm.exceptions.APIConnectionError):
        return BackendError(f"{name}: connection failed ({exc.__class__.__name__})", connection=True, detail=text)
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    where = f"upstream returned {status}" if status else f"failed ({exc.__class__.__name__})"
    if own_text:  # the embedded provider's words are Tandem's own
        where = text
    return BackendError(f"{name}: {where}", status=status, client_error=is_client_status(status), detail=text)
