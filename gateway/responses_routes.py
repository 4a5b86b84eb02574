"""``/v1/responses`` endpoints: create (plain or streamed), retrieve, delete, list input items.

Create validates the request, reads the ``previous_response_id`` chain from the store,
translates everything to one chat request (``gateway.responses``) and serves it the way
chat is served (``gateway.serving``); a backend that speaks the Responses API itself
(``api: responses``) gets the request as it came instead, with the chain as its input. Responses belong to the API key that made them: another
key sees a 404, as for an id that never existed.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from gateway.access import bearer_token
from gateway.errors import APIError, invalid, validated
from gateway.key_limits import fingerprint
from gateway.openapi import json_body
from gateway.response_store import ResponseStore, StoreError, open_store
from gateway.executor import Native, backend_chain
from gateway.responses import (MAX_CHAIN, ResponseTurn, chat_body, chat_messages, history, input_items,
                               passthrough_body, stored_size)
from gateway.responses_stream import ResponsesPresenter
from gateway.serving import serve
from gateway.wire_responses import ResponsesRequest
from router.plan import RequestPlan
from router.policy_schema import ResponseStoreSettings


class ResponseStores:
    """One open store per store setting (a policy reload that changes it opens the new one)."""

    def __init__(self) -> None:
        self._open: dict[ResponseStoreSettings, ResponseStore] = {}

    def get(self, settings: ResponseStoreSettings) -> ResponseStore:
        if settings not in self._open:
            self._open[settings] = open_store(settings)
        return self._open[settings]

    async def aclose(self) -> None:
        for store in self._open.values():
            await store.aclose()
        self._open.clear()


def owner_of(request: Request, policy) -> str:
    """Who a stored response belongs to: a fingerprint of the API key (never the key).
    Without keys configured any bearer goes, so every response belongs to everyone."""
    if not policy.server.api_keys:
        return ""
    return fingerprint(bearer_token(request))


def not_found(response_id: str) -> APIError:
    return APIError(404, f"Response with id '{response_id}' not found.", code="response_not_found")


def add_response_routes(app: FastAPI, gateway, stores: ResponseStores) -> None:
    async def store_call(work):
        try:
            return await work
        except StoreError:
            raise APIError(503, "The response store is unavailable; retry shortly.", code="store_unavailable") from None

    @app.post("/v1/responses", openapi_extra=json_body(ResponsesRequest))
    async def create_response(request: Request) -> Response:
        policy, body = await gateway.read_request(request)
        parsed = validated(ResponsesRequest, body)
        # per-key limits before the store is read: a client over its limit costs no chain read
        estimate = {"messages": [{"content": item.get("content")} for item in input_items(parsed)
                                 if item["type"] == "message"], "max_tokens": parsed.max_output_tokens}
        grant = await gateway.limiters.admit(request, policy.server, RequestPlan.of(estimate))
        try:
            return await _create(request, policy, body, parsed, grant)
        except BaseException:
            if grant is not None:
                grant.release(None)
            raise

    async def _create(request: Request, policy, body: dict[str, Any], parsed: ResponsesRequest, grant) -> Response:
        store, owner = stores.get(policy.server.responses), owner_of(request, policy)
        chain = []
        if parsed.previous_response_id is not None:
            chain = await store_call(store.chain(parsed.previous_response_id, owner, max_depth=MAX_CHAIN + 1))
            if not chain:
                raise APIError(404, f"Previous response with id '{parsed.previous_response_id}' not found.",
                               param="previous_response_id", code="previous_response_not_found")
        if parsed.max_output_tokens is not None and parsed.max_output_tokens > policy.server.max_tokens_limit:
            raise invalid(f"max_output_tokens={parsed.max_output_tokens} is above this server's limit of "
                          f"{policy.server.max_tokens_limit}.", param="max_output_tokens")
        items = input_items(parsed)
        limit = policy.server.responses.max_record_bytes
        if parsed.store and stored_size(items) > limit:
            raise invalid(f"'input' is {stored_size(items)} bytes; a stored response keeps at most {limit} "
                          "(server.responses.max_record_bytes). Send store: false, or a shorter input.",
                          param="input", code="input_too_large")
        earlier = history(chain, parsed.truncation, policy.server.responses.max_history_bytes)
        chat = chat_body(parsed, chat_messages(parsed.instructions, earlier, items))
        routed = await gateway.route_chat(request, policy, chat)
        hosted = parsed.hosted_tools()
        if hosted and routed.decision.backend.api != "responses":
            index, tool = hosted[0]
            raise invalid(f"tools[{index}]: tool type '{tool.type}' is a provider's hosted tool; route "
                          f"'{routed.decision.route}' serves this request on '{routed.decision.backend.name}', "
                          "which does not speak the Responses API (a backend with api: responses passes it "
                          "through). Send function tools only, or route to such a backend.", param=f"tools[{index}]",
                          code="unsupported_tool_type")
        # the request as it came, for the backends of the chain that take it
        if any(spec.api == "responses" for spec, _ in backend_chain(policy, routed.decision)):
            routed.native = Native(passthrough_body(body, earlier, items), required=bool(hosted))
        turn = ResponseTurn(parsed, items, store, owner)
        return await serve(request, routed, gateway, ResponsesPresenter(turn), admitted=grant)

    @app.get("/v1/responses/{response_id}")
    async def retrieve_response(response_id: str, request: Request) -> dict[str, Any]:
        record = await _record(request, response_id)
        return record.response

    @app.delete("/v1/responses/{response_id}")
    async def delete_response(response_id: str, request: Request) -> dict[str, Any]:
        policy = gateway.holder.policy
        gateway.authorize(request, policy)
        deleted = await store_call(stores.get(policy.server.responses).delete(response_id, owner_of(request, policy)))
        if not deleted:
            raise not_found(response_id)
        return {"id": response_id, "object": "response", "deleted": True}

    @app.get("/v1/responses/{response_id}/input_items")
    async def list_input_items(response_id: str, request: Request, limit: int = 20, order: str = "desc",
                               after: str | None = None) -> dict[str, Any]:
        if not 1 <= limit <= 100:
            raise invalid("'limit' must be between 1 and 100.", param="limit")
        if order not in ("asc", "desc"):
            raise invalid("'order' must be 'asc' or 'desc'.", param="order")
        record = await _record(request, response_id)
        items = record.input_items if order == "asc" else list(reversed(record.input_items))
        if after is not None:
            ids = [item.get("id") for item in items]
            if after not in ids:
                raise invalid(f"'after' names no input item of this response: '{after}'.", param="after")
            items = items[ids.index(after) + 1:]
        page = items[:limit]
        return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit}

    async def _record(request: Request, response_id: str):
        policy = gateway.holder.policy
        gateway.authorize(request, policy)
        record = await store_call(stores.get(policy.server.responses).get(response_id, owner_of(request, policy)))
        if record is None:
            raise not_found(response_id)
        return record
