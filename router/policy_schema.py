"""The typed, immutable model of a routing policy (what ``router/policy.py`` documents).

Everything here is a frozen dataclass built once by the loader (``router/policy_load.py``)
and never mutated: a reload builds a new ``Policy`` and swaps the reference, so an
in-flight request keeps the objects it started with. The key tables at the bottom are
the single source of truth for the strict validator (and are checked against
``policies/policy.schema.json`` by the tests so the two cannot drift apart).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from router.plan import RequestPlan
from router.types import TASKS, Classification

BACKEND_KINDS: tuple[str, ...] = ("ar", "diffusion")

#: model strings served in-process, and the backend kind each one needs
EMBEDDED_MODELS: dict[str, str] = {
    "embedded/smollm2": "ar",
    "embedded/smollm2-diffusion": "diffusion",
}

#: error classes a fallback may name in ``on`` (besides explicit integer status codes)
FALLBACK_CLASSES: tuple[str, ...] = ("timeout", "connection", "5xx", "429", "error")


class PolicyError(Exception):
    """A policy file that cannot be used. ``str()`` is one ``FILE:LINE: message`` per problem."""

    def __init__(self, problems: list[tuple[str, int, str]]):
        self.problems: list[tuple[str, int, str]] = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(f"{file}:{line}: {message}" for file, line, message in self.problems)

    def redacted(self) -> list[str]:
        """The problems with every quoted value (not key names) blanked: for logs and /healthz, where a
        misplaced credential must not show (``tandem policy check FILE`` shows them whole)."""
        def blank(match: re.Match) -> str:
            return match.group(0) if match.group(1) else "'…'"

        return [f"{file}:{line}: " + _QUOTED.sub(blank, message) for file, line, message in self.problems]


#: a quoted value; names of keys and references ("unknown key 'x'", "unknown backend 'y'") stay readable
_QUOTED = re.compile(r"((?:key|mean|backend|route|alias) )?(?:'[^']*'|\"[^\"]*\")")


def _mask(secret: str | None) -> str:
    return "None" if secret is None else "'***'"


@dataclass(frozen=True)
class BackendSpec:
    """One model endpoint: the embedded AR or diffusion model, or a remote one via litellm."""

    name: str
    kind: str  # 'ar' | 'diffusion'
    model: str
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 60.0
    max_retries: int = 0
    params: dict = field(default_factory=dict)
    engine: dict = field(default_factory=dict)
    #: ``responses``: the upstream speaks the Responses API, so /v1/responses requests
    #: routed here are passed through (hosted tools, reasoning) instead of translated to chat
    api: str = "chat"

    @property
    def embedded(self) -> bool:
        """Served in-process (no HTTP hop)."""
        return self.model in EMBEDDED_MODELS

    def __repr__(self) -> str:  # api_key is masked: reprs end up in logs
        return (
            f"BackendSpec(name={self.name!r}, kind={self.kind!r}, model={self.model!r}, "
            f"api_base={self.api_base!r}, api_key={_mask(self.api_key)}, timeout_s={self.timeout_s!r}, "
            f"max_retries={self.max_retries!r}, params={self.params!r}, engine={self.engine!r}, api={self.api!r})"
        )


@dataclass(frozen=True)
class FallbackSpec:
    """Try ``backend`` next when the previous attempt failed in one of the ``on`` ways."""

    backend: str
    on: frozenset[str | int] = frozenset({"error"})

    def applies(self, *, status: int | None, timeout: bool, connection: bool) -> bool:
        """Whether a *failed* attempt (HTTP ``status`` if any, timed out, could not connect)
        should move on to this fallback. Call it only for failures: ``error`` matches any."""
        if "error" in self.on:
            return True
        if timeout and "timeout" in self.on:
            return True
        if connection and "connection" in self.on:
            return True
        if status is not None:
            if status in self.on:
                return True
            if 500 <= status <= 599 and "5xx" in self.on:
                return True
        return False


def _scalar_text(value: Any) -> str:
    # metadata/header values are compared as text so `tier: 1` in YAML matches {"tier": "1"}
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class RouteMatch:
    """Conditions of one route; all given ones must hold. None / empty means "any"."""

    task: frozenset[str] | None = None
    stream: bool | None = None
    #: the request carries a Predicted Output (``prediction``)
    predicted: bool | None = None
    model: frozenset[str] | None = None
    #: lower-cased header name -> accepted values
    headers: tuple[tuple[str, frozenset[str]], ...] = ()
    #: metadata key -> accepted values (compared as text)
    metadata: tuple[tuple[str, frozenset[str]], ...] = ()
    prompt_chars_min: int | None = None
    prompt_chars_max: int | None = None

    @property
    def catch_all(self) -> bool:
        """No conditions at all: matches every request."""
        return self == RouteMatch()

    @property
    def content_free(self) -> bool:
        """Only task/stream conditions (used by the task-coverage check)."""
        return (self.model is None and self.predicted is None and not self.headers and not self.metadata
                and self.prompt_chars_min is None and self.prompt_chars_max is None)

    def evaluate(self, plan: RequestPlan, classification: Classification,
                 headers: Mapping[str, str]) -> tuple[str, ...] | None:
        """Reasons the request matches, or None when some condition fails."""
        request = plan.body
        reasons: list[str] = []
        if self.task is not None:
            if classification.task not in self.task:
                return None
            reasons.append(f"task {classification.task!r} in {sorted(self.task)}")
        if self.stream is not None:
            if bool(classification.stream) != self.stream:
                return None
            reasons.append(f"stream={'true' if self.stream else 'false'}")
        if self.predicted is not None:
            if (plan.prediction is not None) != self.predicted:
                return None
            reasons.append(f"predicted={'true' if self.predicted else 'false'}")
        if self.model is not None:
            if request.get("model") not in self.model:
                return None
            reasons.append(f"model {request.get('model')!r} in {sorted(self.model)}")
        if self.headers:
            lowered = {str(k).lower(): str(v).strip() for k, v in headers.items()}
            for name, accepted in self.headers:
                if lowered.get(name) not in accepted:
                    return None
                reasons.append(f"header {name}: {lowered[name]!r}")
        if self.metadata:
            metadata = request.get("metadata")
            if not isinstance(metadata, Mapping):
                return None
            for key, accepted in self.metadata:
                if key not in metadata or _scalar_text(metadata[key]) not in accepted:
                    return None
                reasons.append(f"metadata {key}={_scalar_text(metadata[key])!r}")
        if self.prompt_chars_min is not None or self.prompt_chars_max is not None:
            size = plan.text_chars
            if self.prompt_chars_min is not None and size < self.prompt_chars_min:
                return None
            if self.prompt_chars_max is not None and size > self.prompt_chars_max:
                return None
            low = self.prompt_chars_min if self.prompt_chars_min is not None else 0
            high = self.prompt_chars_max if self.prompt_chars_max is not None else "inf"
            reasons.append(f"prompt_chars {size} in [{low}, {high}]")
        return tuple(reasons) if reasons else ("catch-all (no match conditions)",)

    def covers(self, other: RouteMatch) -> bool:
        """Every request ``other`` matches is matched by ``self`` (so ``self`` first shadows it)."""
        all_tasks = frozenset(TASKS)
        if self.task is not None and not self.task >= all_tasks:
            if other.task is None or not other.task <= self.task:
                return False
        if self.stream is not None and other.stream != self.stream:
            return False
        if self.predicted is not None and other.predicted != self.predicted:
            return False
        if self.model is not None and (other.model is None or not other.model <= self.model):
            return False
        for mine, theirs in ((self.headers, other.headers), (self.metadata, other.metadata)):
            theirs_by_key = dict(theirs)
            for key, accepted in mine:
                if key not in theirs_by_key or not theirs_by_key[key] <= accepted:
                    return False
        if self.prompt_chars_min is not None and (
                other.prompt_chars_min is None or other.prompt_chars_min < self.prompt_chars_min):
            return False
        if self.prompt_chars_max is not None and (
                other.prompt_chars_max is None or other.prompt_chars_max > self.prompt_chars_max):
            return False
        return True


@dataclass(frozen=True)
class Route:
    """An ordered routing rule: first route whose ``match`` holds wins."""

    name: str
    match: RouteMatch
    backend: str
    fallbacks: tuple[FallbackSpec, ...] = ()
    params: dict = field(default_factory=dict)
    line: int = 0


@dataclass(frozen=True)
class ModelAlias:
    """A name clients send as ``model``; may pin a route or a backend."""

    name: str
    classify: bool = True
    route: str | None = None
    backend: str | None = None
    description: str = ""


@dataclass(frozen=True)
class RouterSettings:
    """How the classifier's verdict is used. Below ``min_confidence`` (the content model's
    probability for its task) the request takes ``fallback_task``: a wrong diffusion route
    costs more than a wrong AR one, so an unsure classifier sends requests to chat."""

    #: the cheapest threshold on held-out corpus families when a wrong diffusion route costs
    #: twice a wrong AR one (``router/train_head.py`` prints it; BENCHMARKS.md has the table)
    min_confidence: float = 0.45
    fallback_task: str = "chat"


@dataclass(frozen=True)
class ResponseStoreSettings:
    """Where the Responses API keeps responses (``store: true``, ``previous_response_id``);
    the policy's ``server.responses`` and what ``gateway.response_store.open_store`` takes."""

    #: ``sqlite`` (a file: ``path``), ``sqlite:///abs/path.db``, ``memory`` (this process
    #: only) or ``redis://host:port/db``
    store: str = "sqlite"
    #: the SQLite file; empty: ``responses.db`` in ``$TANDEM_DATA_DIR`` (default ~/.local/share/tandem)
    path: str = ""
    retention_s: int = 30 * 24 * 3600
    max_record_bytes: int = 4 * 1024 * 1024
    #: the most stored history (items of earlier turns) one request may carry
    max_history_bytes: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        store = self.store
        if store not in ("sqlite", "memory") and not store.startswith(("sqlite:///", "redis://", "rediss://",
                                                                        "unix://")):
            raise ValueError(f"response store '{store}': use sqlite, sqlite:///absolute/path.db, memory "
                             "or redis://host:port/db")
        if store.startswith("sqlite:///") and not store[len("sqlite:///"):].strip("/"):
            raise ValueError(f"response store '{store}': name the file, e.g. sqlite:///var/lib/tandem/responses.db")
        if store.startswith("sqlite:///") and self.path:
            raise ValueError(f"response store '{store}' names the file already; leave path empty "
                             "(or use store: sqlite with path)")
        for name in ("retention_s", "max_record_bytes", "max_history_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"response store {name} is {value!r}: use a whole number of at least 1 "
                                 f"(default {getattr(ResponseStoreSettings, name)})")

    def sqlite_path(self) -> Path:
        if self.store.startswith("sqlite:///"):
            # sqlite:///abs/path.db -> /abs/path.db (three slashes: the path is absolute)
            return Path("/" + self.store[len("sqlite:///"):].lstrip("/"))
        if self.path:
            return Path(self.path).expanduser()
        base = os.environ.get("TANDEM_DATA_DIR") or Path.home() / ".local" / "share" / "tandem"
        return Path(base).expanduser() / "responses.db"


