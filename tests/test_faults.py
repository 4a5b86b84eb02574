"""Fault suite: every way an upstream or a client can misbehave, against the real gateway.

Each upstream fault is a mode of the fake OpenAI-compatible server (bench/fake_upstream.py); the
gateway must answer with a backend error envelope (or fall back), never a 500 from its own code,
never a hang, never a leaked slot, and never the upstream's raw text or the client's prompt.
"""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from bench.fake_upstream import LEAKED_SECRET
from tests.conftest import FIXTURES, start_gateway

KEY = "sk-test"
PROMPT = "PROMPT-MARKER-do-not-log"


@pytest.fixture(scope="module")
def faulty(fake_upstream):
    server = start_gateway(
        FIXTURES / "fault_policy.yaml", {"UPSTREAM_BASE": fake_upstream.base + "/v1", "TANDEM_TEST_KEY": KEY}
    )
    yield server
    server.stop()


def post(server, body: dict | bytes, key: str | bytes = KEY, timeout: float = 30) -> httpx.Response:
    auth = key if isinstance(key, bytes) else key.encode()
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        server.base + "/v1/chat/completions",
        content=content,
        headers={"authorization": b"Bearer " + auth, "content-type": "application/json"},
        timeout=timeout,
    )


def ask(model: str, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": PROMPT}], **extra}


def in_flight(server) -> float:
    metrics = httpx.get(server.base + "/metrics", timeout=5).text
    line = next(line for line in metrics.splitlines() if line.startswith("tandem_in_flight_requests"))
    return float(line.split()[-1])


@pytest.mark.parametrize(
    "mode,status",
    [("fail500", 502), ("fail429", 429), ("fail401", 502), ("fail403", 502), ("reset", 502),
     ("malformed", 502), ("nonobject", 502), ("leak500", 502), ("html500", 502), ("trickle", 504)],
)
def test_pinned_fault_is_a_backend_error_without_upstream_text(faulty, mode, status):
    response = post(faulty, ask(mode))
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] != "invalid_request_error"
    assert LEAKED_SECRET not in response.text and "<html" not in response.text
    assert PROMPT not in response.text
    assert response.headers["x-request-id"] in error["message"]


@pytest.mark.parametrize("mode", ["fail500", "fail429", "fail401", "fail403", "reset", "malformed",
                                  "nonobject", "trickle", "html500", "litellm401"])
def test_fault_with_fallback_is_served_by_the_fallback(faulty, mode):
    response = post(faulty, ask(f"{mode}-fb"))
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"].startswith("Hello from the fake upstream")
    assert response.headers["x-tandem-backend"] == "up-ok"
    assert response.headers["x-tandem-fallbacks"] != "none"


def test_repeated_faults_leak_no_slot(faulty):
    # max_concurrency is 8: a leaked slot per failure would turn the last requests into 429s.
    for _ in range(12):
        assert post(faulty, ask("nonobject")).status_code == 502
    assert post(faulty, ask("ok")).status_code == 200
    assert in_flight(faulty) == 0


def test_every_tried_backend_is_named_when_all_fail(faulty):
    response = post(faulty, ask("both-fail"))
    assert response.status_code == 502
    message = response.json()["error"]["message"]
    assert "up-fail500" in message and "up-html500" in message
    assert "<html" not in response.text


def test_trickling_upstream_is_bounded_by_its_timeout(faulty):
    started = time.monotonic()
    response = post(faulty, ask("trickle"))
    assert response.status_code == 504
    assert time.monotonic() - started < 6  # timeout_s is 2; the full trickle takes minutes


@pytest.mark.parametrize("mode", ["cut", "badchunk"])
def test_broken_stream_ends_with_error_event_and_done(faulty, mode):
    with httpx.stream(
        "POST", faulty.base + "/v1/chat/completions", json=ask(mode, stream=True),
        headers={"authorization": f"Bearer {KEY}"}, timeout=30,
    ) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    errors = [json.loads(line[6:]) for line in lines[:-1] if '"error"' in line]
    assert errors and errors[-1]["error"]["type"] != "invalid_request_error"
    assert LEAKED_SECRET not in "".join(lines)


def test_stream_broken_before_first_chunk_falls_back(faulty):
    sdk = openai.OpenAI(base_url=faulty.base + "/v1", api_key=KEY, max_retries=0)
    chunks = list(sdk.chat.completions.create(**ask("malformed-fb"), stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Hello from the fake upstream")


@pytest.mark.parametrize("where", ["body", "response_format"])
def test_deep_nesting_is_a_400(faulty, where):
    deep: object = "x"
    for _ in range(200):
        deep = [deep]
    body = ask("ok", metadata={"deep": json.dumps(deep)})
    if where == "body":
        body = ask("ok")
        body["messages"][0]["content"] = [{"type": "text", "text": "hi", "extra": deep}]
    else:
        schema: dict = {"type": "string"}
        for _ in range(200):
            schema = {"type": "object", "properties": {"a": schema}}
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "deep", "schema": schema}}
    response = post(faulty, body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "too_deep"


def test_non_ascii_bearer_is_a_401(faulty):
    response = post(faulty, ask("ok"), key="sk-tëst".encode())
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    "extra,field",
    [({"max_completion_tokens": 10, "max_tokens": 999_999_999}, "max_tokens"),
     ({"stream": "false"}, "stream"),
     ({"max_tokens": True}, "max_tokens"),
     ({"temperature": "0.5"}, "temperature")],
)
def test_bad_fields_are_400s_naming_the_field(faulty, extra, field):
    response = post(faulty, ask("ok", **extra))
    assert response.status_code == 400, response.text
    assert field in response.json()["error"]["message"]


def test_only_known_fields_are_forwarded(faulty):
    response = post(faulty, ask("echo", min_tokens=5, seed=7, user="u1", tandem_internal=1))
    assert response.status_code == 200
    forwarded = json.loads(response.json()["choices"][0]["message"]["content"])
    assert forwarded["seed"] == 7 and forwarded["user"] == "u1"
    assert "min_tokens" not in forwarded and "tandem_internal" not in forwarded


def test_healthz_without_key_says_only_status(faulty):
    response = httpx.get(faulty.base + "/healthz", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_access_log_has_request_id_and_no_prompt(faulty):
    response = post(faulty, ask("ok"), timeout=30)
    request_id = response.headers["x-request-id"]
    assert request_id.startswith("req_")
    echoed = post(faulty, ask("ok")).headers["x-request-id"]
    assert echoed != request_id
    client_id = httpx.post(
        faulty.base + "/v1/chat/completions", json=ask("ok"),
        headers={"authorization": f"Bearer {KEY}", "x-request-id": "client-abc-123"}, timeout=30,
    ).headers["x-request-id"]
    assert client_id == "client-abc-123"
    time.sleep(0.2)
    log = faulty.log_path.read_text(errors="replace")
    line = next(line for line in log.splitlines() if request_id in line)
    assert "POST /v1/chat/completions" in line and "200" in line and "up-ok" in line
    assert PROMPT not in log and KEY not in log and LEAKED_SECRET not in log
