"""Serving one routed request, whatever endpoint it came in on.

Chat completions, the Responses API and legacy completions all become one chat request,
routed and executed the same way (one slot, fallbacks, deadlines, disconnects); only how
the answer is written back differs. That part is a ``Presenter``: it turns the chat
result into the endpoint's body, and the chat chunks into the endpoint's event stream.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Protocol

import orjson
from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from gateway import metrics
from gateway.access import access_record, request_id
from gateway.admission import InFlight, SlotStreamingResponse
from gateway.backends.base import BackendError
from gateway.errors import APIError
from gateway.executor import Executor, FallbacksExhausted, Native, close_quietly
from gateway.key_limits import Grant, KeyLimiters
from gateway.streaming import sse_stream
from router.decision import Decision
from router.plan import RequestPlan
from router.policy import Policy

OnDone = Callable[[str, dict[str, Any] | None], None]


@dataclass
class Routed:
    """A request past validation and routing: its plan, which every backend reads."""

    plan: RequestPlan
    policy: Policy
    decision: Decision
    #: the request in its own API, for backends that speak it (Responses pass-through)
    native: Native | None = None


class Services(Protocol):
    """What serving needs of the gateway (``gateway.app.Gateway``)."""

    executor: Executor
    in_flight: InFlight
    limiters: KeyLimiters


class Presenter(Protocol):
    async def complete(self, result: dict[str, Any], backend: str) -> dict[str, Any]:
        """The endpoint's JSON body for a finished chat completion."""

    def stream(self, first: dict[str, Any] | None, rest: AsyncIterator[dict[str, Any]], backend: str,
               task: str, on_done: OnDone, fallbacks: list[str]) -> AsyncIterator[bytes]:
        """The endpoint's server-sent events for a chat chunk stream."""


class ChatPresenter:
    """Chat completions: the result as it is, chunks as OpenAI's SSE. ``legacy_functions``:
    the request offered ``functions``, so a call goes back as OpenAI answers those:
    ``function_call`` (one call) and ``finish_reason: "function_call"``."""

    def __init__(self, legacy_functions: bool = False) -> None:
        self.legacy_functions = legacy_functions

    async def complete(self, result: dict[str, Any], backend: str) -> dict[str, Any]:
        result["model"] = backend
        if self.legacy_functions:
            for choice in result.get("choices") or []:
                _as_function_call(choice, choice.get("message") or {})
        return result

    def stream(self, first, rest, backend, task, on_done, fallbacks) -> AsyncIterator[bytes]:
        if self.legacy_functions:
            first, rest = _legacy_chunk(first), _legacy_chunks(rest)
        return sse_stream(first, rest, backend, task, on_done=on_done, fallbacks=fallbacks)


def _as_function_call(choice: dict[str, Any], message: dict[str, Any]) -> None:
    """``tool_calls`` (a message's or a delta's) in the legacy ``function_call`` shape:
    legacy function calling has one call per turn, so only the first is kept."""
    calls = message.pop("tool_calls", None)
    if calls:
        function = calls[0].get("function") or {}
        message["function_call"] = {key: function[key] for key in ("name", "arguments") if key in function}
    if choice.get("finish_reason") == "tool_calls":
        choice["finish_reason"] = "function_call"


def _legacy_chunk(chunk: dict[str, Any] | None) -> dict[str, Any] | None:
    """A chunk in the legacy shape: deltas of the first call (index 0) become
    ``delta.function_call``; deltas of later calls are dropped."""
    for choice in (chunk or {}).get("choices") or []:
        delta = choice.get("delta") or {}
        if any(call.get("index", 0) != 0 for call in delta.get("tool_calls") or []):
            delta["tool_calls"] = [call for call in delta["tool_calls"] if call.get("index", 0) == 0]
        _as_function_call(choice, delta)
    return chunk


