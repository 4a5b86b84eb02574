"""Prometheus metrics. Labels are policy names (route/backend/task), never prompt text."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "tandem_requests_total", "Chat completion requests by outcome.",
    ["route", "backend", "task", "stream", "status"], registry=REGISTRY,
)
LATENCY = Histogram(
    "tandem_request_latency_seconds", "Time from request to last byte.",
    ["route", "backend", "task", "stream"], registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
FIRST_CHUNK = Histogram(
    "tandem_time_to_first_chunk_seconds", "Time to the first streamed chunk.",
    ["route", "backend", "task"], registry=REGISTRY,
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TOKENS = Counter(
    "tandem_tokens_total", "Tokens by direction.", ["backend", "task", "kind"], registry=REGISTRY,
)
FALLBACKS = Counter(
    "tandem_fallbacks_total", "Fallbacks taken.", ["route", "from_backend", "to_backend", "reason"], registry=REGISTRY,
)
ERRORS = Counter(
    "tandem_errors_total", "Errors returned to clients.", ["status", "type"], registry=REGISTRY,
)
CLASSIFY_LATENCY = Histogram(
    "tandem_classify_seconds", "Time to classify a request.", registry=REGISTRY,
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1),
)
IN_FLIGHT = Gauge("tandem_in_flight_requests", "Requests being served.", registry=REGISTRY)
POLICY_RELOADS = Counter("tandem_policy_reloads_total", "Policy reloads.", ["outcome"], registry=REGISTRY)
DIFFUSION_STEPS = Counter("tandem_diffusion_steps_total", "Denoiser forward passes.", ["backend"], registry=REGISTRY)
DIFFUSION_DRAFTS = Counter(
    "tandem_diffusion_draft_tokens_total", "Draft tokens offered to the AR check of rule 'verified', by outcome.",
    ["backend", "outcome"], registry=REGISTRY)
STRUCTURED_LOOP_CUTS = Counter(
    "tandem_structured_loop_cuts_total",
    "Runaway repetitions (array items, strings) cut from AR-decided structured documents, by reason.",
    ["backend", "reason"], registry=REGISTRY)
STRUCTURED_SOURCE = Counter(
    "tandem_structured_documents_total",
    "Structured documents of rule 'verified', by source: 'ar' (grammar-decoded) or 'skeleton' (fallback).",
    ["backend", "source"], registry=REGISTRY)
DIFFUSION_TPF = Histogram(
    "tandem_diffusion_tokens_per_forward", "Tokens accepted per denoiser forward, per request.", ["backend"],
    registry=REGISTRY, buckets=(1, 1.5, 2, 2.5, 3, 4, 6, 8, 12, 16, 32),
)
DIFFUSION_FIRST_BLOCK = Histogram(
    "tandem_diffusion_time_to_first_block_seconds", "Time to the first finished block.", ["backend"],
    registry=REGISTRY, buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DIFFUSION_TOKENS_PER_S = Histogram(
    "tandem_diffusion_tokens_per_second", "Generated tokens per second, per request.", ["backend"],
    registry=REGISTRY, buckets=(1, 5, 10, 25, 50, 100, 200, 400, 800),
)


def render() -> bytes:
    return generate_latest(REGISTRY)
