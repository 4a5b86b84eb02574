"""Operating the gateway: API keys, hot policy reload, and the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import FIXTURES, ROOT, start_gateway

TANDEM = [sys.executable, "-m", "gateway.cli"]


def chat(base: str, key: str = "x", model: str = "direct") -> httpx.Response:
    return httpx.post(base + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}]}, timeout=20)


@pytest.fixture(scope="module")
def guarded_gateway(fake_upstream, tmp_path_factory):
    """API keys on and at most one request in flight."""
    policy = tmp_path_factory.mktemp("guarded") / "policy.yaml"
    policy.write_text((FIXTURES / "upstream_policy.yaml").read_text().replace("max_concurrency: 64", "max_concurrency: 1"))
    server = start_gateway(policy, {"UPSTREAM_BASE": fake_upstream.base + "/v1", "TANDEM_TEST_KEY": "sk-right"})
    yield server
    server.stop()


def test_api_keys_when_configured(guarded_gateway):
    server = guarded_gateway
    missing = httpx.post(server.base + "/v1/chat/completions", json={"model": "direct", "messages": []})
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
    assert chat(server.base, "sk-wrong").status_code == 401
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.base + "/v1", api_key="sk-wrong", max_retries=0).models.list()
    assert chat(server.base, "sk-right").status_code == 200


def test_over_the_concurrency_limit_is_429_then_serves_again(guarded_gateway):
    server = guarded_gateway
    headers = {"authorization": "Bearer sk-right"}
    body = {"model": "drip", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", server.base + "/v1/chat/completions", json=body, headers=headers, timeout=20) as first:
        assert first.status_code == 200  # holds the only slot while the upstream drips
        second = chat(server.base, "sk-right")
        assert second.status_code == 429 and second.headers["retry-after"] == "1"
        assert second.json()["error"]["type"] == "rate_limit_error"
        assert [line for line in first.iter_lines() if line][-1] == "data: [DONE]"
    assert chat(server.base, "sk-right").status_code == 200


def test_reload_keeps_old_policy_on_invalid_file_and_swaps_on_valid(fake_upstream, tmp_path):
    policy = tmp_path / "policy.yaml"
    original = (FIXTURES / "upstream_policy.yaml").read_text()
    policy.write_text(original)
    server = start_gateway(policy, {"UPSTREAM_BASE": fake_upstream.base + "/v1"})
    try:
        policy.write_text(original.replace("fallbacks: [{backend: up-ok, on: [5xx]}]", "fallbcks: []"))
        time.sleep(2.5)
        health = httpx.get(server.base + "/healthz").json()
        assert "unknown key 'fallbcks'" in health["policy"]["last_error"]
        assert chat(server.base, model="flaky").headers["x-tandem-fallbacks"] == "up-500:500"  # old policy

        policy.write_text(original.replace("direct: {backend: up-ok}", "direct: {backend: up-ok}\n  renamed: {backend: up-ok}"))
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ids = {m["id"] for m in httpx.get(server.base + "/v1/models").json()["data"]}
            if "renamed" in ids:
                break
            time.sleep(0.3)
        assert "renamed" in ids
        assert chat(server.base, model="renamed").status_code == 200
    finally:
        server.stop()


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*TANDEM, *args], cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "UPSTREAM_BASE": "http://127.0.0.1:9/v1"})


def test_cli_policy_check(tmp_path):
    assert run_cli("policy", "check", "policies/default.yaml").returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nbackends:\n  a: {kind: ar, model: embedded/smollm2}\nroutes:\n  - name: r\n    backend: b\n")
    result = run_cli("policy", "check", str(bad))
    assert result.returncode != 0
    assert f"{bad}:6:" in result.stderr and "'b'" in result.stderr


def test_cli_route_explain_jsonl_in_order(tmp_path):
    rows = [
        {"request": {"model": "auto", "messages": [{"role": "user", "content": "hi"}],
                     "response_format": {"type": "json_object"}}},
        {"model": "auto", "stream": True, "messages": [{"role": "user", "content": "Tell me a story."}]},
        {"model": "ar", "messages": [{"role": "user", "content": "hi"}]},
    ]
    source = tmp_path / "requests.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in rows))
    result = run_cli("route", "explain", "--jsonl", str(source))
    assert result.returncode == 0, result.stderr
    decisions = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["task"] for d in decisions][:2] == ["structured", "chat"]
    assert decisions[0]["backend"] == "embedded-diffusion" and decisions[0]["fallbacks"] == ["embedded-ar"]
    assert decisions[1]["stream"] is True and decisions[1]["backend"] == "embedded-ar"
    assert decisions[2]["backend"] == "embedded-ar"

    single = run_cli("route", "explain", "-", stdin=json.dumps(rows[1]))
    assert json.loads(single.stdout)["route"] == decisions[1]["route"]
