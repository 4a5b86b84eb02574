"""Routing policies: YAML data that says which backend serves which request.

A policy file (see ``policies/default.yaml``; JSON Schema: ``policies/policy.schema.json``)
is validated strictly when loaded: every problem is reported as ``FILE:LINE: path: message``
(unknown keys come with a "did you mean" suggestion) and a policy with any problem is
never used. Loading is all-or-nothing, and a ``Policy`` is immutable, so a hot reload
(``router/policy_watch.py``) swaps whole policies and in-flight requests keep theirs.

Format (version 1)
------------------
``version`` (required, integer)
    Must be ``1``.

``server`` (optional mapping) - gateway settings
    ``api_keys``         list of accepted bearer keys. Empty, null or absent = no authentication.
                         Entries that interpolate to an empty string are dropped, so
                         ``["${TANDEM_API_KEY:-}"]`` enables auth only when the variable is set.
    ``max_body_bytes``   largest request body accepted (default 1048576).
    ``max_concurrency``  in-flight requests before the gateway sheds load (default 64).
    ``max_tokens_limit`` larger ``max_tokens`` or ``max_completion_tokens`` in a request is a
                         400 (default 8192); also the ceiling for ``max_tokens`` in ``params`` below.
    ``max_json_depth``   deepest nesting of arrays/objects in a request body (default 64).
    ``expose_upstream_errors``  pass an upstream's error text on to clients (default false:
                         clients get Tandem's message with the status, backend and request id).
    ``protect_metrics``  with ``api_keys`` set, ``/metrics``, ``/openapi.json`` and ``/docs``
                         need a key too (default false).

``backends`` (required, non-empty mapping name -> settings). Names: letters, digits, ``_-.``.
    ``kind``        (required) ``ar`` or ``diffusion``.
    ``model``       (required) ``embedded/smollm2`` (AR, in-process),
                    ``embedded/smollm2-diffusion`` (diffusion, in-process), or any litellm
                    model string such as ``openai/gpt-4o-mini`` (kind ``ar`` only: diffusion
                    backends always run the local engine).
    ``api_base``    remote endpoint URL (not allowed on embedded models).
    ``api_key``     remote credential (not allowed on embedded models; masked in reprs).
                    An empty value (``${KEY:-}``) means "no key".
    ``api``         ``chat`` (default) or ``responses``: the upstream also speaks the
                    Responses API, so ``/v1/responses`` requests routed here go to it as they
                    are (hosted tools, reasoning, ``include``) instead of through chat.
    ``timeout_s``   seconds per attempt, > 0 (default 60).
    ``max_retries`` retries of the same backend before fallbacks, 0-10 (default 0).
    ``params``      default sampling parameters: ``temperature`` (0-2), ``top_p`` (0-1),
                    ``top_k`` (>= 0), ``max_tokens`` (1..max_tokens_limit), ``seed`` (>= 0),
                    ``stop`` (string or list), ``presence_penalty`` / ``frequency_penalty`` (-2..2).
    ``engine``      diffusion engine knobs (kind ``diffusion`` only; the decoding fields of
                    ``diffusion_engine.engine.GenerationParams``): ``block_size`` (canvas
                    length, >= 1), ``rule`` (``threshold``, ``low_confidence``,
                    ``entropy_bound`` or ``verified``: the adapter drafts and the AR base
                    keeps the agreeing prefix; ``embedded/smollm2-diffusion`` only), ``threshold`` (0 < t <= 1, for ``threshold``),
                    ``max_steps`` (forwards per block, >= 1), ``final_temperature`` (>= 0),
                    ``entropy_bound`` (> 0), ``stability_threshold`` (>= 0),
                    ``confidence_threshold`` (> 0), ``stop_on_eos`` (bool), ``loop_guard``
                    (bool, default true; rule ``verified``, structured outputs: cut a runaway
                    repetition such as an array item repeated until the token budget, and
                    close the value; false keeps exactly AR + constrained decoding),
                    ``adapter_drafts`` (bool, default true; rule ``verified``, free text: the
                    adapter drafts where no lookup in the prompt or the answer matches, while
                    its drafts are kept deep enough to pay; false drafts from lookups only).

``models`` (optional mapping alias -> settings): names clients send as ``model``.
    ``description`` free text (shown by ``/v1/models``).
    ``classify``    run the content classifier for this alias (default: true unless the
                    alias pins something; ``classify: true`` together with a pin is an error).
    ``route``       pin a route by name: its backend, fallbacks and params are used and the
                    route's match conditions are ignored.
    ``backend``     pin a backend by name (no fallbacks; the backend's own params).
    ``route`` and ``backend`` are exclusive. An alias written as ``auto:`` (no settings)
    classifies and routes normally.

``routes`` (required, non-empty list; order matters: the first matching route wins)
    ``name``       (required, unique) used in decisions, logs and metrics.
    ``backend``    (required) a backend name.
    ``match``      conditions, all of which must hold; absent/empty = catch-all:
        ``task``             one task or a list (chat, structured, edit, code, tool_call).
        ``stream``           true / false.
        ``predicted``        true / false: the request carries a Predicted Output (``prediction``).
        ``model``            one alias or a list (must be defined under ``models``).
        ``headers``          {name: value or list}; names case-insensitive, values exact.
        ``metadata``         {key: value or list} against the request's ``metadata`` object,
                             compared as text (``tier: 1`` matches ``{"tier": "1"}``).
        ``prompt_chars_min`` / ``prompt_chars_max``  inclusive bounds on the characters of all
                             message text (and a legacy ``prompt``).
    ``fallbacks``  ordered list of ``{backend, on}`` tried when the previous attempt failed.
                   ``on``: one or a list of ``timeout``, ``connection``, ``5xx``, ``429``,
                   ``error`` (any backend error; the default) or HTTP status codes 400-599.
                   A fallback to the route's own backend, or the same fallback twice, is an error.
    ``params``     parameter overrides merged over the backend's ``params`` (same keys).

Whole-policy checks (errors, not warnings - a policy that loads always routes every request):
    * references: unknown backends (routes, fallbacks, aliases), routes (aliases), aliases
      (``match.model``);
    * duplicate route names, and duplicate keys anywhere in the file;
    * unreachable routes: an earlier route that matches every request a later one would
      (e.g. an earlier catch-all) makes the later one dead. Routes pinned by an alias are
      exempt, since the alias reaches them directly;
    * coverage: each task, streamed and not, must be matched by some route whose only
      conditions are ``task``/``stream`` - in practice, end with a catch-all route.

Environment interpolation, in any string value: ``${VAR}`` (unset is an error naming
FILE:LINE) and ``${VAR:-default}`` (default when unset or empty); ``$${`` is a literal
``${``. An unquoted interpolated value is re-typed, so ``timeout_s: ${T:-30}`` is a number.
YAML anchors and ``<<`` merge keys work.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from router.decision import Decision
from router.policy_load import read_policy
from router.policy_schema import (
    BackendSpec, FallbackSpec, ModelAlias, PolicyError, Route, RouteMatch, RouterSettings, ServerSettings,
)
from router.plan import RequestPlan
from router.types import Classification

__all__ = [
    "BackendSpec", "Decision", "FallbackSpec", "ModelAlias", "Policy", "PolicyError", "Route",
    "RouteMatch", "ServerSettings", "check_policy_file", "load_policy",
]


@dataclass(frozen=True, eq=False)
class Policy:
    """A validated policy. Immutable: reloads build a new one."""

    path: str
    backends: dict[str, BackendSpec]
    models: dict[str, ModelAlias]
    routes: tuple[Route, ...]
    server: ServerSettings
    router: RouterSettings = RouterSettings()

    def alias(self, model: str) -> ModelAlias | None:
        """The alias a client's ``model`` names, or None for an unknown model."""
        return self.models.get(model) if isinstance(model, str) else None

    def route(self, name: str) -> Route | None:
        return next((r for r in self.routes if r.name == name), None)

    def warnings(self) -> list[str]:
        """``FILE:LINE: warning: ...`` for a policy that loads but routes against the grain:
        a structured, tool-call or predicted-edit request that streamed takes another backend
        than the same request unstreamed (the output contract, not ``stream``, should decide
        how a request is generated; ``stream`` only how it is sent)."""
        predicted = RequestPlan.of({"messages": [], "prediction": {"type": "content", "content": "x"}})
        found = []
        plain_request = RequestPlan.of({"messages": []})
        for task, what, plan, fix in (
                ("structured", "structured", plain_request,
                 "give its match a task list without structured (e.g. task: [chat, edit, code])"),
                ("tool_call", "tool_call", plain_request,
                 "give its match a task list without tool_call (e.g. task: [chat, edit, code])"),
                ("edit", "predicted edit", predicted, "add predicted: false to its match"),
                ("code", "predicted code", predicted, "add predicted: false to its match")):
            plain = self.decide(plan, Classification(task, False), {})
            streamed = self.decide(plan, Classification(task, True), {})
            if streamed.backend.name != plain.backend.name:
                route = self.route(streamed.route)
                found.append(
                    f"{self.path}:{route.line if route else 1}: warning: route '{streamed.route}' takes streamed "
                    f"{what} requests to backend {streamed.backend.name}, while unstreamed they go to "
                    f"{plain.backend.name} (route '{plain.route}'); {fix} so streams keep the same contract")
        return found

    def decide(self, request: RequestPlan | Mapping, classification: Classification,
               headers: Mapping[str, str]) -> Decision:
        """Pick the backend for ``request`` (its plan, or a body, planned here): an alias pin
        if the ``model`` has one, else the first route whose match holds. Raises LookupError
        only if nothing matches, which a validated policy rules out for the five tasks."""
        plan = request if isinstance(request, RequestPlan) else RequestPlan.of(request)
        model = plan.body.get("model")
        alias = self.alias(model)
        classification = self._confident(classification)
        # why the task (every rule that fired, the content model's top two), then the route
        task_why = tuple(f"task: {reason}" for reason in classification.reasons)
        common = dict(task=classification.task, stream=bool(classification.stream),
                      model_alias=alias.name if alias else None, tool_use=classification.tool_use,
                      confidence=classification.confidence)
        if alias is not None and alias.backend is not None:
            backend = self.backends[alias.backend]
            return Decision(**common, route=f"alias:{alias.name}", backend=backend,
                            params=copy.deepcopy(backend.params),
                            reasons=(*task_why, f"model alias '{alias.name}' pins backend {backend.name}"))
        if alias is not None and alias.route is not None:
            route = self.route(alias.route)
            return self._decision(common, route, (*task_why, f"model alias '{alias.name}' pins route {route.name}"))
        for route in self.routes:
            why = route.match.evaluate(plan, classification, headers)
            if why is not None:
                return self._decision(common, route, (*task_why, *(f"route '{route.name}': {w}" for w in why)))
        raise LookupError(f"{self.path}: no route matches task {classification.task!r} "
                          f"(stream={classification.stream}); add a catch-all route at the end")

    def _confident(self, classification: Classification) -> Classification:
        """The classification, or its ``router.fallback_task`` when the content model was
        less sure of its task than ``router.min_confidence``."""
        settings = self.router
        confidence = classification.confidence
        if confidence is None or confidence >= settings.min_confidence or classification.task == settings.fallback_task:
            return classification
        why = (f"confidence {confidence:.2f} for {classification.task!r} is below router.min_confidence "
               f"{settings.min_confidence:g}: fallback task {settings.fallback_task!r}")
        return dataclasses.replace(classification, task=settings.fallback_task,
                                   reasons=(*classification.reasons, why))

    def _decision(self, common: dict, route: Route, reasons: tuple[str, ...]) -> Decision:
        backend = self.backends[route.backend]
        params = copy.deepcopy(backend.params)
        params.update(copy.deepcopy(route.params))
        return Decision(**common, route=route.name, backend=backend, fallbacks=route.fallbacks,
                        params=params, reasons=reasons)


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file; raises PolicyError (every problem, FILE:LINE each)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError([(str(path), 1, f"cannot read policy file: {exc}")]) from None
    parts = read_policy(path, text)
    return Policy(path=str(path), backends=parts.backends, models=parts.models,
                  routes=parts.routes, server=parts.server, router=parts.router)


def check_policy_file(path: str | Path) -> tuple[list[str], list[str]]:
    """``(problems, warnings)``: ``FILE:LINE: message`` lines; no problems = valid."""
    try:
        policy = load_policy(path)
    except PolicyError as exc:
        return [f"{file}:{line}: {message}" for file, line, message in exc.problems], []
    return [], policy.warnings()
