"""YAML routing policies: strict validation with FILE:LINE, decide(), fallbacks, hot reload."""

from __future__ import annotations

import json
import logging
import os
import signal
import textwrap
import threading
import time
from pathlib import Path

import jsonschema
import pytest

from router import policy_schema
from router.decision import Decision
from router.policy import (
    BackendSpec, FallbackSpec, Policy, PolicyError, ServerSettings, check_policy_file, load_policy,
)
from router.plan import RequestPlan
from router.policy_watch import PolicyHolder
from router.policy_yaml import load_located
from router.types import TASKS, Classification

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "policies" / "default.yaml"
PASSTHROUGH = ROOT / "bench" / "policies" / "passthrough.yaml"
SCHEMA = ROOT / "policies" / "policy.schema.json"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "policies"


def line_of(path: Path, snippet: str) -> int:
    """1-based line of the only line containing ``snippet`` (keeps expectations readable)."""
    hits = [i for i, line in enumerate(path.read_text().splitlines(), 1) if snippet in line]
    assert len(hits) == 1, f"{snippet!r} occurs on lines {hits} of {path}"
    return hits[0]


def problems_of(path: Path) -> list[str]:
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    lines = str(info.value).splitlines()
    assert lines == [f"{f}:{n}: {m}" for f, n, m in info.value.problems]
    assert check_policy_file(path) == (lines, [])
    return lines


def write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


MINIMAL = """\
version: 1
backends:
  ar: {kind: ar, model: embedded/smollm2, params: {temperature: 0.7}}
  diff: {kind: diffusion, model: embedded/smollm2-diffusion}
routes:
  - name: default
    backend: ar
"""


def cls(task: str = "chat", stream: bool = False) -> Classification:
    return Classification(task=task, stream=stream)


# --- the shipped policies -----------------------------------------------------------------

def test_default_policy_routes_by_task_and_stream():
    policy = load_policy(DEFAULT)
    assert {"auto", "ar", "diffusion"} <= set(policy.models)
    assert policy.alias("auto").classify is True
    assert policy.backends["embedded-ar"].model == "embedded/smollm2"
    assert policy.backends["embedded-diffusion"].model == "embedded/smollm2-diffusion"
    for task in ("chat", "edit", "code"):  # free-text streams go to AR
        assert policy.decide({"model": "auto"}, cls(task, True), {}).backend.kind == "ar"
    for task in ("structured", "tool_call"):  # a stream takes the same validated route as without
        assert policy.decide({"model": "auto"}, cls(task, True), {}).route == "structured-to-diffusion"
    for task in ("structured", "tool_call", "edit", "code"):
        decision = policy.decide({"model": "auto"}, cls(task), {})
        assert decision.backend.name == "embedded-diffusion"
        assert [f.backend for f in decision.fallbacks] == ["embedded-ar"]
        assert decision.fallbacks[0].applies(status=503, timeout=False, connection=False)
        assert decision.params["temperature"] == 0.0  # route params over backend params
    chat = policy.decide({"model": "auto"}, cls("chat"), {})
    assert chat.backend.name == "embedded-ar" and chat.fallbacks == ()
    assert chat.params == {"temperature": 0.7}


def test_default_policy_aliases_force_backends():
    policy = load_policy(DEFAULT)
    ar = policy.decide({"model": "ar"}, cls("code"), {})
    assert ar.backend.name == "embedded-ar"
    assert ar.reasons == ("model alias 'ar' pins backend embedded-ar",)
    assert ar.model_alias == "ar" and ar.route == "alias:ar"
    diff = policy.decide({"model": "diffusion"}, cls("chat", stream=True), {})
    assert diff.backend.name == "embedded-diffusion"
    assert policy.alias("ar").classify is False and policy.alias("nope") is None


def test_shipped_policies_validate_against_json_schema(monkeypatch):
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    validator = jsonschema.Draft202012Validator(schema)
    for path in (DEFAULT, PASSTHROUGH):
        document = load_located(path.read_text(), None, lambda line, msg: pytest.fail(msg)).plain()
        errors = [e.message for e in validator.iter_errors(document)]
        assert errors == [], f"{path}: {errors}"
    # and the schema is strict too: the typo the loader catches, the schema catches
    typo = load_located((FIXTURES / "typo_key.yaml").read_text(), None, lambda *a: None).plain()
    assert not validator.is_valid(typo)


