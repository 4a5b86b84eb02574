"""The HTTP surface: OpenAI-compatible endpoints over the router and the backends.

Request path: auth → size limit → JSON → wire validation → policy alias → classify →
decide → execute (with fallbacks) → OpenAI-shaped answer + ``x-tandem-*`` headers.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from gateway import metrics
from gateway.access import AccessLog, access_record, bearer_token
from gateway.admission import InFlight
from gateway.completions import CompletionPresenter, CompletionRequest
from gateway.errors import (APIError, api_error_handler, http_error_handler, invalid, unexpected_error_handler,
                            validated, validation_error_handler)
from gateway.executor import Executor
from gateway.key_limits import KeyLimiters
from gateway.openapi import install_bodies, json_body
from gateway.registry import BackendRegistry
from gateway.responses_routes import ResponseStores, add_response_routes
from gateway.serving import ChatPresenter, Routed, serve
from gateway.wire import ChatCompletionRequest, ModelCard, ModelList, dump
from gateway.wire_responses import ResponsesRequest
from router.policy import Policy
from router.policy_watch import PolicyHolder
from router.plan import RequestPlan

log = logging.getLogger("tandem.gateway")


class Gateway:
    """Process-wide state: the live policy, classifier, backends and load limits."""

    def __init__(self, policy_path: str, *, preload: bool = True, watch: bool = True) -> None:
        self.holder = PolicyHolder(policy_path, on_swap=lambda _: metrics.POLICY_RELOADS.labels("ok").inc())
        self.registry = BackendRegistry()
        self.executor = Executor(self.registry)
        self.preload = preload
        self.watch = watch
        self.in_flight = InFlight()
        self.limiters = KeyLimiters()
        self._classifier = None
        self._classifier_ready = threading.Event()
        self.load_errors: dict[str, str] = {}
        self._classify_pool: Any = None

    # --- lifecycle -------------------------------------------------------

    def start(self) -> None:
        if self.watch:
            self.holder.start()
        if self.preload:
            threading.Thread(target=self._warmup, name="tandem-warmup", daemon=True).start()

    def _router_executor(self) -> Any:
        """The threads the router's content model runs on, with their own torch thread count
        (``diffusion_engine.threads``); created on first use, so fixed routes never load torch."""
        if self._classify_pool is None:
            from diffusion_engine.threads import pinned_executor, router_threads

            self._classify_pool = pinned_executor("tandem-router", router_threads(), workers=2)
        return self._classify_pool

    def _warmup(self) -> None:
        """Load classifier and local models in the background; /healthz reports progress."""
        policy = self.holder.policy
        if any(alias.classify for alias in policy.models.values()):  # fixed routes need no model
            try:
                self._router_executor().submit(self.classifier.warmup).result()
            except Exception as exc:  # the classifier degrades to shape rules; say so
                self.load_errors["classifier"] = str(exc)
            from diffusion_engine.threads import pin_threads

            pin_threads()  # the models load and warm with the process's count (threads.py)
        for spec in policy.backends.values():
            try:
                self.registry.get(spec).warmup()
            except Exception as exc:
                log.exception("loading backend %s failed", spec.name)
                self.load_errors[spec.name] = str(exc)

    @property
    def classifier(self):
        if self._classifier is None:
            from router.classifier import get_classifier

            self._classifier = get_classifier()
        return self._classifier

    def readiness(self) -> dict[str, Any]:
        policy = self.holder.policy
        backends = {}
        for spec in policy.backends.values():
            backend = self.registry.get(spec)
            # a backend that failed at start-up but loaded later (on a request) is ready again
            backends[spec.name] = "ready" if backend.ready else ("error" if spec.name in self.load_errors else "loading")
        states = set(backends.values())
        # A backend that failed to load is "degraded", not "loading": requests routed to it
        # fall back per policy, so the gateway is serving and must not look unready forever.
        status = "loading" if "loading" in states else ("degraded" if "error" in states else "ok")
        return {
            "status": status,
            "backends": backends,
            "policy": {"path": policy.path, "reloads": self.holder.reloads, "last_error": self.holder.last_error},
            "load_errors": self.load_errors,
        }

    # --- request handling ------------------------------------------------

    def authorize(self, request: Request, policy: Policy) -> None:
        if not self.key_valid(request, policy):
            raise APIError(401, "Missing API key: send 'Authorization: Bearer <key>'." if not bearer_token(request)
                           else "Incorrect API key provided.",
                           code="missing_api_key" if not bearer_token(request) else "invalid_api_key")

    @staticmethod
    def key_valid(request: Request, policy: Policy) -> bool:
        """True when no key is configured or the bearer token is one of them. Compared as
        bytes, so any header byte (non-ASCII included) is just a wrong key."""
        keys = policy.server.api_keys
        if not keys:
            return True
        token = bearer_token(request)
        return bool(token) and any(hmac.compare_digest(token, key.encode()) for key in keys)

    async def read_json(self, request: Request, policy: Policy) -> dict[str, Any]:
        limit = policy.server.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise APIError(413, f"Request body is {declared} bytes; the limit is {limit}.", code="request_too_large")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise APIError(413, f"Request body exceeds the limit of {limit} bytes.", code="request_too_large")
            chunks.append(chunk)
        try:
            body = orjson.loads(b"".join(chunks))
        except orjson.JSONDecodeError as exc:  # also orjson's own nesting limit, and bad UTF-8
            raise invalid(f"Request body is not valid JSON: {exc}", code="invalid_json") from None
        if not isinstance(body, dict):
            raise invalid("Request body must be a JSON object.", code="invalid_json")
        depth_limit = policy.server.max_json_depth
        if json_depth_exceeds(body, depth_limit):
            raise invalid(f"Request body nests arrays/objects deeper than {depth_limit} levels "
                          "(server.max_json_depth).", code="too_deep")
        return body

    async def read_request(self, request: Request) -> tuple[Policy, dict[str, Any]]:
        """Authorised and parsed JSON body, with the policy snapshot the whole request uses
        (reloads never mix within one request)."""
        policy = self.holder.policy
        self.authorize(request, policy)
        return policy, await self.read_json(request, policy)

    async def route(self, request: Request) -> Routed:
        policy, body = await self.read_request(request)
        return await self.route_chat(request, policy, body)

    async def route_chat(self, request: Request, policy: Policy, body: dict[str, Any]) -> Routed:
        """Validate a chat-completions body (as sent, or translated from another endpoint)
        and decide where it goes."""
        parsed = validated(ChatCompletionRequest, body)
        for param, limit in parsed.token_fields().items():
            if limit > policy.server.max_tokens_limit:
                raise invalid(f"{param}={limit} is above this server's limit of {policy.server.max_tokens_limit}.",
                              param=param)
        alias = policy.alias(parsed.model)
        if alias is None:
            raise model_not_found(parsed.model, policy)
        # read once: the classifier, the policy, the limits and every backend read this plan
        plan = RequestPlan.of(body)
        start = time.perf_counter()
        if alias.classify:
            # the content model's forward takes milliseconds: off the event loop, so other
            # requests' bytes keep moving meanwhile
            classification = await asyncio.get_running_loop().run_in_executor(
                self._router_executor(), self.classifier.classify, plan)
        else:
            classification = self.classifier.classify(plan, use_content=False)
        metrics.CLASSIFY_LATENCY.observe(time.perf_counter() - start)
        decision = policy.decide(plan, classification, request.headers)
        access_record(request.scope).update(alias=parsed.model if alias else None, task=decision.task,
                                            route=decision.route)
        return Routed(plan, policy, decision)


def model_not_found(model: str, policy: Policy) -> APIError:
    known = ", ".join(sorted(policy.models))
    return APIError(404, f"The model '{model}' does not exist. Available: {known}.", param="model",
                    code="model_not_found")


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether arrays/objects nest deeper than ``limit`` (iterative: no recursion limit)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def create_app(policy_path: str, *, preload: bool = True, watch: bool = True) -> FastAPI:
    gateway = Gateway(policy_path, preload=preload, watch=watch)
    stores = ResponseStores()

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        gateway.start()
        yield
        gateway.holder.stop()
        await gateway.registry.aclose()
        await stores.aclose()
        await gateway.limiters.aclose()

    app = FastAPI(title="Tandem", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.add_middleware(AccessLog)
    app.state.gateway = gateway
    app.add_exception_handler(APIError, api_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(HTTPException, http_error_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)

    @app.post("/v1/chat/completions", openapi_extra=json_body(ChatCompletionRequest))
    async def chat_completions(request: Request) -> Response:
        routed = await gateway.route(request)
        legacy = routed.plan.tools is not None and routed.plan.tools.legacy
        return await serve(request, routed, gateway, ChatPresenter(legacy))

    @app.post("/v1/completions", openapi_extra=json_body(CompletionRequest))
    async def completions(request: Request) -> Response:
        policy, body = await gateway.read_request(request)
        legacy = validated(CompletionRequest, body)
        routed = await gateway.route_chat(request, policy, legacy.as_chat())
        return await serve(request, routed, gateway, CompletionPresenter(legacy),
                           stream_whole=legacy.stream and not routed.decision.stream)

    add_response_routes(app, gateway, stores)

    @app.post("/v1/route/explain", openapi_extra=json_body(ChatCompletionRequest))
    async def route_explain(request: Request) -> dict[str, Any]:
        return (await gateway.route(request)).decision.explain()

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        policy = gateway.holder.policy
        gateway.authorize(request, policy)
        cards = [ModelCard(id=name, description=alias.description or None) for name, alias in policy.models.items()]
        return dump(ModelList(data=cards))

    @app.get("/v1/models/{model_id:path}")
    async def retrieve_model(model_id: str, request: Request) -> dict[str, Any]:
        policy = gateway.holder.policy
        gateway.authorize(request, policy)
        alias = policy.alias(model_id)
        if alias is None:
            raise model_not_found(model_id, policy)
        return dump(ModelCard(id=model_id, description=alias.description or None))

    @app.get("/healthz")
    async def healthz(request: Request) -> JSONResponse:
        """Anyone may ask whether the gateway is ready; the details (backends, policy
        problems with their values hidden) need a key where keys are set."""
        state = gateway.readiness()
        code = 503 if state["status"] == "loading" else 200
        policy = gateway.holder.policy
        if policy.server.api_keys and not gateway.key_valid(request, policy):
            return JSONResponse({"status": state["status"]}, status_code=code)
        return JSONResponse(state, status_code=code)

    def operator_only(request: Request) -> None:
        policy = gateway.holder.policy
        if policy.server.protect_metrics:
            gateway.authorize(request, policy)

    @app.get("/metrics")
    async def prometheus(request: Request) -> Response:
        operator_only(request)
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_document(request: Request) -> JSONResponse:
        operator_only(request)
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    async def api_docs(request: Request) -> Response:
        operator_only(request)
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Tandem API")

    install_bodies(app, [ChatCompletionRequest, CompletionRequest, ResponsesRequest])
    return app


__all__ = ["create_app", "Gateway"]
