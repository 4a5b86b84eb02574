"""Bad input, field by field: wrong types, out-of-range values, deep nesting, huge and lying
bodies, invalid UTF-8 and odd auth headers all get a 4xx in OpenAI's envelope, never a 5xx,
and leave no slot behind. One gateway (tests/fixtures/fault_policy.yaml, key sk-test)."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from tests.conftest import FIXTURES, start_gateway

KEY = "sk-test"
CHAT = {"model": "ok", "messages": [{"role": "user", "content": "hi"}]}
RESPONSES = {"model": "ok", "input": "hi"}
COMPLETIONS = {"model": "ok", "prompt": "hi"}


@pytest.fixture(scope="module")
def strict(fake_upstream):
    server = start_gateway(FIXTURES / "fault_policy.yaml",
                           {"UPSTREAM_BASE": fake_upstream.base + "/v1", "TANDEM_TEST_KEY": KEY})
    yield server
    server.stop()


def send(server, path: str, content: bytes, headers: dict | None = None) -> httpx.Response:
    return httpx.post(server.base + path, content=content, timeout=30,
                      headers={"authorization": f"Bearer {KEY}", "content-type": "application/json",
                               **(headers or {})})


def assert_4xx_envelope(response: httpx.Response) -> dict:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


def deep(levels: int) -> object:
    value: object = "x"
    for _ in range(levels):
        value = [value]
    return value


#: (field, bad value) for chat completions; each alone makes the request invalid
CHAT_FIELDS = [
    ("model", 5), ("model", None), ("model", ["ok"]),
    ("messages", "hi"), ("messages", []), ("messages", [{}]), ("messages", [{"role": "wizard", "content": "x"}]),
    ("messages", [{"role": "user", "content": 5}]), ("messages", [{"role": "user"}]),
    ("messages", [{"role": "tool", "content": "x"}]),
    ("messages", [{"role": "assistant", "tool_calls": [{"id": 1, "function": {}}]}]),
    ("stream", "false"), ("stream", 1), ("stream_options", "yes"), ("stream_options", {"include_usage": "yes"}),
    ("max_tokens", True), ("max_tokens", "8"), ("max_tokens", -1), ("max_tokens", 0), ("max_tokens", 1.5),
    ("max_tokens", 10**12), ("max_completion_tokens", 10**9),
    ("temperature", "hot"), ("temperature", 3), ("temperature", True), ("top_p", 0), ("top_p", 2),
    ("stop", ["a", "b", "c", "d", "e"]), ("stop", 5), ("seed", "x"), ("n", 2), ("n", "1"),
    ("response_format", "json"), ("response_format", {"type": "xml"}), ("response_format", {"type": "json_schema"}),
    ("response_format", {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}),
    ("tools", "all"), ("tools", [{"type": "retrieval"}]),
    ("tools", [{"type": "function", "function": {"name": "bad name!"}}]),
    ("tools", [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]),
    ("tool_choice", "sometimes"), ("tool_choice", {"type": "function", "function": {"name": "f"}}),
    ("prediction", {"type": "diff", "content": "x"}), ("metadata", ["a"]), ("metadata", {"a": 1}),
    ("parallel_tool_calls", "yes"), ("logit_bias", "x"), ("top_logprobs", 50), ("user", 1),
    ("presence_penalty", 9), ("frequency_penalty", "x"),
    ("messages", [{"role": "user", "content": deep(100)}]), ("response_format", deep(200)),
]


@pytest.mark.parametrize("field,value", CHAT_FIELDS, ids=[f"{f}={json.dumps(v)[:30]}" for f, v in CHAT_FIELDS])
def test_each_bad_chat_field_is_a_4xx(strict, field, value):
    error = assert_4xx_envelope(send(strict, "/v1/chat/completions", json.dumps({**CHAT, field: value}).encode()))
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize("path,body", [
    ("/v1/responses", {**RESPONSES, "input": 5}), ("/v1/responses", {**RESPONSES, "input": [{"type": "weird"}]}),
    ("/v1/responses", {**RESPONSES, "max_output_tokens": "9"}), ("/v1/responses", {**RESPONSES, "tools": [{}]}),
    ("/v1/responses", {**RESPONSES, "text": {"format": {"type": "yaml"}}}),
    ("/v1/responses", {**RESPONSES, "previous_response_id": 7}), ("/v1/responses", {**RESPONSES, "input": deep(100)}),
    ("/v1/completions", {**COMPLETIONS, "prompt": 5}), ("/v1/completions", {**COMPLETIONS, "suffix": 5}),
    ("/v1/completions", {**COMPLETIONS, "max_tokens": True}), ("/v1/completions", {**COMPLETIONS, "best_of": 3}),
    ("/v1/route/explain", {**CHAT, "messages": "x"}),
])
def test_bad_fields_on_the_other_endpoints_are_4xx(strict, path, body):
    assert_4xx_envelope(send(strict, path, json.dumps(body).encode()))


@pytest.mark.parametrize("content", [
    b"", b"{", b"[1, 2]", b"null", b'"text"', b"\xff\xfe{}", b'{"model": "ok", "messages": "\xc3\x28"}',
    b'{"model": "ok"} trailing', b"[" * 5000 + b"]" * 5000, b"x" * 70_000,
], ids=["empty", "truncated", "array", "null", "string", "bom-bytes", "invalid-utf8", "trailing", "deep", "huge"])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses", "/v1/completions"])
def test_broken_bodies_are_4xx(strict, path, content):
    assert_4xx_envelope(send(strict, path, content))


@pytest.mark.parametrize("authorization", [
    b"", b"Bearer", b"Basic c2stdGVzdDo=", b"bearer sk-tes", b"Bearer sk-test-but-longer",
    b"Bearer \xff\xfe", b"Bearer " + b"k" * 8000, b"Token sk-test",
])
def test_odd_auth_headers_are_401(strict, authorization):
    headers = [(b"content-type", b"application/json")] + ([(b"authorization", authorization)] if authorization else [])
    response = httpx.post(strict.base + "/v1/chat/completions", content=json.dumps(CHAT).encode(), headers=headers,
                          timeout=30)
    assert response.status_code == 401 and assert_4xx_envelope(response)["type"] == "authentication_error"


def raw_post(server, body: bytes, declared: int) -> bytes:
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\n"
            f"content-type: application/json\r\ncontent-length: {declared}\r\nconnection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=40) as sock:
        sock.sendall(head + body)
        sock.shutdown(socket.SHUT_WR)  # the client says no more: the declared length is a lie
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


@pytest.mark.parametrize("declared_delta", [-5, 40])
def test_lying_content_length_is_never_a_5xx(strict, declared_delta):
    body = json.dumps(CHAT).encode()
    received = raw_post(strict, body, len(body) + declared_delta)
    status = int(received.split(b" ", 2)[1]) if received else 0
    assert status == 0 or 400 <= status < 500, received[:200]


def test_no_slot_left_behind(strict):
    metrics = httpx.get(strict.base + "/metrics", timeout=5).text
    line = next(line for line in metrics.splitlines() if line.startswith("tandem_in_flight_requests"))
    assert float(line.split()[-1]) == 0