def test_json_schema_keys_match_the_validator():
    schema = json.loads(SCHEMA.read_text())
    defs = schema["$defs"]
    pairs = {
        "top": (schema, policy_schema.TOP_LEVEL_KEYS), "server": (defs["server"], policy_schema.SERVER_KEYS),
        "backend": (defs["backend"], policy_schema.BACKEND_KEYS), "model": (defs["model"], policy_schema.MODEL_KEYS),
        "route": (defs["route"], policy_schema.ROUTE_KEYS), "match": (defs["match"], policy_schema.MATCH_KEYS),
        "fallback": (defs["fallback"], policy_schema.FALLBACK_KEYS), "params": (defs["params"], policy_schema.PARAM_KEYS),
        "engine": (defs["engine"], policy_schema.ENGINE_KEYS),
    }
    for name, (node, keys) in pairs.items():
        assert set(node["properties"]) == set(keys), name
        assert node["additionalProperties"] is False, name
    assert defs["match"]["properties"]["task"]["oneOf"][0]["enum"] == list(TASKS)


def test_passthrough_policy(monkeypatch):
    monkeypatch.setenv("UPSTREAM_BASE", "http://127.0.0.1:8001/v1")
    monkeypatch.delenv("UPSTREAM_API_KEY", raising=False)
    policy = load_policy(PASSTHROUGH)
    alias = policy.alias("passthrough")
    assert alias.classify is False and alias.route is not None
    decision = policy.decide({"model": "passthrough"}, cls("code"), {})
    backend = decision.backend
    assert backend.kind == "ar" and backend.model.startswith("openai/")
    assert backend.api_base == "http://127.0.0.1:8001/v1" and backend.api_key == "none"
    monkeypatch.setenv("UPSTREAM_API_KEY", "sk-upstream")
    assert load_policy(PASSTHROUGH).backends[backend.name].api_key == "sk-upstream"
    monkeypatch.delenv("UPSTREAM_BASE")
    lines = [i for i, line in enumerate(PASSTHROUGH.read_text().splitlines(), 1) if "api_base:" in line]
    assert problems_of(PASSTHROUGH) == [
        f"{PASSTHROUGH}:{line}: backends.{name}.api_base: environment variable "
        f"UPSTREAM_BASE is not set (set it, or write ${{UPSTREAM_BASE:-default}})"
        for line, name in zip(lines, ["upstream", "upstream-responses"])]


# --- validation errors name FILE:LINE -------------------------------------------------------

def test_typo_keys_get_suggestions():
    path = FIXTURES / "typo_key.yaml"
    assert problems_of(path) == [
        f"{path}:{line_of(path, 'modles:')}: top level: unknown key 'modles' (did you mean 'models'?)",
        f"{path}:{line_of(path, 'fallbcks:')}: routes[1]: unknown key 'fallbcks' (did you mean 'fallbacks'?)",
    ]


def test_bad_references():
    path = FIXTURES / "bad_ref.yaml"
    defined = "defined backends: embedded-ar, embedded-diffusion"
    assert problems_of(path) == [
        f"{path}:{line_of(path, 'embeded-ar')}: models.fast.backend: unknown backend 'embeded-ar' "
        f"(did you mean 'embedded-ar'?); {defined}",
        f"{path}:{line_of(path, 'no-such-route')}: models.forced.route: unknown route 'no-such-route'; "
        f"defined routes: structured",
        f"{path}:{line_of(path, 'fsat')}: routes[0].match.model: unknown model alias 'fsat' "
        f"(did you mean 'fast'?); define it under models:",
        f"{path}:{line_of(path, 'remote-ar')}: routes[0].fallbacks[0].backend: unknown backend 'remote-ar' "
        f"(did you mean 'embedded-ar'?); {defined}",
        f"{path}:{line_of(path, 'embedded-ar-2')}: routes[1].backend: unknown backend 'embedded-ar-2' "
        f"(did you mean 'embedded-ar'?); {defined}",
    ]


def test_unreachable_after_catch_all():
    path = FIXTURES / "unreachable.yaml"
    catch_all = line_of(path, "name: everything")
    assert problems_of(path) == [
        f"{path}:{line_of(path, 'name: code')}: routes[1]: route 'code' is unreachable: earlier catch-all route "
        f"'everything' (line {catch_all}) matches every request it would; move it above 'everything' "
        f"or narrow that route",
        f"{path}:{line_of(path, 'name: streams')}: routes[2]: route 'streams' is unreachable: earlier catch-all "
        f"route 'everything' (line {catch_all}) matches every request it would; move it above 'everything' "
        f"or narrow that route",
    ]


