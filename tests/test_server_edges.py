"""The HTTP edge: slow and oversized clients, the drain deadline, per-key limits.

A real gateway on ``tests/fixtures/edge_policy.yaml`` (read_timeout_s 1, max_headers 50,
drain_timeout_s 1, per-key limits in memory) in front of the fake upstream; clients are raw
sockets where the point is a misbehaving client, httpx and the openai SDK otherwise.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time

import httpx
import openai
import pytest

from tests.conftest import FIXTURES, start_gateway

EDGE_POLICY = FIXTURES / "edge_policy.yaml"


@pytest.fixture(scope="module")
def edge(fake_upstream):
    server = start_gateway(EDGE_POLICY, {"UPSTREAM_BASE": fake_upstream.base + "/v1"})
    yield server
    server.stop()


def ask(model: str = "ok", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "Say hello."}], **extra}


def post(server, key: str = "k-free", body: dict | None = None, **kwargs) -> httpx.Response:
    return httpx.post(server.base + "/v1/chat/completions", json=body or ask(),
                      headers={"authorization": f"Bearer {key}", **kwargs.pop("headers", {})}, timeout=30, **kwargs)


def raw_exchange(server, data: bytes, wait: float = 4.0) -> tuple[bytes, float]:
    """Send ``data`` (maybe an incomplete request), then read until the server closes."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait) as sock:
        if data:
            sock.sendall(data)
        received = read_until_closed(sock)
    return received, time.monotonic() - start


def read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return received


@pytest.mark.parametrize("data", [
    b"",  # connects, sends nothing
    b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer k-free\r\n",  # headers never end
    b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 500\r\n"
    b"authorization: Bearer k-free\r\ncontent-type: application/json\r\n\r\n{\"model\": \"ok\"",  # body never ends
])
def test_slow_clients_are_cut_off_at_the_read_timeout(edge, data):
    received, seconds = raw_exchange(edge, data)
    assert seconds < 3.5, f"connection held {seconds:.1f} s"
    if received:
        assert received.startswith(b"HTTP/1.1 408") and b"request_timeout" in received


def test_many_stalled_connections_do_not_starve_real_requests(edge):
    stalled = [socket.create_connection(("127.0.0.1", edge.port)) for _ in range(30)]
    try:
        for sock in stalled:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
        time.sleep(1.6)  # past read_timeout_s: they are closed
        assert post(edge).status_code == 200
        closed = 0
        for sock in stalled:
            sock.settimeout(1)
            try:
                closed += sock.recv(1024).startswith(b"HTTP/1.1 408")
            except OSError:
                closed += 1
        assert closed == len(stalled)
    finally:
        for sock in stalled:
            sock.close()


def test_huge_header_is_refused(edge):
    received, _ = raw_exchange(edge, b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 1_000_000 + b"\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 400")


@pytest.mark.parametrize("count,status", [(60, 431), (5000, 400)])
def test_too_many_headers_are_refused(edge, count, status):
    headers = b"".join(b"x-h%d: v\r\n" % i for i in range(count))
    received, _ = raw_exchange(edge, b"GET /v1/models HTTP/1.1\r\nhost: x\r\nauthorization: Bearer k-free\r\n"
                               + headers + b"\r\n")
    assert received.startswith(b"HTTP/1.1 %d" % status)


def test_rate_limit_per_key_with_openai_headers(edge):
    answers = [post(edge, "k-metered") for _ in range(3)]
    assert all(a.status_code == 200 for a in answers)
    remaining = [int(a.headers["x-ratelimit-remaining-requests"]) for a in answers]
    assert remaining == sorted(remaining, reverse=True) and remaining[-1] == 0
    assert answers[0].headers["x-ratelimit-limit-requests"] == "3"
    refused = post(edge, "k-metered")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_requests"
    assert float(refused.headers["retry-after"]) > 0
    assert post(edge, "k-free").status_code == 200  # another key is not affected
    client = openai.OpenAI(base_url=edge.base + "/v1", api_key="k-metered", max_retries=0)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(**ask())


