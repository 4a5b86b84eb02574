"""The gateway end to end over loopback, driven by the official openai SDK, litellm and raw HTTP.

Every upstream here is the fake OpenAI-compatible server; nothing in Tandem is mocked.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest

EXPECTED_TEXT = "Hello from the fake upstream. All good."


def client(gateway, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base + "/v1", api_key="x", max_retries=0, **kwargs)


def ask(model: str, **kwargs):
    return dict(model=model, messages=[{"role": "user", "content": "Say hello."}], **kwargs)


def test_sync_completion_names_backend_and_route(gateway):
    raw = client(gateway).chat.completions.with_raw_response.create(**ask("direct"))
    completion = raw.parse()
    assert completion.choices[0].message.content == EXPECTED_TEXT
    assert completion.model == "up-ok"
    assert raw.headers["x-tandem-backend"] == "up-ok"
    assert raw.headers["x-tandem-route"] == "alias:direct"
    assert raw.headers["x-tandem-fallbacks"] == "none"
    assert raw.headers["x-tandem-task"] == "chat"


def test_async_stream_with_usage(gateway):
    async def run():
        async_client = openai.AsyncOpenAI(base_url=gateway.base + "/v1", api_key="x", max_retries=0)
        stream = await async_client.chat.completions.create(
            **ask("direct"), stream=True, stream_options={"include_usage": True}
        )
        parts, usage, finish = [], None, None
        async for chunk in stream:
            assert chunk.model == "up-ok"
            if chunk.usage:
                usage = chunk.usage
            for choice in chunk.choices:
                parts.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
        return "".join(parts), usage, finish

    text, usage, finish = asyncio.run(run())
    assert text.startswith("Hello from the fake upstream.")
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens == 8


def test_fallback_on_5xx(gateway):
    raw = client(gateway).chat.completions.with_raw_response.create(**ask("flaky"))
    assert raw.parse().choices[0].message.content == EXPECTED_TEXT
    assert raw.headers["x-tandem-backend"] == "up-ok"
    assert raw.headers["x-tandem-fallbacks"] == "up-500:500"


def test_fallback_on_timeout_plain_and_stream(gateway):
    raw = client(gateway).chat.completions.with_raw_response.create(**ask("slow"))
    assert raw.headers["x-tandem-fallbacks"] == "up-slow:timeout"
    assert raw.parse().model == "up-ok"
    with client(gateway).chat.completions.with_streaming_response.create(**ask("slow"), stream=True) as response:
        assert response.headers["x-tandem-fallbacks"] == "up-slow:timeout"
        chunks = list(response.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("Hello")
    # the last chunk repeats the fallback for clients that cannot read headers
    assert chunks[-1].model_extra["tandem"] == {"fallbacks": ["up-slow:timeout"], "served_by": "up-ok"}


def test_client_error_is_not_retried_elsewhere(gateway):
    with pytest.raises(openai.BadRequestError) as info:
        client(gateway).chat.completions.create(**ask("bad"))
    # Tandem's own words with the request id; the upstream's text stays out by default
    assert "up-400: upstream returned 400 (request id req_" in str(info.value)
    assert "fake 400" not in str(info.value)


def test_upstream_cut_mid_stream_ends_cleanly(gateway):
    # The SDK raises the error event; raw HTTP shows error event then [DONE], no hang.
    with pytest.raises(openai.APIError):
        for _ in client(gateway, timeout=20).chat.completions.create(**ask("cut"), stream=True):
            pass
    with httpx.stream("POST", gateway.base + "/v1/chat/completions", json=ask("cut", stream=True), timeout=20) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data:")]
    assert lines[-1] == "data: [DONE]"
    error = json.loads(lines[-2][5:])
    assert error["error"]["code"] == "stream_interrupted"
    assert sum('"content"' in line for line in lines[:-2]) >= 2


def test_stream_chunks_pass_through_as_they_arrive(gateway):
    # The upstream sends 8 chunks 0.25 s apart: unbuffered, they reach the client spread out too.
    import time

    arrivals = []
    start = time.perf_counter()
    for chunk in client(gateway).chat.completions.create(**ask("drip"), stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.perf_counter() - start)
    assert len(arrivals) == 8
    assert arrivals[-1] - arrivals[0] >= 1.2  # 7 gaps of 0.25 s; a buffering proxy would deliver them at once


def test_litellm_backend_path_and_fallback(gateway):
    raw = client(gateway).chat.completions.with_raw_response.create(**ask("via-litellm"))
    assert raw.parse().choices[0].message.content == EXPECTED_TEXT
    raw = client(gateway).chat.completions.with_raw_response.create(**ask("litellm-flaky"))
    assert raw.headers["x-tandem-backend"] == "llm-ok"
    assert raw.headers["x-tandem-fallbacks"] == "llm-500:500"


def test_litellm_as_client(gateway):
    import litellm

    response = litellm.completion(model="openai/direct", api_base=gateway.base + "/v1", api_key="x",
                                  messages=ask("x")["messages"])
    assert response.choices[0].message.content == EXPECTED_TEXT
    stream = litellm.completion(model="openai/direct", api_base=gateway.base + "/v1", api_key="x",
                                messages=ask("x")["messages"], stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream).startswith("Hello")


def test_header_match_routes(gateway):
    raw = client(gateway).chat.completions.with_raw_response.create(**ask("auto"), extra_headers={"x-tenant": "gold"})
    assert raw.headers["x-tandem-route"] == "gold-tenant"
    assert raw.headers["x-tandem-backend"] == "llm-ok"


def test_route_explain_endpoint(gateway):
    body = {
        "model": "auto",
        "messages": [{"role": "user", "content": "What's the weather in Oslo?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        "tool_choice": "required",
    }
    decision = httpx.post(gateway.base + "/v1/route/explain", json=body).json()
    assert {"task", "stream", "route", "backend", "fallbacks", "reasons", "tool_use", "confidence"} <= set(decision)
    assert decision["task"] == "tool_call" and decision["route"] == "structured"
    assert decision["reasons"]
    assert decision["tool_use"] == {"mode": "call", "tools": ["get_weather"], "reason": "tool_choice=required"}


def test_route_explain_says_why_auto_answers(gateway):
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Get the weather for a city",
                                               "parameters": {"type": "object"}}}]
    asks = httpx.post(gateway.base + "/v1/route/explain", json={
        "model": "auto", "tools": tools, "messages": [{"role": "user", "content": "What's the weather in Oslo?"}]}).json()
    assert asks["task"] == "tool_call" and asks["tool_use"]["mode"] == "call"
    small_talk = httpx.post(gateway.base + "/v1/route/explain", json={
        "model": "auto", "tools": tools, "messages": [{"role": "user", "content": "Hi! What is 2+2?"}]}).json()
    assert small_talk["task"] != "tool_call" and small_talk["tool_use"]["mode"] == "answer"
    answered = httpx.post(gateway.base + "/v1/route/explain", json={"model": "auto", "tools": tools, "messages": [
        {"role": "user", "content": "What's the weather in Oslo?"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                              "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "4 C, rain"}]}).json()
    assert answered["tool_use"]["mode"] == "answer" and "tool results" in answered["tool_use"]["reason"]


def test_models_health_metrics(gateway):
    models = client(gateway).models.list()
    assert {"auto", "direct", "flaky"} <= {m.id for m in models.data}
    health = httpx.get(gateway.base + "/healthz").json()
    assert health["status"] == "ok"
    client(gateway).chat.completions.create(**ask("direct"))
    text = httpx.get(gateway.base + "/metrics").text
    assert 'tandem_requests_total{backend="up-ok"' in text
    # streamed usage counts too (test_async_stream_with_usage streamed 8 completion tokens)
    assert 'tandem_tokens_total{backend="up-ok",kind="completion",task="chat"}' in text
    assert "tandem_classify_seconds" in text


BAD_BODIES = [
    (b"{not json", 400, "invalid_json", None),
    (json.dumps({"model": "direct", "messages": "hi"}).encode(), 400, "invalid_request", "messages"),
    (json.dumps({"model": "direct", "messages": []}).encode(), 400, "invalid_request", "messages"),
    (json.dumps({"model": "direct", "messages": [{"role": "wizard", "content": "x"}]}).encode(), 400, "invalid_request", "messages[0].role"),
    (json.dumps({**ask("direct"), "max_tokens": 10**9}).encode(), 400, "invalid_request", "max_tokens"),
    (json.dumps({**ask("direct"), "n": 3}).encode(), 400, "invalid_request", "n"),
    (json.dumps({**ask("direct"), "temperature": "hot"}).encode(), 400, "invalid_request", "temperature"),
    (json.dumps(ask("no-such-model")).encode(), 404, "model_not_found", "model"),
    (json.dumps({**ask("direct"), "pad": "x" * 70000}).encode(), 413, "request_too_large", None),
]


@pytest.mark.parametrize("body,status,code,param", BAD_BODIES)
def test_bad_input_gets_openai_error_and_server_keeps_serving(gateway, body, status, code, param):
    response = httpx.post(gateway.base + "/v1/chat/completions", content=body,
                          headers={"content-type": "application/json"})
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code and error["param"] == param
    assert error["message"]
    assert client(gateway).chat.completions.create(**ask("direct")).choices[0].message.content == EXPECTED_TEXT


def test_logs_hold_no_prompt_text(gateway):
    secret = "zebra-quartz-7731"
    client(gateway).chat.completions.create(model="direct", messages=[{"role": "user", "content": secret}])
    client(gateway).chat.completions.create(model="flaky", messages=[{"role": "user", "content": secret}])
    assert secret not in gateway.log_text()


TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


@pytest.mark.parametrize("extra,names", [
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": 3}}}]},
     "tools[0].function.parameters"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]},
     "tools[0].function.parameters"),
    ({"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "'nope'"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "call_x", "content": "1"}]},
     "messages[1]"),
])
def test_bad_tool_requests_are_400s_naming_the_field(gateway, extra, names):
    body = {"model": "direct", "messages": [{"role": "user", "content": "hi"}], **extra}
    response = httpx.post(gateway.base + "/v1/chat/completions", json=body, timeout=10)
    assert response.status_code == 400, response.text
    assert names in response.json()["error"]["message"]