async def _legacy_chunks(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    try:
        async for chunk in chunks:
            yield _legacy_chunk(chunk)
    finally:
        await close_quietly(chunks)


async def serve(request: Request, routed: Routed, services: Services, presenter: Presenter, *,
                stream_whole: bool = False, admitted: Grant | None = None) -> Response:
    """``stream_whole``: the client asked for a stream of a request generated unstreamed;
    the finished answer goes out as events (``presenter.whole_as_events``). ``admitted``:
    the per-key admission an endpoint took before its own work (this call owns it now)."""
    policy = routed.policy
    grant = admitted if admitted is not None else await services.limiters.admit(request, policy.server, routed.plan)
    try:
        response = await _serve(request, routed, services, presenter, stream_whole, grant)
    except BaseException:
        if grant is not None:
            grant.release(None)
        raise
    if grant is not None:
        response.headers.update(grant.headers)
    return response


async def _serve(request: Request, routed: Routed, services: Services, presenter: Presenter, stream_whole: bool,
                 grant) -> Response:
    decision, policy, executor = routed.decision, routed.policy, services.executor
    record = access_record(request.scope)
    with services.in_flight.admit(decision, policy.server.max_concurrency, record) as slot:
        if grant is not None:
            slot.on_release.append(grant.release)
        try:
            if decision.stream:
                first, rest, backend, attempts = await unless_disconnected(
                    request, executor.open_stream(policy, decision, routed.plan, routed.native))
                record["fallbacks"] = attempts.header()
                metrics.FIRST_CHUNK.labels(decision.route, backend.name, decision.task).observe(
                    time.perf_counter() - slot.start)
                events = presenter.stream(first, rest, backend.name, decision.task,
                                          lambda status, usage: slot.release(status, backend.name, usage),
                                          attempts.failed)
                return SlotStreamingResponse(
                    events, slot, media_type="text/event-stream",
                    headers={**routing_headers(decision, backend.name, attempts.header()),
                             "cache-control": "no-cache"})
            result, backend, attempts = await unless_disconnected(
                request, executor.complete(policy, decision, routed.plan, routed.native))
        except FallbacksExhausted as exhausted:
            record["fallbacks"] = ",".join(exhausted.tried)
            raise backend_api_error(exhausted.error, policy, request_id(request.scope), exhausted.tried) from None
        except BackendError as error:
            raise backend_api_error(error, policy, request_id(request.scope)) from None
        except ClientDisconnected:
            slot.release("cancelled")
            return Response(status_code=499)
        record["fallbacks"] = attempts.header()
        body = await presenter.complete(result, backend.name)
        slot.release("ok", backend.name, token_usage(result.get("usage")))
        headers = routing_headers(decision, backend.name, attempts.header())
        if stream_whole:
            return StreamingResponse(presenter.whole_as_events(body), media_type="text/event-stream",
                                     headers={**headers, "cache-control": "no-cache"})
        return Response(orjson.dumps(body), media_type="application/json", headers=headers)


def token_usage(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """Usage in chat terms, whichever API the backend answered in (a passed-through
    Responses answer counts ``input_tokens`` / ``output_tokens``)."""
    if not usage or "input_tokens" not in usage:
        return usage
    return {"prompt_tokens": usage.get("input_tokens", 0), "completion_tokens": usage.get("output_tokens", 0),
            "total_tokens": usage.get("total_tokens", 0)}


def routing_headers(decision: Decision, backend: str, fallbacks: str) -> dict[str, str]:
    headers = {
        "x-tandem-task": decision.task,
        "x-tandem-route": decision.route,
        "x-tandem-backend": backend,
        "x-tandem-fallbacks": fallbacks,
    }
    if decision.tool_use is not None:
        headers["x-tandem-tool-use"] = decision.tool_use.header()
    if decision.confidence is not None:
        headers["x-tandem-task-confidence"] = f"{decision.confidence:.2f}"
    return headers


def backend_api_error(error: BackendError, policy: Policy, rid: str, tried: list[str] | None = None) -> APIError:
    """The client's view of a backend failure: Tandem's own words (what failed, the
    request id to find it in the log), the upstream's only where the policy allows."""
    message = error.message
    if policy.server.expose_upstream_errors and error.detail:
        message += f": {error.detail}"
    if tried:
        message = f"every backend failed ({', '.join(tried)}); last: {message}"
    message += f" (request id {rid})"
    if error.timeout:
        return APIError(504, f"Upstream timed out: {message}", code="upstream_timeout")
    if error.client_error and error.status:
        return APIError(error.status, message, code="upstream_rejected")
    if error.status == 429:
        # the client should back off, as it would from the provider itself
        return APIError(429, f"Upstream rate limited: {message}", code="upstream_rate_limited")
    if error.status == 503:
        return APIError(503, message, code="backend_unavailable")
    return APIError(502, f"Backend failed: {message}", code="backend_error")


class ClientDisconnected(Exception):
    """The client went away while its answer was being made."""


async def unless_disconnected(request: Request, work):
    """Await ``work`` unless the client disconnects first; then cancel it (which frees the
    backend attempt and, through the slot's context, the in-flight slot)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    try:
        await task
    except BaseException:  # the attempt's own cancellation or failure: nobody is listening
        pass
    raise ClientDisconnected


async def _disconnected(request: Request) -> None:
    # the body is read already, so the next ASGI message is the disconnect
    while (await request.receive())["type"] != "http.disconnect":
        pass