def test_concurrency_limit_per_key(edge):
    results: dict[str, int] = {}

    def long_stream():
        with httpx.stream("POST", edge.base + "/v1/chat/completions", json=ask("long", stream=True),
                          headers={"authorization": "Bearer k-single"}, timeout=60) as response:
            results["first"] = response.status_code
            for _ in response.iter_lines():
                if "second" in results:
                    break

    thread = threading.Thread(target=long_stream)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while "first" not in results and time.monotonic() < deadline:
            time.sleep(0.05)
        second = post(edge, "k-single")
        results["second"] = second.status_code
        assert results["first"] == 200 and second.status_code == 429
        assert second.json()["error"]["code"] == "rate_limit_concurrent"
    finally:
        results.setdefault("second", 0)
        thread.join(30)
    # the stream's slot came back when it ended
    deadline = time.monotonic() + 5
    while post(edge, "k-single").status_code != 200:
        assert time.monotonic() < deadline, "the per-key slot was not released"
        time.sleep(0.1)


def test_drain_deadline_ends_long_streams_with_error_and_done(fake_upstream):
    server = start_gateway(EDGE_POLICY, {"UPSTREAM_BASE": fake_upstream.base + "/v1"})
    lines: list[str] = []
    try:
        with httpx.stream("POST", server.base + "/v1/chat/completions", json=ask("long", stream=True),
                          headers={"authorization": "Bearer k-free"}, timeout=30) as response:
            assert response.status_code == 200
            start = None
            for line in response.iter_lines():
                if line:
                    lines.append(line)
                if start is None and len(lines) >= 2:
                    start = time.monotonic()
                    server.proc.send_signal(signal.SIGTERM)
        assert time.monotonic() - start < 6
    finally:
        server.stop()
    assert lines[-1] == "data: [DONE]"
    error = json.loads(lines[-2][6:])["error"]
    assert error["code"] == "server_shutting_down"
    assert server.proc.wait(10) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once drained


def test_connections_beyond_the_cap_get_a_503_envelope(edge):
    held = [socket.create_connection(("127.0.0.1", edge.port)) for _ in range(40)]  # the policy's cap
    try:
        time.sleep(0.2)
        received, _ = raw_exchange(edge, b"GET /v1/models HTTP/1.1\r\nhost: x\r\nauthorization: Bearer k-free\r\n\r\n")
        assert received.startswith(b"HTTP/1.1 503") and b"too_many_connections" in received
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    assert httpx.get(edge.base + "/v1/models", headers={"authorization": "Bearer k-free"}).status_code == 200


def test_history_beyond_the_cap_is_a_400_or_truncated_as_asked(edge):
    client = openai.OpenAI(base_url=edge.base + "/v1", api_key="k-free", max_retries=0)
    previous = None
    for letter in "xy":  # two turns of ~900 bytes each: more than max_history_bytes (1200)
        previous = client.responses.create(model="ok", input=letter * 500, previous_response_id=previous).id
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="transcript", input="and now?", previous_response_id=previous)
    assert caught.value.code == "context_length_exceeded" and caught.value.param == "previous_response_id"
    cut = client.responses.create(model="transcript", input="and now?", previous_response_id=previous,
                                  truncation="auto")
    carried = cut.output_text
    assert "x" * 500 not in carried and "y" * 500 in carried and carried.endswith("user: and now?")


def test_without_api_keys_made_up_tokens_share_one_budget(fake_upstream):
    server = start_gateway(FIXTURES / "unkeyed_limits_policy.yaml", {"UPSTREAM_BASE": fake_upstream.base + "/v1"})
    try:
        statuses = [post(server, f"made-up-{i}").status_code for i in range(3)]
    finally:
        server.stop()
    assert statuses == [200, 200, 429]  # a fresh token is not a fresh window


def test_slow_second_request_on_a_kept_alive_connection_gets_a_408(edge):
    with socket.create_connection(("127.0.0.1", edge.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        first = b""
        while b"\r\n\r\n" not in first:
            first += sock.recv(65536)
        head, body = first.split(b"\r\n\r\n", 1)
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        while len(body) < length:  # the whole first response, however the bytes arrive
            body += sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")  # the next request stalls mid-head
        received = read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 408")


def test_responses_are_admitted_before_the_store_is_read(edge):
    for _ in range(5):  # spend k-metered's 3 requests a minute, whatever ran before
        if post(edge, "k-metered").status_code == 429:
            break
    response = httpx.post(edge.base + "/v1/responses", headers={"authorization": "Bearer k-metered"}, timeout=30,
                          json={"model": "ok", "input": "hi", "previous_response_id": "resp_never_stored"})
    assert response.status_code == 429  # not the 404 a chain read would give: over the limit, no store work
    assert response.json()["error"]["code"] == "rate_limit_requests"