def test_wrong_types_and_ranges():
    path = FIXTURES / "wrong_type.yaml"
    assert problems_of(path) == [
        f"{path}:{line_of(path, 'max_concurrency')}: server.max_concurrency: must be at least 1, got -4",
        f"{path}:{line_of(path, 'api_keys')}: server.api_keys: expected a list, got string 'secret'",
        f"{path}:{line_of(path, 'timeout_s')}: backends.ar.timeout_s: expected a number, got string 'fast'",
        f"{path}:{line_of(path, 'temperature')}: backends.ar.params.temperature: must be at most 2, got 3.5",
        f"{path}:{line_of(path, 'max_tokens')}: backends.ar.params.max_tokens: must be at most 8192, got 99999999",
        f"{path}:{line_of(path, 'chitchat')}: routes[0].match.task: 'chitchat' is not one of chat, structured, "
        f"edit, code, tool_call (did you mean 'chat'?)",
        f"{path}:{line_of(path, 'chitchat')}: routes[0].match.stream: expected true or false, got string 'yes'",
    ]


def test_missing_env_var_without_default(monkeypatch):
    monkeypatch.delenv("TANDEM_TEST_SURELY_UNSET_KEY", raising=False)
    monkeypatch.delenv("TANDEM_TEST_SURELY_UNSET_BASE", raising=False)
    path = FIXTURES / "missing_env.yaml"
    assert problems_of(path) == [
        f"{path}:{line_of(path, 'api_key:')}: backends.remote.api_key: environment variable "
        f"TANDEM_TEST_SURELY_UNSET_KEY is not set (set it, or write ${{TANDEM_TEST_SURELY_UNSET_KEY:-default}})"]
    monkeypatch.setenv("TANDEM_TEST_SURELY_UNSET_KEY", "sk-123")
    backend = load_policy(path).backends["remote"]
    assert backend.api_key == "sk-123" and backend.api_base == "http://127.0.0.1:9/v1"


def test_duplicates_and_fallback_to_itself():
    path = FIXTURES / "duplicates.yaml"
    lines = path.read_text().splitlines()
    first_ar, second_ar = [i for i, line in enumerate(lines, 1) if line.startswith("  ar:")]
    first_code, second_code = [i for i, line in enumerate(lines, 1) if line == "  - name: code"]
    assert problems_of(path) == [
        f"{path}:{second_ar}: backends.ar: duplicate key 'ar' (first at line {first_ar})",
        f"{path}:{line_of(path, 'backend: diff, on')}: routes[0].fallbacks[0].backend: falls back to the "
        f"route's own backend 'diff'; pick a different backend",
        f"{path}:{second_code}: routes[1].name: duplicate route name 'code' (first defined at line {first_code})",
    ]


def test_missing_task_coverage_is_an_error():
    path = FIXTURES / "no_coverage.yaml"
    assert problems_of(path) == [
        f"{path}:{line_of(path, 'routes:')}: routes: no route for task chat, chat (stream), structured (stream), "
        f"edit (stream), code (stream), tool_call (stream); add a catch-all route (no match) at the end"]


def test_yaml_syntax_error_names_line():
    path = FIXTURES / "syntax_error.yaml"
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:4: YAML syntax error: ") and "line 3" in problem


