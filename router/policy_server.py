"""Reading a policy's ``server`` section (limits, auth, the response store, per-key quotas)
and its ``router`` section (how the classifier's confidence is used).

Same strict rules as the rest of the loader (``router/policy_load.py``): unknown keys are
named with a "did you mean", types are checked, every problem carries FILE:LINE, and a
secret (an API key) never appears in a message.
"""

from __future__ import annotations

from typing import Any

from router.policy_schema import (
    KEY_LIMIT_KEYS, LIMITS_KEYS, RESPONSES_KEYS, ROUTER_KEYS, SERVER_KEYS, KeyLimits, LimitsSettings,
    ResponseStoreSettings, RouterSettings, ServerSettings,
)
from router.types import TASKS
from router.policy_yaml import Located, Reader


def read_server(r: Reader, loc: Located | None) -> ServerSettings:
    if loc is None:
        return ServerSettings()
    fields = r.mapping(loc, "server", SERVER_KEYS) or {}
    values: dict[str, Any] = {}
    if "api_keys" in fields:
        keys_loc = fields["api_keys"]
        entries = [] if keys_loc.value in ([], None) else r.items(keys_loc, "server.api_keys") or []
        keys = [r.string(item, p, allow_empty=True, secret=True) for item, p in entries]
        # an entry that interpolates to "" (e.g. ${TANDEM_API_KEY:-}) is dropped: auth only when set
        values["api_keys"] = tuple(k for k in keys if k)
    for key in ("max_body_bytes", "max_concurrency", "max_tokens_limit", "max_json_depth", "max_connections",
                "max_header_bytes", "max_headers"):
        if key in fields:
            value = r.integer(fields[key], f"server.{key}", minimum=2 if key == "max_json_depth" else 1)
            if value is not None:
                values[key] = value
    for key in ("expose_upstream_errors", "protect_metrics"):
        if key in fields:
            value = r.boolean(fields[key], f"server.{key}")
            if value is not None:
                values[key] = value
    for key in ("drain_timeout_s", "read_timeout_s"):
        if key in fields:
            value = r.number(fields[key], f"server.{key}", minimum=0, exclusive_minimum=key == "read_timeout_s")
            if value is not None:
                values[key] = float(value)
    if "responses" in fields:
        values["responses"] = _read_responses(r, fields["responses"])
    if "limits" in fields:
        values["limits"] = _read_limits(r, fields["limits"], values.get("api_keys", ()))
    return ServerSettings(**values)


def _store(r: Reader, loc: Located, path: str, kinds: tuple[str, ...]) -> str | None:
    value = r.string(loc, path)
    if value is None:
        return None
    if value in kinds or value.startswith(("redis://", "rediss://", "unix://")) or (
            "sqlite" in kinds and value.startswith("sqlite:///")):
        return value
    shown = ", ".join((*kinds, *(("sqlite:///path.db",) if "sqlite" in kinds else ()), "redis://host:port/db"))
    r.error(loc.line, path, f"'{value}' is not a store; use one of {shown}")
    return None


def _read_responses(r: Reader, loc: Located) -> ResponseStoreSettings:
    fields = r.mapping(loc, "server.responses", RESPONSES_KEYS) or {}
    values: dict[str, Any] = {}
    if "store" in fields:
        values["store"] = _store(r, fields["store"], "server.responses.store", ("sqlite", "memory"))
    if "path" in fields:
        values["path"] = r.string(fields["path"], "server.responses.path", allow_empty=True)
    for key in ("retention_s", "max_record_bytes", "max_history_bytes"):
        if key in fields:
            values[key] = r.integer(fields[key], f"server.responses.{key}", minimum=1)
    try:
        return ResponseStoreSettings(**{k: v for k, v in values.items() if v is not None})
    except ValueError as exc:  # what only the combination rules out (a sqlite:/// file and a path)
        r.error(loc.line, "server.responses", str(exc))
        return ResponseStoreSettings()


def _read_key_limits(r: Reader, fields: dict[str, Located], path: str) -> KeyLimits:
    values = {}
    for key in KEY_LIMIT_KEYS:
        if key in fields:
            values[key] = r.integer(fields[key], f"{path}.{key}", minimum=1)
    return KeyLimits(**values)


def _read_limits(r: Reader, loc: Located, api_keys: tuple[str, ...]) -> LimitsSettings:
    fields = r.mapping(loc, "server.limits", LIMITS_KEYS) or {}
    values: dict[str, Any] = {}
    if "store" in fields:
        values["store"] = _store(r, fields["store"], "server.limits.store", ("memory",))
    if "on_store_error" in fields:
        values["on_store_error"] = r.string(fields["on_store_error"], "server.limits.on_store_error",
                                            choices=("open", "closed"))
    if "default" in fields:
        default = r.mapping(fields["default"], "server.limits.default", KEY_LIMIT_KEYS)
        if default is not None:
            values["default"] = _read_key_limits(r, default, "server.limits.default")
    if "keys" in fields:
        keyed = []
        for item, path in r.items(fields["keys"], "server.limits.keys") or []:
            entry = r.mapping(item, path, ("key", *KEY_LIMIT_KEYS), required=("key",))
            if entry is None or "key" not in entry:
                continue
            key = r.string(entry["key"], f"{path}.key", secret=True)
            if key is not None and api_keys and key not in api_keys:
                r.error(entry["key"].line, f"{path}.key", "is not one of server.api_keys (its value is hidden); "
                                                           "limits apply to keys the gateway accepts")
            if key:
                keyed.append((key, _read_key_limits(r, entry, path)))
        values["keys"] = tuple(keyed)
    return LimitsSettings(**{k: v for k, v in values.items() if v is not None})


def read_router(r: Reader, loc: Located | None) -> RouterSettings:
    if loc is None:
        return RouterSettings()
    fields = r.mapping(loc, "router", ROUTER_KEYS) or {}
    values: dict[str, Any] = {}
    if "min_confidence" in fields:
        values["min_confidence"] = r.number(fields["min_confidence"], "router.min_confidence", minimum=0, maximum=1)
    if "fallback_task" in fields:
        values["fallback_task"] = r.string(fields["fallback_task"], "router.fallback_task", choices=TASKS)
    return RouterSettings(**{k: v for k, v in values.items() if v is not None})
