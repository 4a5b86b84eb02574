"""The policy's server section: the response store and per-key limits, read strictly."""

from __future__ import annotations

import pytest

from router.policy import PolicyError, load_policy
from router.policy_schema import KeyLimits

BASE = """\
version: 1
server:
{server}
backends:
  ar: {{kind: ar, model: embedded/smollm2}}
routes:
  - name: default
    backend: ar
"""


def load(tmp_path, server: str, env: dict | None = None, monkeypatch=None):
    path = tmp_path / "policy.yaml"
    path.write_text(BASE.format(server=server))
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    return load_policy(path)


def problems(tmp_path, server: str) -> str:
    with pytest.raises(PolicyError) as info:
        load(tmp_path, server)
    return str(info.value)


def test_defaults_when_absent(tmp_path):
    server = load(tmp_path, "  max_concurrency: 8").server
    assert server.responses.store == "sqlite" and server.responses.retention_s == 30 * 24 * 3600
    assert server.limits.store == "memory" and not server.limits.enabled()
    assert server.drain_timeout_s == 30.0


def test_store_and_limits_read(tmp_path, monkeypatch):
    server = load(tmp_path, """\
  api_keys: ["${KEY_A}", "${KEY_B}"]
  drain_timeout_s: 5
  responses: {store: "redis://127.0.0.1:6390/0", retention_s: 60, max_record_bytes: 1000}
  limits:
    store: "redis://127.0.0.1:6390/1"
    on_store_error: closed
    default: {requests_per_minute: 100}
    keys:
      - {key: "${KEY_A}", requests_per_minute: 5, tokens_per_minute: 1000, concurrent: 2}""",
                  {"KEY_A": "sk-a", "KEY_B": "sk-b"}, monkeypatch).server
    assert server.responses.store.startswith("redis://") and server.responses.max_record_bytes == 1000
    assert server.limits.on_store_error == "closed" and server.drain_timeout_s == 5.0
    assert server.limits.for_key("sk-a") == KeyLimits(5, 1000, 2)
    assert server.limits.for_key("sk-b") == KeyLimits(requests_per_minute=100)
    assert "sk-a" not in repr(server.limits)


def test_typos_and_bad_values_are_named_with_the_fix(tmp_path):
    text = problems(tmp_path, """\
  responses: {stor: sqlite, retention_s: 0}
  limits: {store: postgres, on_store_error: maybe, default: {request_per_minute: 5}}""")
    assert "server.responses: unknown key 'stor' (did you mean 'store'?)" in text
    assert "server.responses.retention_s: must be at least 1, got 0" in text
    assert "server.limits.store: 'postgres' is not a store; use one of memory, redis://host:port/db" in text
    assert "server.limits.on_store_error: 'maybe' is not one of open, closed" in text
    assert "unknown key 'request_per_minute' (did you mean 'requests_per_minute'?)" in text
    assert "policy.yaml:3:" in text  # FILE:LINE on each problem


def test_a_limited_key_must_be_an_accepted_key_and_is_never_shown(tmp_path):
    text = problems(tmp_path, """\
  api_keys: [sk-real]
  limits: {keys: [{key: sk-typo-secret, requests_per_minute: 5}]}""")
    assert "server.limits.keys[0].key: is not one of server.api_keys" in text
    assert "sk-typo-secret" not in text and "sk-real" not in text


ROUTED = """\
version: 1
{router}
backends:
  ar: {{kind: ar, model: embedded/smollm2}}
  diff: {{kind: diffusion, model: embedded/smollm2-diffusion}}
routes:
  - name: to-diffusion
    match: {{task: [code, edit, structured, tool_call]}}
    backend: diff
  - name: default
    backend: ar
"""


def routed_policy(tmp_path, router: str = ""):
    path = tmp_path / "routed.yaml"
    path.write_text(ROUTED.format(router=router))
    return load_policy(path)


def test_unsure_content_verdicts_take_the_fallback_task(tmp_path):
    from router.types import Classification

    policy = routed_policy(tmp_path, "router: {min_confidence: 0.7}")
    unsure = Classification("code", False, ("content model: code (p=0.55), runner-up chat (p=0.40)",), confidence=0.55)
    decision = policy.decide({"model": "auto"}, unsure, {})
    assert decision.task == "chat" and decision.backend.name == "ar"
    assert decision.reasons[0] == "task: content model: code (p=0.55), runner-up chat (p=0.40)"
    assert "below router.min_confidence 0.7: fallback task 'chat'" in decision.reasons[1]
    assert decision.reasons[-1].startswith("route 'default'")
    sure = Classification("code", False, ("content model: code (p=0.91)",), confidence=0.91)
    assert policy.decide({"model": "auto"}, sure, {}).backend.name == "diff"
    shape = Classification("structured", False, ("response_format json_schema",))  # rules are certain
    assert policy.decide({"model": "auto"}, shape, {}).backend.name == "diff"


def test_router_section_defaults_and_errors(tmp_path):
    assert routed_policy(tmp_path).router.min_confidence == 0.45
    custom = routed_policy(tmp_path, "router: {min_confidence: 0.4, fallback_task: edit}").router
    assert (custom.min_confidence, custom.fallback_task) == (0.4, "edit")
    with pytest.raises(PolicyError) as info:
        routed_policy(tmp_path, "router: {min_confidense: 2, fallback_task: talk}")
    text = str(info.value)
    assert "router: unknown key 'min_confidense' (did you mean 'min_confidence'?)" in text
    assert "router.fallback_task: 'talk' is not one of chat, structured, edit, code, tool_call" in text


def test_store_file_named_twice_is_a_policy_error(tmp_path):
    text = problems(tmp_path, '  responses: {store: "sqlite:///var/lib/tandem/r.db", path: /tmp/other.db}')
    assert "server.responses: response store 'sqlite:///var/lib/tandem/r.db' names the file already" in text
    assert load(tmp_path, '  responses: {store: "sqlite:///var/lib/tandem/r.db"}').server.responses.sqlite_path() \
        .as_posix() == "/var/lib/tandem/r.db"