@pytest.mark.parametrize("snippet, message", [
    ("version: 2\n", "version: unsupported version 2; this Tandem reads version 1"),
    ("backends:\n  x: {kind: diffusion, model: openai/gpt-4o}\n",
     "backends.x.model: diffusion backends run the local engine; use model: embedded/smollm2-diffusion"
     " or diffusion_gemma:PATH or masked_lm:PATH"),
    ("backends:\n  x: {kind: diffusion, model: embedded/smollm2}\n",
     "backends.x.kind: 'embedded/smollm2' is a ar model; set kind: ar"),
    ("backends:\n  x: {kind: ar, model: embedded/smollm2, api_key: k}\n",
     "backends.x.api_key: embedded models run in-process; remove this key"),
    ("backends:\n  x: {kind: ar, model: embedded/smollm2, engine: {block_size: 8}}\n",
     "backends.x.engine: engine settings apply to kind: diffusion only"),
    ("backends:\n  x: {kind: diffusion, model: embedded/smollm2-diffusion, engine: {blok_size: 8}}\n",
     "backends.x.engine: unknown key 'blok_size' (did you mean 'block_size'?)"),
    ("backends:\n  x: {kind: diffusion, model: embedded/smollm2-diffusion, engine: {rule: entropy}}\n",
     "backends.x.engine.rule: 'entropy' is not one of threshold, low_confidence, entropy_bound, verified "
     "(did you mean 'entropy_bound'?)"),
    ("backends:\n  x: {kind: diffusion, model: 'diffusion_gemma:/ckpt', engine: {rule: verified}}\n",
     "backends.x.engine.rule: rule 'verified' needs a model that can also verify as AR "
     "(embedded/smollm2-diffusion); 'diffusion_gemma:/ckpt' cannot: use threshold, low_confidence or entropy_bound"),
    ("backends:\n  x: {kind: diffusion, model: embedded/smollm2-diffusion, engine: {loop_guard: 'off'}}\n",
     "backends.x.engine.loop_guard: expected true or false, got string 'off'"),
    ("backends:\n  x: {kind: diffusion, model: embedded/smollm2-diffusion, engine: {adapter_drafts: 0}}\n",
     "backends.x.engine.adapter_drafts: expected true or false, got integer 0"),
    ("backends:\n  x: {kind: ar, model: embedded/smol}\n",
     "backends.x.model: unknown embedded model 'embedded/smol' (did you mean 'embedded/smollm2'?); "
     "embedded models: embedded/smollm2, embedded/smollm2-diffusion"),
    ("models:\n  m: {route: default, backend: ar}\n", "models.m: pin either a route or a backend, not both"),
    ("models:\n  m: {backend: ar, classify: true}\n",
     "models.m.classify: classify: true has no effect on an alias that pins a route or backend; remove it"),
    ("fallback_on: [timeout, 5xxx]\n",
     "routes[0].fallbacks[0].on[1]: unknown error class '5xxx' (did you mean '5xx'?); use one of "
     "timeout, connection, 5xx, 429, error or an HTTP status code"),
    ("fallback_on: 200\n", "routes[0].fallbacks[0].on: status 200 is not an error status (400-599)"),
    ("match: {prompt_chars_min: 10, prompt_chars_max: 5}\n",
     "routes[0].match.prompt_chars_max: prompt_chars_max 5 is below prompt_chars_min 10: the route can never match"),
])
def test_single_problem_messages(tmp_path, snippet, message):
    backends = "backends:\n  ar: {kind: ar, model: embedded/smollm2}\n  diff: {kind: diffusion, model: embedded/smollm2-diffusion}\n"
    route = "routes:\n  - name: first\n    match: {task: code}\n    backend: diff\n"
    text = "version: 1\n" + backends + route + "  - name: default\n    backend: ar\n"
    if snippet.startswith("version"):
        text = text.replace("version: 1\n", snippet)
    elif snippet.startswith("backends"):
        text = text.replace(backends, backends + snippet.split("\n", 1)[1])
    elif snippet.startswith("models"):
        text += snippet
    elif snippet.startswith("fallback_on"):
        text = text.replace("backend: diff\n", "backend: diff\n    fallbacks:\n      - backend: ar\n        on: "
                            + snippet.split(": ", 1)[1])
    else:
        text = text.replace("    match: {task: code}\n", "    " + snippet)
    path = write(tmp_path, text)
    [problem] = problems_of(path)
    assert problem.split(": ", 1)[1] == message, problem
    assert problem.startswith(f"{path}:")
    assert int(problem.split(":")[1]) >= 1


def test_error_reports_every_problem_one_per_line():
    error = PolicyError([("a.yaml", 3, "first"), ("a.yaml", 9, "second")])
    assert str(error) == "a.yaml:3: first\na.yaml:9: second"
    assert error.problems == [("a.yaml", 3, "first"), ("a.yaml", 9, "second")]


def test_unreadable_file_and_valid_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    [problem], _ = check_policy_file(missing)
    assert problem.startswith(f"{missing}:1: cannot read policy file")
    assert check_policy_file(DEFAULT) == ([], [])


def stream_policy(stream_match: str, diffusion_tasks: str) -> str:
    """A policy whose first route takes streams to AR (line 6), then diffusion for some tasks."""
    return textwrap.dedent(f"""\
        version: 1
        backends:
          ar: {{kind: ar, model: embedded/smollm2}}
          dllm: {{kind: diffusion, model: embedded/smollm2-diffusion}}
        routes:
          - name: stream-first
            match: {stream_match}
            backend: ar
          - name: diffusion
            match: {{task: {diffusion_tasks}}}
            backend: dllm
          - name: default
            backend: ar
        """)


