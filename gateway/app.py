"""The HTTP surface: OpenAI-compatible endpoints over the router and the backends.

Request path: auth → size limit → JSON → wire validation → policy alias → classify →
decide → execute (with fallbacks) → OpenAI-shaped answer + ``x-tandem-*`` headers.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError

from gateway import metrics
from gateway.backends.base import BackendError
from gateway.errors import APIError, api_error_handler, from_validation_errors, invalid, validation_error_handler
from gateway.executor import Executor
from gateway.registry import BackendRegistry
from gateway.streaming import sse_stream
from gateway.wire import ChatCompletionRequest, ModelCard, ModelList, dump
from router.decision import Decision
from router.policy import Policy
from router.policy_watch import PolicyHolder

log = logging.getLogger("tandem.gateway")


@dataclass
class Routed:
    body: dict[str, Any]
    policy: Policy
    decision: Decision


class Gateway:
    """Process-wide state: the live policy, classifier, backends and load limits."""

    def __init__(self, policy_path: str, *, preload: bool = True, watch: bool = True) -> None:
        self.holder = PolicyHolder(policy_path, on_swap=lambda _: metrics.POLICY_RELOADS.labels("ok").inc())
        self.registry = BackendRegistry()
        self.executor = Executor(self.registry)
        self.preload = preload
        self.watch = watch
        self.in_flight = 0
        self._classifier = None
        self._classifier_ready = threading.Event()
        self.load_errors: dict[str, str] = {}

    # --- lifecycle -------------------------------------------------------

    def start(self) -> None:
        if self.watch:
            self.holder.start()
        if self.preload:
            threading.Thread(target=self._warmup, name="tandem-warmup", daemon=True).start()

    def _warmup(self) -> None:
        """Load classifier and local models in the background; /healthz reports progress."""
        policy = self.holder.policy
        if any(alias.classify for alias in policy.models.values()):  # fixed routes need no model
            try:
                self.classifier.warmup()
            except Exception as exc:  # the classifier degrades to shape rules; say so
                self.load_errors["classifier"] = str(exc)
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
        keys = policy.server.api_keys
        if not keys:
            return
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not token:
            raise APIError(401, "Missing API key: send 'Authorization: Bearer <key>'.", code="missing_api_key")
        if not any(hmac.compare_digest(token, key) for key in keys):
            raise APIError(401, "Incorrect API key provided.", code="invalid_api_key")

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
        except orjson.JSONDecodeError as exc:
            raise invalid(f"Request body is not valid JSON: {exc}", code="invalid_json") from None
        if not isinstance(body, dict):
            raise invalid("Request body must be a JSON object.", code="invalid_json")
        return body

    async def route(self, request: Request) -> Routed:
        policy = self.holder.policy  # one snapshot for the whole request: reloads never mix
        self.authorize(request, policy)
        body = await self.read_json(request, policy)
        try:
            parsed = ChatCompletionRequest.model_validate(body)
        except ValidationError as exc:
            raise from_validation_errors(list(exc.errors())) from None
        limit = parsed.token_limit()
        if limit is not None and limit > policy.server.max_tokens_limit:
            param = "max_completion_tokens" if parsed.max_completion_tokens else "max_tokens"
            raise invalid(f"{param}={limit} is above this server's limit of {policy.server.max_tokens_limit}.", param=param)
        alias = policy.alias(parsed.model)
        if alias is None:
            known = ", ".join(sorted(policy.models))
            raise APIError(404, f"The model '{parsed.model}' does not exist. Available: {known}.", param="model",
                           code="model_not_found")
        start = time.perf_counter()
        classification = self.classifier.classify(body, use_content=alias.classify)
        metrics.CLASSIFY_LATENCY.observe(time.perf_counter() - start)
        decision = policy.decide(body, classification, request.headers)
        return Routed(body, policy, decision)

    def admit(self) -> None:
        limit = self.holder.policy.server.max_concurrency
        if self.in_flight >= limit:
            raise APIError(429, f"Too many requests in flight (limit {limit}); retry shortly.",
                           code="too_many_requests", headers={"retry-after": "1"})


def routing_headers(decision: Decision, backend: str, fallbacks: str) -> dict[str, str]:
    return {
        "x-tandem-task": decision.task,
        "x-tandem-route": decision.route,
        "x-tandem-backend": backend,
        "x-tandem-fallbacks": fallbacks,
    }


def backend_api_error(error: BackendError) -> APIError:
    if error.timeout:
        return APIError(504, f"Upstream timed out: {error.message}", code="upstream_timeout")
    if error.client_error and error.status:
        return APIError(error.status, error.message, code="upstream_rejected")
    if error.status == 503:
        return APIError(503, error.message, code="backend_unavailable")
    return APIError(502, f"Backend failed: {error.message}", code="backend_error")


def create_app(policy_path: str, *, preload: bool = True, watch: bool = True) -> FastAPI:
    gateway = Gateway(policy_path, preload=preload, watch=watch)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        gateway.start()
        yield
        gateway.holder.stop()
        await gateway.registry.aclose()

    app = FastAPI(title="Tandem", version="0.1.0", lifespan=lifespan)
    app.state.gateway = gateway
    app.add_exception_handler(APIError, api_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        routed = await gateway.route(request)
        gateway.admit()
        decision = routed.decision
        start = time.perf_counter()
        gateway.in_flight += 1
        metrics.IN_FLIGHT.inc()
        released = False

        def release(status: str, backend_name: str, usage: dict[str, Any] | None = None) -> None:
            nonlocal released
            if released:
                return
            released = True
            gateway.in_flight -= 1
            metrics.IN_FLIGHT.dec()
            labels_served = (decision.route, backend_name, decision.task, str(decision.stream).lower())
            metrics.REQUESTS.labels(*labels_served, status).inc()
            metrics.LATENCY.labels(*labels_served).observe(time.perf_counter() - start)
            for kind in ("prompt", "completion"):
                count = (usage or {}).get(f"{kind}_tokens") or 0
                if count:
                    metrics.TOKENS.labels(backend_name, decision.task, kind).inc(count)

        try:
            if decision.stream:
                first, rest, backend, attempts = await gateway.executor.open_stream(routed.policy, decision, routed.body)
                headers = routing_headers(decision, backend.name, attempts.header())
                metrics.FIRST_CHUNK.labels(decision.route, backend.name, decision.task).observe(time.perf_counter() - start)
                stream = sse_stream(first, rest, backend.name, decision.task,
                                    on_done=lambda status, usage: release(status, backend.name, usage),
                                    fallbacks=attempts.failed)
                return StreamingResponse(stream, media_type="text/event-stream",
                                         headers={**headers, "cache-control": "no-cache"})
            result, backend, attempts = await gateway.executor.complete(routed.policy, decision, routed.body)
        except BackendError as error:
            release("error", decision.backend.name)
            raise backend_api_error(error) from None
        except BaseException:
            release("error", decision.backend.name)
            raise
        result["model"] = backend.name
        release("ok", backend.name, result.get("usage"))
        return Response(orjson.dumps(result), media_type="application/json",
                        headers=routing_headers(decision, backend.name, attempts.header()))

    @app.post("/v1/route/explain")
    async def route_explain(request: Request) -> dict[str, Any]:
        return (await gateway.route(request)).decision.explain()

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        policy = gateway.holder.policy
        gateway.authorize(request, policy)
        cards = [ModelCard(id=name, description=alias.description or None) for name, alias in policy.models.items()]
        return dump(ModelList(data=cards))

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        state = gateway.readiness()
        return JSONResponse(state, status_code=503 if state["status"] == "loading" else 200)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    return app


__all__ = ["create_app", "Gateway"]