@dataclass(frozen=True)
class KeyLimits:
    """Per-key quotas; None means unlimited."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    concurrent: int | None = None


@dataclass(frozen=True)
class LimitsSettings:
    """Per-API-key limits, counted in-process or in one Redis shared by every replica."""

    #: ``memory`` or ``redis://host:port/db``
    store: str = "memory"
    #: the store unreachable: ``open`` admits (and logs), ``closed`` refuses with 503
    on_store_error: str = "open"
    #: for keys without an entry of their own, and for unkeyed use
    default: KeyLimits = KeyLimits()
    #: (api key, its limits); the key is a secret, never printed
    keys: tuple[tuple[str, KeyLimits], ...] = field(default=(), repr=False)

    def enabled(self) -> bool:
        return self.default != KeyLimits() or bool(self.keys)

    def for_key(self, key: str) -> KeyLimits:
        return next((limits for known, limits in self.keys if known == key), self.default)


@dataclass(frozen=True)
class ServerSettings:
    """Gateway limits. Empty ``api_keys`` means no authentication."""

    api_keys: tuple[str, ...] = field(default=(), repr=False)
    max_body_bytes: int = 1_048_576
    max_concurrency: int = 64
    max_tokens_limit: int = 8192
    #: deepest nesting of arrays/objects in a request body
    max_json_depth: int = 64
    #: upstream error text reaches clients (off: Tandem's own message only)
    expose_upstream_errors: bool = False
    #: with api_keys set, /metrics and the API docs need a key too
    protect_metrics: bool = False
    #: on SIGTERM, streams still open after this long end with an error event and [DONE]
    drain_timeout_s: float = 30.0
    #: HTTP server limits, read once at start-up (a reload does not change them)
    max_connections: int = 1024
    max_header_bytes: int = 16384
    max_headers: int = 100
    #: a request's head and body must arrive within this (slow or stalled clients are cut off)
    read_timeout_s: float = 30.0
    responses: ResponseStoreSettings = ResponseStoreSettings()
    limits: LimitsSettings = LimitsSettings()

    def __repr__(self) -> str:
        return (f"ServerSettings(api_keys=<{len(self.api_keys)} masked>, max_body_bytes={self.max_body_bytes}, "
                f"max_concurrency={self.max_concurrency}, max_tokens_limit={self.max_tokens_limit})")


# --- key tables for the strict validator (mirrored by policies/policy.schema.json) ------------

TOP_LEVEL_KEYS = ("version", "server", "router", "backends", "models", "routes")
ROUTER_KEYS = ("min_confidence", "fallback_task")
SERVER_KEYS = ("api_keys", "max_body_bytes", "max_concurrency", "max_tokens_limit", "max_json_depth",
               "expose_upstream_errors", "protect_metrics", "drain_timeout_s", "max_connections",
               "max_header_bytes", "max_headers", "read_timeout_s", "responses", "limits")
RESPONSES_KEYS = ("store", "path", "retention_s", "max_record_bytes", "max_history_bytes")
LIMITS_KEYS = ("store", "on_store_error", "default", "keys")
KEY_LIMIT_KEYS = ("requests_per_minute", "tokens_per_minute", "concurrent")
BACKEND_KEYS = ("kind", "model", "api_base", "api_key", "api", "timeout_s", "max_retries", "params", "engine")
#: the wire APIs a remote backend can speak; ``responses`` also takes /v1/responses as it is
BACKEND_APIS = ("chat", "responses")
MODEL_KEYS = ("description", "classify", "route", "backend")
ROUTE_KEYS = ("name", "match", "backend", "fallbacks", "params")
MATCH_KEYS = ("task", "stream", "predicted", "model", "headers", "metadata", "prompt_chars_min", "prompt_chars_max")
FALLBACK_KEYS = ("backend", "on")
#: sampling parameters a backend or route may set (forwarded to the backend)
PARAM_KEYS = ("temperature", "top_p", "top_k", "max_tokens", "seed", "stop",
              "presence_penalty", "frequency_penalty")
#: diffusion engine knobs: the decoding fields of diffusion_engine.engine.GenerationParams
#: (duplicated rather than imported so loading a policy does not import torch; a test
#: keeps the two in sync)
ENGINE_KEYS = ("block_size", "rule", "threshold", "max_steps", "final_temperature", "entropy_bound",
               "stability_threshold", "confidence_threshold", "stop_on_eos", "loop_guard", "adapter_drafts")
ENGINE_RULES = ("threshold", "low_confidence", "entropy_bound", "verified")
#: models whose denoiser can also verify drafts as an AR model (the ``verified`` rule)
VERIFIED_MODELS = ("embedded/smollm2-diffusion",)
