"""Strict policy validation: located YAML -> typed specs, or every problem with FILE:LINE.

Reads in dependency order (backends, then routes, then model aliases) so references can
be checked where they are written, then runs whole-policy checks (unreachable routes,
task coverage). Problems are collected, never raised one at a time: an operator fixing a
policy sees all of them at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from router.policy_schema import (
    BACKEND_APIS, BACKEND_KEYS, BACKEND_KINDS, EMBEDDED_MODELS, ENGINE_KEYS, ENGINE_RULES, FALLBACK_CLASSES, FALLBACK_KEYS,
    MATCH_KEYS, MODEL_KEYS, PARAM_KEYS, ROUTE_KEYS, TOP_LEVEL_KEYS, BackendSpec,
    FallbackSpec, ModelAlias, PolicyError, Route, RouteMatch, RouterSettings, ServerSettings, VERIFIED_MODELS,
)
from router.policy_server import read_router, read_server
from router.policy_yaml import (
    NAME_PATTERN, Located, Reader, describe, did_you_mean, environ_snapshot, load_located,
)
from router.types import TASKS

SUPPORTED_VERSION = 1


@dataclass(frozen=True)
class PolicyParts:
    backends: dict[str, BackendSpec]
    models: dict[str, ModelAlias]
    routes: tuple[Route, ...]
    server: ServerSettings
    router: RouterSettings


def _read_params(r: Reader, loc: Located, path: str, max_tokens_limit: int) -> dict:
    fields = r.mapping(loc, path, PARAM_KEYS)
    if fields is None:
        return {}
    params: dict[str, Any] = {}
    limits = {"temperature": (0, 2), "top_p": (0, 1), "presence_penalty": (-2, 2), "frequency_penalty": (-2, 2)}
    for key, value in fields.items():
        where = f"{path}.{key}"
        if key in limits:
            params[key] = r.number(value, where, minimum=limits[key][0], maximum=limits[key][1])
        elif key == "max_tokens":
            params[key] = r.integer(value, where, minimum=1, maximum=max_tokens_limit)
        elif key in ("top_k", "seed"):
            params[key] = r.integer(value, where, minimum=0)
        elif key == "stop":
            entries = r.items(value, where, one_or_list=True) or []
            stops = [r.string(item, p, allow_empty=True) for item, p in entries]
            params[key] = stops if isinstance(value.value, list) else (stops[0] if stops else None)
    return {k: v for k, v in params.items() if v is not None}


def _read_engine(r: Reader, loc: Located, path: str) -> dict:
    fields = r.mapping(loc, path, ENGINE_KEYS)
    if fields is None:
        return {}
    engine: dict[str, Any] = {}
    for key, value in fields.items():
        where = f"{path}.{key}"
        if key in ("block_size", "max_steps"):
            engine[key] = r.integer(value, where, minimum=1)
        elif key == "stability_threshold":
            engine[key] = r.integer(value, where, minimum=0)
        elif key == "threshold":
            engine[key] = r.number(value, where, minimum=0, maximum=1, exclusive_minimum=True)
        elif key in ("entropy_bound", "confidence_threshold"):
            engine[key] = r.number(value, where, minimum=0, exclusive_minimum=True)
        elif key == "final_temperature":
            engine[key] = r.number(value, where, minimum=0)
        elif key in ("stop_on_eos", "loop_guard", "adapter_drafts"):
            engine[key] = r.boolean(value, where)
        elif key == "rule":
            engine[key] = r.string(value, where, choices=ENGINE_RULES)
    return {k: v for k, v in engine.items() if v is not None}


#: diffusion checkpoints loaded from a local directory (DiffusionGemma; LLaDA/Dream-style)
CHECKPOINT_PREFIXES = ("diffusion_gemma:", "masked_lm:")


def _local_checkpoint(model: str) -> bool:
    return model.startswith(CHECKPOINT_PREFIXES) and len(model.split(":", 1)[1]) > 0


def _read_backend(r: Reader, name: str, loc: Located, max_tokens_limit: int) -> BackendSpec | None:
    path = f"backends.{name}"
    fields = r.mapping(loc, path, BACKEND_KEYS, required=("kind", "model"))
    if fields is None or "kind" not in fields or "model" not in fields:
        return None
    kind = r.string(fields["kind"], f"{path}.kind", choices=BACKEND_KINDS)
    model = r.string(fields["model"], f"{path}.model")
    if kind is None or model is None:
        return None
    model_line = fields["model"].line
    if model.startswith("embedded/"):
        if model not in EMBEDDED_MODELS:
            r.error(model_line, f"{path}.model", f"unknown embedded model '{model}'"
                    f"{did_you_mean(model, EMBEDDED_MODELS)}; embedded models: {', '.join(EMBEDDED_MODELS)}")
        elif EMBEDDED_MODELS[model] != kind:
            r.error(fields["kind"].line, f"{path}.kind",
                    f"'{model}' is a {EMBEDDED_MODELS[model]} model; set kind: {EMBEDDED_MODELS[model]}")
        for key in ("api_base", "api_key"):
            if key in fields:
                r.error(fields[key].line, f"{path}.{key}", "embedded models run in-process; remove this key")
    elif kind == "diffusion" and not _local_checkpoint(model):
        diffusion = [m for m, k in EMBEDDED_MODELS.items() if k == "diffusion"]
        choices = diffusion + [prefix + "PATH" for prefix in CHECKPOINT_PREFIXES]
        r.error(model_line, f"{path}.model", f"diffusion backends run the local engine; use model: "
                                             f"{' or '.join(choices)}")
    api = r.string(fields["api"], f"{path}.api", choices=BACKEND_APIS) if "api" in fields else "chat"
    if api == "responses" and (model.startswith("embedded/") or kind != "ar"):
        r.error(fields["api"].line, f"{path}.api", "api: responses is for remote AR backends whose upstream "
                                                   "speaks the Responses API; remove it here")
    if "engine" in fields and kind != "diffusion":
        r.error(fields["engine"].line, f"{path}.engine", "engine settings apply to kind: diffusion only")
    optional_text = {}
    for key in ("api_base", "api_key"):
        if key in fields:
            optional_text[key] = r.string(fields[key], f"{path}.{key}", allow_empty=True,
                                          secret=key == "api_key") or None
    timeout = r.number(fields["timeout_s"], f"{path}.timeout_s", minimum=0, exclusive_minimum=True) \
        if "timeout_s" in fields else 60.0
    retries = r.integer(fields["max_retries"], f"{path}.max_retries", minimum=0, maximum=10) \
        if "max_retries" in fields else 0
    params = _read_params(r, fields["params"], f"{path}.params", max_tokens_limit) if "params" in fields else {}
    engine = _read_engine(r, fields["engine"], f"{path}.engine") if "engine" in fields else {}
    if engine.get("rule") == "verified" and model not in VERIFIED_MODELS:
        r.error(fields["engine"].line, f"{path}.engine.rule",
                f"rule 'verified' needs a model that can also verify as AR ({', '.join(VERIFIED_MODELS)}); "
                f"'{model}' cannot: use threshold, low_confidence or entropy_bound")
    return BackendSpec(name=name, kind=kind, model=model, timeout_s=float(timeout or 60.0),
                       max_retries=retries or 0, params=params, engine=engine, api=api or "chat",
                       **optional_text)


def _read_fallbacks(r: Reader, loc: Located, path: str, route_backend: str | None,
                    backends: Mapping[str, Any]) -> tuple[FallbackSpec, ...]:
    specs: list[FallbackSpec] = []
    seen: dict[str, int] = {}
    for item, where in r.items(loc, path) or []:
        fields = r.mapping(item, where, FALLBACK_KEYS, required=("backend",))
        if not fields or "backend" not in fields:
            continue
        backend = _backend_ref(r, fields["backend"], f"{where}.backend", backends)
        if backend is None:
            continue
        if backend == route_backend:
            r.error(fields["backend"].line, f"{where}.backend",
                    f"falls back to the route's own backend '{backend}'; pick a different backend")
            continue
        if backend in seen:
            r.error(fields["backend"].line, f"{where}.backend",
                    f"backend '{backend}' is already a fallback (line {seen[backend]})")
            continue
        seen[backend] = fields["backend"].line
        if "on" not in fields:
            specs.append(FallbackSpec(backend=backend, on=frozenset({"error"})))  # default: any error
            continue
        on: set[str | int] = set()
        for cond, cond_path in r.items(fields["on"], f"{where}.on", one_or_list=True) or []:
            value = cond.value
            if isinstance(value, str) and value.isdigit():
                value = int(value)  # "429" and 429 mean the same
            if isinstance(value, int) and not isinstance(value, bool):
                if 400 <= value <= 599:
                    on.add(value)
                else:
                    r.error(cond.line, cond_path, f"status {value} is not an error status (400-599)")
            elif isinstance(value, str) and value in FALLBACK_CLASSES:
                on.add(value)
            else:
                r.error(cond.line, cond_path, f"unknown error class {value!r}"
                        f"{did_you_mean(str(value), FALLBACK_CLASSES)}; use one of "
                        f"{', '.join(FALLBACK_CLASSES)} or an HTTP status code")
        if on:
            specs.append(FallbackSpec(backend=backend, on=frozenset(on)))
    return tuple(specs)


def _backend_ref(r: Reader, loc: Located, path: str, backends: Mapping[str, Any]) -> str | None:
    name = r.string(loc, path)
    if name is not None and name not in backends:
        r.error(loc.line, path, f"unknown backend '{name}'{did_you_mean(name, backends)}; "
                                f"defined backends: {', '.join(backends) or '(none)'}")
        return None
    return name


def _read_match(r: Reader, loc: Located, path: str, aliases: Iterable[str]) -> RouteMatch:
    fields = r.mapping(loc, path, MATCH_KEYS)
    if not fields:
        return RouteMatch()
    aliases = tuple(aliases)
    values: dict[str, Any] = {}
    if "task" in fields:
        tasks = [r.string(i, p, choices=TASKS) for i, p in r.items(fields["task"], f"{path}.task", one_or_list=True) or []]
        values["task"] = frozenset(t for t in tasks if t) or None
    for key in ("stream", "predicted"):
        if key in fields:
            values[key] = r.boolean(fields[key], f"{path}.{key}")
    if "model" in fields:
        models = []
        for item, p in r.items(fields["model"], f"{path}.model", one_or_list=True) or []:
            model = r.string(item, p)
            if model is not None and model not in aliases:
                r.error(item.line, p, f"unknown model alias '{model}'{did_you_mean(model, aliases)}; "
                                      f"define it under models:")
            elif model is not None:
                models.append(model)
        values["model"] = frozenset(models) or None
    for key, case_fold in (("headers", True), ("metadata", False)):
        if key not in fields:
            continue
        entries = []
        spec = fields[key]
        if not isinstance(spec.value, dict) or not spec.value:
            r.error(spec.line, f"{path}.{key}", f"expected a non-empty mapping of name: value, "
                                                f"got {describe(spec.value)}")
            continue
        for name, value in spec.value.items():
            accepted = set()
            for item, p in r.items(value, f"{path}.{key}.{name}", one_or_list=True) or []:
                if isinstance(item.value, (dict, list)) or item.value is None:
                    r.error(item.line, p, f"expected a string, number or boolean, got {describe(item.value)}")
                elif isinstance(item.value, bool):
                    accepted.add("true" if item.value else "false")
                else:
                    accepted.add(str(item.value).strip() if case_fold else str(item.value))
            entries.append((name.lower() if case_fold else name, frozenset(accepted)))
        values[key] = tuple(sorted(entries))
    for key in ("prompt_chars_min", "prompt_chars_max"):
        if key in fields:
            values[key] = r.integer(fields[key], f"{path}.{key}", minimum=0)
    low, high = values.get("prompt_chars_min"), values.get("prompt_chars_max")
    if low is not None and high is not None and low > high:
        r.error(fields["prompt_chars_max"].line, f"{path}.prompt_chars_max",
                f"prompt_chars_max {high} is below prompt_chars_min {low}: the route can never match")
    return RouteMatch(**{k: v for k, v in values.items() if v is not None})


def _read_route(r: Reader, index: int, loc: Located, backends: Mapping[str, BackendSpec],
                aliases: Iterable[str], max_tokens_limit: int) -> Route | None:
    path = f"routes[{index}]"
    fields = r.mapping(loc, path, ROUTE_KEYS, required=("name", "backend"))
    if fields is None:
        return None
    name = r.string(fields["name"], f"{path}.name", name=True) if "name" in fields else None
    backend = _backend_ref(r, fields["backend"], f"{path}.backend", backends) if "backend" in fields else None
    match = _read_match(r, fields["match"], f"{path}.match", aliases) if "match" in fields else RouteMatch()
    fallbacks = _read_fallbacks(r, fields["fallbacks"], f"{path}.fallbacks", backend, backends) \
        if "fallbacks" in fields else ()
    params = _read_params(r, fields["params"], f"{path}.params", max_tokens_limit) if "params" in fields else {}
    if name is None or backend is None:
        return None
    return Route(name=name, match=match, backend=backend, fallbacks=fallbacks, params=params, line=loc.line)


def _read_alias(r: Reader, name: str, loc: Located, routes: Mapping[str, Route],
                backends: Mapping[str, BackendSpec]) -> ModelAlias | None:
    path = f"models.{name}"
    if loc.value is None:  # `auto:` with nothing after it: classify and route normally
        return ModelAlias(name=name)
    fields = r.mapping(loc, path, MODEL_KEYS)
    if fields is None:
        return None
    route = backend = None
    if "route" in fields:
        route = r.string(fields["route"], f"{path}.route")
        if route is not None and route not in routes:
            r.error(fields["route"].line, f"{path}.route", f"unknown route '{route}'{did_you_mean(route, routes)}; "
                                                           f"defined routes: {', '.join(routes) or '(none)'}")
    if "backend" in fields:
        backend = _backend_ref(r, fields["backend"], f"{path}.backend", backends)
    if "route" in fields and "backend" in fields:
        r.error(fields["backend"].line, path, "pin either a route or a backend, not both")
    pinned = "route" in fields or "backend" in fields
    classify = not pinned
    if "classify" in fields:
        classify = r.boolean(fields["classify"], f"{path}.classify")
        if classify and pinned:
            r.error(fields["classify"].line, f"{path}.classify",
                    "classify: true has no effect on an alias that pins a route or backend; remove it")
    description = r.string(fields["description"], f"{path}.description", allow_empty=True) \
        if "description" in fields else ""
    return ModelAlias(name=name, classify=bool(classify), route=route, backend=backend, description=description or "")


def _check_reachability(r: Reader, routes: list[tuple[int, Route]], pinned: set[str]) -> None:
    """A route is dead when an earlier route matches everything it matches (alias-pinned
    routes are exempt: the alias reaches them without matching). ``routes``: (index, route)."""
    for position, (i, later) in enumerate(routes):
        if later.name in pinned:
            continue
        for _, earlier in routes[:position]:
            if earlier.match.covers(later.match):
                what = ("catch-all route" if earlier.match.catch_all else "route")
                r.error(later.line, f"routes[{i}]",
                        f"route '{later.name}' is unreachable: earlier {what} '{earlier.name}' (line {earlier.line}) "
                        f"matches every request it would; move it above '{earlier.name}' or narrow that route")
                break


def _check_coverage(r: Reader, routes: list[Route], routes_line: int) -> None:
    """Every task, streamed or not, must reach some route that has no header, metadata,
    model or size condition: otherwise a plain request could match nothing (an error)."""
    missing = []
    for task in TASKS:
        for stream in (False, True):
            if not any(rt.match.content_free and (rt.match.task is None or task in rt.match.task)
                       and (rt.match.stream is None or rt.match.stream == stream) for rt in routes):
                missing.append(f"{task}{' (stream)' if stream else ''}")
    if missing:
        r.error(routes_line, "routes", f"no route for task {', '.join(missing)}; add a catch-all route "
                                       f"(no match) at the end")


def read_policy(path: str | Path, text: str, environ: Mapping[str, str] | None = None) -> PolicyParts:
    """Validate ``text`` (the contents of ``path``); raise PolicyError listing every problem."""
    r = Reader(str(path))
    root = load_located(text, environ_snapshot() if environ is None else environ,
                        lambda line, msg: r.problems.append((r.file, line, msg)))
    top = r.mapping(root, "", TOP_LEVEL_KEYS, required=("version", "backends", "routes")) if root else None
    if top is None:
        raise PolicyError(r.problems)
    if "version" in top:
        version = top["version"].value
        if version != SUPPORTED_VERSION or isinstance(version, bool):
            r.error(top["version"].line, "version", f"unsupported version {version!r}; "
                                                    f"this Tandem reads version {SUPPORTED_VERSION}")
    server = read_server(r, top.get("server"))
    router = read_router(r, top.get("router"))

    backends: dict[str, BackendSpec] = {}
    if "backends" in top:
        loc = top["backends"]
        if not isinstance(loc.value, dict) or not loc.value:
            r.error(loc.line, "backends", f"expected a non-empty mapping of backend name: settings, "
                                          f"got {describe(loc.value)}")
        else:
            for name, spec in loc.value.items():
                if not NAME_PATTERN.match(name):
                    r.error(loc.key_lines[name], f"backends.{name}", "bad backend name: use letters, digits, '_-.'")
                backend = _read_backend(r, name, spec, server.max_tokens_limit)
                # a broken backend (None) still counts as defined: references to it are fine
                backends[name] = backend  # type: ignore[assignment]

    alias_names: tuple[str, ...] = ()
    models_loc = top.get("models")
    if models_loc is not None:
        if isinstance(models_loc.value, dict):
            alias_names = tuple(models_loc.value)
        else:
            r.error(models_loc.line, "models", f"expected a mapping of alias: settings, got {describe(models_loc.value)}")

    routes: list[Route] = []
    # route -> position in the file, for routes that were read without any problem: the
    # whole-policy checks only reason about those (a route whose `match` was invalid would
    # look like a catch-all and produce misleading "unreachable" errors)
    sound: dict[str, int] = {}
    all_sound = True
    first_line: dict[str, int] = {}
    if "routes" in top:
        for index, (item, where) in enumerate(r.items(top["routes"], "routes") or []):
            before = len(r.problems)
            route = _read_route(r, index, item, backends, alias_names, server.max_tokens_limit)
            if route is not None and route.name in first_line:
                r.error(item.value["name"].line, f"{where}.name",
                        f"duplicate route name '{route.name}' (first defined at line {first_line[route.name]})")
                route = None
            if route is None or len(r.problems) > before:
                all_sound = False
            if route is None:
                continue
            first_line[route.name] = route.line
            routes.append(route)
            if len(r.problems) == before:
                sound[route.name] = index

    models: dict[str, ModelAlias] = {}
    routes_by_name = {rt.name: rt for rt in routes}
    for name in alias_names:
        alias = _read_alias(r, name, models_loc.value[name], routes_by_name, backends)
        if alias is not None:
            models[name] = alias

    pinned = {a.route for a in models.values() if a.route}
    _check_reachability(r, [(sound[rt.name], rt) for rt in routes if rt.name in sound], pinned)
    if all_sound and routes:
        _check_coverage(r, routes, root.key_lines["routes"])
    if r.problems:
        raise PolicyError(sorted(r.problems, key=lambda p: p[1]))
    return PolicyParts(backends=backends, models=models, routes=tuple(routes), server=server, router=router)