def test_warns_when_streams_would_skip_the_structured_route(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(stream_policy("{stream: true}", "[structured, tool_call]"))
    problems, warnings = check_policy_file(path)
    assert problems == [] and len(warnings) == 2
    assert warnings[0].startswith(f"{path}:6: warning: route 'stream-first' takes streamed structured")
    assert "task: [chat, edit, code]" in warnings[0]


def test_predicted_match_and_the_warning_for_predicted_streams(tmp_path):
    path = tmp_path / "p.yaml"
    tasks = "[structured, tool_call, edit, code]"
    path.write_text(stream_policy("{stream: true, task: [chat, edit, code]}", tasks))
    problems, warnings = check_policy_file(path)
    assert problems == [] and len(warnings) == 2
    assert "streamed predicted edit requests to backend ar" in warnings[0]
    assert "add predicted: false to its match" in warnings[0]
    path.write_text(stream_policy("{stream: true, task: [chat, edit, code], predicted: false}", tasks))
    assert check_policy_file(path) == ([], [])
    policy = load_policy(path)
    document = {"type": "content", "content": "the cat sat"}
    predicted = policy.decide({"messages": [], "prediction": document}, Classification("edit", True), {})
    assert predicted.route == "diffusion"
    assert policy.decide({"messages": []}, Classification("edit", True), {}).route == "stream-first"
    path.write_text(stream_policy("{stream: true, predicted: maybe}", tasks))
    [problem], _ = check_policy_file(path)
    assert "routes[0].match.predicted: expected true or false" in problem


# --- interpolation ---------------------------------------------------------------------------

def test_env_interpolation_forms(tmp_path, monkeypatch):
    monkeypatch.setenv("T_BASE", "http://upstream:8000/v1")
    monkeypatch.setenv("T_EMPTY", "")
    monkeypatch.setenv("T_TIMEOUT", "7.5")
    monkeypatch.delenv("T_UNSET", raising=False)
    path = write(tmp_path, """\
        version: 1
        server:
          api_keys: ["${T_UNSET:-}", "k-${T_EMPTY:-fallback}"]
        backends:
          remote:
            kind: ar
            model: "openai/${T_UNSET:-gpt-4o-mini}"
            api_base: "${T_BASE}"
            api_key: "$${literal}"
            timeout_s: ${T_TIMEOUT}
            max_retries: ${T_UNSET:-2}
        routes:
          - name: default
            backend: remote
        """)
    policy = load_policy(path)
    remote = policy.backends["remote"]
    assert remote.model == "openai/gpt-4o-mini"
    assert remote.api_base == "http://upstream:8000/v1"
    assert remote.api_key == "${literal}"
    assert remote.timeout_s == 7.5 and remote.max_retries == 2  # unquoted values are re-typed
    assert policy.server.api_keys == ("k-fallback",)  # empty entries dropped, `:-` applies to empty


def test_bad_interpolation_syntax(tmp_path):
    path = write(tmp_path, 'version: 1\nbackends:\n  r: {kind: ar, model: "openai/${1BAD}"}\n'
                           "routes:\n  - {name: d, backend: r}\n")
    [problem] = problems_of(path)
    assert problem == (f"{path}:3: backends.r.model: bad variable reference '${{1BAD}}': "
                       f"use ${{NAME}} or ${{NAME:-default}}")


def test_secrets_are_masked_in_reprs_and_errors(monkeypatch, tmp_path):
    monkeypatch.setenv("UPSTREAM_BASE", "http://x/v1")
    monkeypatch.setenv("UPSTREAM_API_KEY", "sk-very-secret")
    policy = load_policy(PASSTHROUGH)
    assert "sk-very-secret" not in repr(policy)
    assert "sk-very-secret" not in repr(policy.decide({"model": "passthrough"}, cls(), {}))
    path = write(tmp_path, MINIMAL.replace("version: 1\n", "version: 1\nserver: {api_keys: [1234567]}\n").replace(
        "backends:\n", "backends:\n  remote: {kind: ar, model: openai/x, api_key: 98765432}\n"))
    problems = "\n".join(problems_of(path))
    assert "api_key: expected a string, got integer" in problems and "api_keys[0]: expected a string" in problems
    assert "98765432" not in problems and "1234567" not in problems
    settings = ServerSettings(api_keys=("tk-secret",))
    assert "tk-secret" not in repr(settings) and "1 masked" in repr(settings)


# --- decide ------------------------------------------------------------------------------------

ORDERED = """\
version: 1
backends:
  ar: {kind: ar, model: embedded/smollm2, params: {temperature: 0.7, top_p: 0.9}}
  diff: {kind: diffusion, model: embedded/smollm2-diffusion}
  big: {kind: ar, model: openai/gpt-4o-mini, api_key: "k"}
models:
  auto: {}
  ar: {backend: ar}
  strict: {route: strict-json, classify: false}
routes:
  - name: premium
    match: {headers: {X-Tier: [premium, gold]}}
    backend: big
  - name: tenant-a
    match: {metadata: {tenant: a, priority: 1}}
    backend: big
  - name: long-prompts
    match: {prompt_chars_min: 50}
    backend: big
    params: {temperature: 0.2}
  - name: code
    match: {task: code}
    backend: diff
    fallbacks:
      - {backend: ar, on: [timeout, 429]}
      - {backend: big}
  - name: default
    backend: ar
  - name: strict-json
    match: {model: strict}
    backend: diff
    params: {max_tokens: 256}
"""


def test_first_match_wins_in_order(tmp_path):
    policy = load_policy(write(tmp_path, ORDERED))
    req = {"model": "auto", "messages": [{"role": "user", "content": "fix this"}]}
    code = policy.decide(req, cls("code"), {})
    assert code.route == "code" and code.backend.name == "diff"
    assert code.reasons == ("route 'code': task 'code' in ['code']",)
    # the same code request with a premium header hits the earlier route
    premium = policy.decide(req, cls("code"), {"x-TIER": "gold"})
    assert premium.route == "premium" and premium.reasons == ("route 'premium': header x-tier: 'gold'",)
    assert policy.decide(req, cls("code"), {"X-Tier": "basic"}).route == "code"
    # metadata compares as text: YAML `priority: 1` matches "1"
    tenant = {**req, "metadata": {"tenant": "a", "priority": "1"}}
    assert policy.decide(tenant, cls("code"), {}).route == "tenant-a"
    assert policy.decide({**req, "metadata": {"tenant": "a"}}, cls("code"), {}).route == "code"
    # size of all message text, list content parts included
    long_req = {"model": "auto", "messages": [
        {"role": "system", "content": "x" * 30},
        {"role": "user", "content": [{"type": "text", "text": "y" * 20}]}]}
    long = policy.decide(long_req, cls("chat"), {})
    assert long.route == "long-prompts" and long.params == {"temperature": 0.2}  # big has no params
    assert long.reasons == ("route 'long-prompts': prompt_chars 50 in [50, inf]",)
    chat = policy.decide(req, cls("chat"), {})
    assert chat.route == "default"
    assert chat.explain() == {"task": "chat", "stream": False, "route": "default", "backend": "ar",
                              "fallbacks": [], "reasons": ["route 'default': catch-all (no match conditions)"], "tool_use": None,
                              "confidence": None}


def test_alias_pins_route_even_after_catch_all(tmp_path):
    policy = load_policy(write(tmp_path, ORDERED))  # strict-json sits after the catch-all: allowed, it is pinned
    decision = policy.decide({"model": "strict"}, cls("chat"), {"X-Tier": "premium"})
    assert decision.route == "strict-json" and decision.backend.name == "diff"
    assert decision.reasons == ("model alias 'strict' pins route strict-json",)
    assert decision.params == {"max_tokens": 256} and decision.model_alias == "strict"
    assert policy.alias("strict").classify is False
    pinned = policy.decide({"model": "ar"}, cls("code"), {"X-Tier": "premium"})
    assert pinned.backend.name == "ar" and pinned.fallbacks == ()


def test_decision_params_are_private_copies(tmp_path):
    policy = load_policy(write(tmp_path, ORDERED))
    decision = policy.decide({"model": "auto"}, cls("chat"), {})
    decision.params["temperature"] = 1.9
    assert policy.backends["ar"].params["temperature"] == 0.7
    assert isinstance(decision, Decision)


def test_fallback_order_and_conditions(tmp_path):
    policy = load_policy(write(tmp_path, ORDERED))
    first, second = policy.decide({"model": "auto"}, cls("code"), {}).fallbacks
    assert (first.backend, first.on) == ("ar", frozenset({"timeout", 429}))
    assert (second.backend, second.on) == ("big", frozenset({"error"}))  # default: any error


@pytest.mark.parametrize("on, status, timeout, connection, expected", [
    ({"timeout"}, None, True, False, True),
    ({"timeout"}, 504, False, False, False),
    ({"connection"}, None, False, True, True),
    ({"connection"}, None, True, False, False),
    ({"5xx"}, 503, False, False, True),
    ({"5xx"}, 429, False, False, False),
    ({"5xx"}, None, False, False, False),
    ({429}, 429, False, False, True),
    ({429, 503}, 500, False, False, False),
    ({"error"}, None, False, False, True),
    ({"error"}, 400, False, False, True),
])
def test_fallback_applies(on, status, timeout, connection, expected):
    spec = FallbackSpec(backend="b", on=frozenset(on))
    assert spec.applies(status=status, timeout=timeout, connection=connection) is expected


def test_on_accepts_quoted_and_bare_status_codes(tmp_path):
    text = ORDERED.replace("on: [timeout, 429]", "on: ['429', 503, '5xx']")
    first = load_policy(write(tmp_path, text)).route("code").fallbacks[0]
    assert first.on == frozenset({429, 503, "5xx"})


def test_shadowing_by_a_broader_earlier_route(tmp_path):
    path = write(tmp_path, MINIMAL.replace("routes:\n", """routes:
  - name: all-streams
    match: {stream: true}
    backend: ar
  - name: code-streams
    match: {stream: true, task: [code, edit]}
    backend: diff
"""))
    [problem] = problems_of(path)
    assert problem == (f"{path}:{line_of(path, 'name: code-streams')}: routes[1]: route 'code-streams' is "
                       f"unreachable: earlier route 'all-streams' (line {line_of(path, 'name: all-streams')}) "
                       f"matches every request it would; move it above 'all-streams' or narrow that route")


def test_anchors_and_merge_keys(tmp_path):
    path = write(tmp_path, """\
        version: 1
        backends:
          base: &remote {kind: ar, model: openai/a, timeout_s: 5}
          other: {<<: *remote, model: openai/b}
        routes:
          - {name: default, backend: other}
        """)
    other = load_policy(path).backends["other"]
    assert (other.model, other.timeout_s) == ("openai/b", 5.0)


# --- hot reload ----------------------------------------------------------------------------------

def _valid_variant(temperature: float) -> str:
    return MINIMAL.replace("temperature: 0.7", f"temperature: {temperature}")


def test_reload_keeps_old_policy_on_invalid_file_and_swaps_on_valid(tmp_path, caplog):
    path = write(tmp_path, MINIMAL)
    holder = PolicyHolder(path)
    original = holder.policy
    in_flight = original  # what a request that started before the reload holds on to
    path.write_text(MINIMAL.replace("backend: ar", "backend: arr"))
    with caplog.at_level(logging.ERROR, logger="router.policy_watch"):
        assert holder.reload() is False
    assert holder.policy is original
    assert "unknown backend 'arr'" in caplog.text and f"{path}:" in caplog.text
    assert "unknown backend 'arr'" in holder.last_error
    path.write_text(_valid_variant(0.3))
    assert holder.reload() is True
    assert holder.policy is not original and holder.last_error is None
    assert holder.policy.backends["ar"].params["temperature"] == 0.3
    assert in_flight.backends["ar"].params["temperature"] == 0.7  # old object untouched


def test_holder_refuses_to_start_on_invalid_file(tmp_path):
    path = write(tmp_path, "version: 1\n")
    with pytest.raises(PolicyError):
        PolicyHolder(path)


def _wait_for(predicate, timeout_s: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout_s}s")


def test_polling_picks_up_edits_without_sighup(tmp_path):
    path = write(tmp_path, MINIMAL)
    swapped: list[Policy] = []
    holder = PolicyHolder(path, on_swap=swapped.append)  # default ~1 s poll interval
    holder.start()
    try:
        path.write_text(_valid_variant(0.25))
        waited = _wait_for(lambda: holder.policy.backends["ar"].params["temperature"] == 0.25, 4.0)
        assert waited < 3.0 and swapped == [holder.policy]
        # a broken edit is not applied; fixing it is
        path.write_text("version: 1\nroutes: []\n")
        _wait_for(lambda: holder.last_error is not None, 4.0)
        assert holder.policy.backends["ar"].params["temperature"] == 0.25
        path.write_text(_valid_variant(0.5) + "\n# fixed\n")
        _wait_for(lambda: holder.policy.backends["ar"].params["temperature"] == 0.5, 4.0)
    finally:
        holder.stop()
    assert holder._thread is None


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_sighup_forces_reload(tmp_path):
    assert threading.current_thread() is threading.main_thread()
    path = write(tmp_path, MINIMAL)
    previous = signal.getsignal(signal.SIGHUP)
    holder = PolicyHolder(path, poll_interval_s=30)  # polling alone would not notice in time
    holder.start()
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        _wait_for(lambda: holder.reloads == 1, 3.0)
    finally:
        holder.stop()
    assert signal.getsignal(signal.SIGHUP) == previous


def test_start_off_main_thread_skips_signal_handler(tmp_path):
    path = write(tmp_path, MINIMAL)
    holder = PolicyHolder(path, poll_interval_s=0.05)
    before = signal.getsignal(signal.SIGHUP)
    worker = threading.Thread(target=holder.start)
    worker.start()
    worker.join()
    try:
        assert signal.getsignal(signal.SIGHUP) == before
        path.write_text(_valid_variant(0.1))
        _wait_for(lambda: holder.policy.backends["ar"].params["temperature"] == 0.1, 3.0)
    finally:
        holder.stop()


def test_backend_spec_defaults():
    spec = BackendSpec(name="x", kind="ar", model="embedded/smollm2")
    assert spec.embedded and spec.timeout_s == 60.0 and spec.max_retries == 0


def test_engine_keys_match_the_diffusion_engine():
    """The policy validator duplicates the engine's decoding knobs (to avoid importing torch
    when loading a policy); this keeps them in sync."""
    import dataclasses
    import typing

    engine = pytest.importorskip("diffusion_engine.engine")
    fields = {f.name for f in dataclasses.fields(engine.GenerationParams)}
    request_level = {"max_tokens", "temperature", "top_p", "seed"}  # per request, not engine config
    assert set(policy_schema.ENGINE_KEYS) == fields - request_level
    assert set(policy_schema.ENGINE_RULES) == set(typing.get_args(engine.Rule))


# --- shadowing logic is sound: if A covers B, every request B matches, A matches ------------

from router.policy_schema import RouteMatch  # noqa: E402

#: per condition, the values worth comparing (None / () = no condition); bounds sit next to
#: each other and the request sizes below straddle them, so off-by-one mistakes show
_CONDITION_VALUES = {
    "task": [None, frozenset({"code"}), frozenset({"chat"}), frozenset({"code", "chat"}), frozenset(TASKS)],
    "stream": [None, True, False],
    "model": [None, frozenset({"auto"}), frozenset({"x"}), frozenset({"auto", "x"})],
    "headers": [(), (("x-tier", frozenset({"a"})),), (("x-tier", frozenset({"b"})),),
                (("x-tier", frozenset({"a", "b"})),)],
    "metadata": [(), (("tenant", frozenset({"a"})),), (("tenant", frozenset({"b"})),),
                 (("tenant", frozenset({"a", "b"})),)],
    "prompt_chars_min": [None, 2, 3],
    "prompt_chars_max": [None, 2, 3],
}


def _request_space():
    """Every combination of request features the values above can tell apart (1,920)."""
    space = []
    for task in ("code", "chat", "edit"):
        for stream in (False, True):
            for model in ("auto", "x", "y"):
                for tier in (None, "a", "b", "c"):
                    for tenant in (None, "a", "c"):
                        for size in (1, 2, 3, 4):  # each side of each bound
                            request = {"model": model, "messages": [{"role": "user", "content": "z" * size}]}
                            if tenant is not None:
                                request["metadata"] = {"tenant": tenant}
                            headers = {"X-Tier": tier} if tier is not None else {}
                            space.append((RequestPlan.of(request), Classification(task=task, stream=stream), headers))
    return space


@pytest.mark.parametrize("condition", list(_CONDITION_VALUES))
def test_covers_is_sound_for_each_condition(condition):
    """`covers` is a conjunction over independent conditions, so checking each one
    exhaustively (every pair of values, every request) checks the whole relation."""
    space = _request_space()
    covered_pairs = 0
    for mine in _CONDITION_VALUES[condition]:
        for theirs in _CONDITION_VALUES[condition]:
            earlier, later = RouteMatch(**{condition: mine}), RouteMatch(**{condition: theirs})
            matched_by = {i for i, (req, c, h) in enumerate(space) if earlier.evaluate(req, c, h) is not None}
            matched_later = {i for i, (req, c, h) in enumerate(space) if later.evaluate(req, c, h) is not None}
            if earlier.covers(later):
                covered_pairs += 1
                assert matched_later <= matched_by, (condition, mine, theirs)
            elif mine == theirs:
                pytest.fail(f"a route must cover itself: {condition}={mine!r}")
    assert covered_pairs > len(_CONDITION_VALUES[condition])  # not only the trivial self-pairs


def test_covers_combines_conditions():
    streams = RouteMatch(stream=True)
    assert streams.covers(RouteMatch(stream=True, task=frozenset({"code"})))
    assert not RouteMatch(stream=True, task=frozenset({"code"})).covers(streams)
    assert RouteMatch().covers(RouteMatch(headers=(("x", frozenset({"1"})),)))
    assert RouteMatch(task=frozenset(TASKS)).covers(RouteMatch())  # every task = no task condition
