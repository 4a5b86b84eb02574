"""The Responses API: the openai SDK's responses client against the real gateway (fake
upstream), raw SSE for the event sequence, and the agent frameworks' Responses models
against the embedded models. Storage is a real SQLite file (and, in
``test_responses_store_shared``, a real redis-server)."""

from __future__ import annotations

import json
import shutil
import subprocess

import httpx
import openai
import pytest

from bench.fake_upstream import STREAM_CHUNKS, WORDS
from tests.agent_models import WEATHER_RESPONSES_TOOL as WEATHER

EXPECTED_TEXT = "Hello from the fake upstream. All good."


def sdk(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base + "/v1", api_key="x", max_retries=0)


def sse_events(response: httpx.Response) -> list[dict]:
    events, kind = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            payload = json.loads(line[6:])
            assert payload["type"] == kind  # the event line names the payload's type
            events.append(payload)
    return events


def test_create_retrieve_list_delete(gateway):
    client = sdk(gateway)
    created = client.responses.create(model="direct", input="Say hello.", metadata={"run": "1"})
    assert created.id.startswith("resp_") and created.status == "completed" and created.object == "response"
    assert created.output_text == EXPECTED_TEXT
    assert created.usage.input_tokens == 5 and created.usage.output_tokens == 9 and created.usage.total_tokens == 14
    assert created.metadata == {"run": "1"}
    again = client.responses.retrieve(created.id)
    assert again.output_text == EXPECTED_TEXT and again.id == created.id
    items = client.responses.input_items.list(created.id)
    assert [(i.type, i.role) for i in items.data] == [("message", "user")]
    assert items.data[0].content[0].text == "Say hello."
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.retrieve(created.id)
    assert caught.value.code == "response_not_found"


def test_previous_response_id_carries_the_conversation(gateway):
    client = sdk(gateway)
    first = client.responses.create(model="transcript", instructions="Be brief.", input="My name is Ada.")
    assert first.output_text.splitlines() == ["system: Be brief.", "user: My name is Ada."]
    second = client.responses.create(model="transcript", input="What is my name?", previous_response_id=first.id)
    lines = second.output_text.splitlines()
    # instructions are not carried over (OpenAI's rule); inputs and outputs are, in order
    assert lines[0] == "user: My name is Ada." and lines[1] == "assistant: system: Be brief."
    assert lines[-1] == "user: What is my name?"
    assert second.previous_response_id == first.id


def test_function_call_items_become_a_tool_turn(gateway):
    response = sdk(gateway).responses.create(model="transcript", tools=[WEATHER], input=[
        {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "Sunny, 21 C"},
    ])
    assert response.output_text.splitlines() == [
        "user: Weather in Paris?", 'assistant:  calls get_weather({"city": "Paris"})', "tool: Sunny, 21 C"]


def test_stream_event_sequence(gateway):
    with httpx.stream("POST", gateway.base + "/v1/responses",
                      json={"model": "direct", "input": "Say hello.", "stream": True}) as raw:
        assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/event-stream")
        events = sse_events(raw)
    kinds = [e["type"] for e in events]
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", *["response.output_text.delta"] * len(deltas),
                     "response.output_text.done", "response.content_part.done", "response.output_item.done",
                     "response.completed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert "".join(deltas) == "".join(WORDS[:STREAM_CHUNKS]) == events[-4]["text"]
    final = events[-1]["response"]
    assert final["status"] == "completed" and final["output"][0]["content"][0]["text"] == "".join(deltas)
    assert final["usage"]["output_tokens"] == STREAM_CHUNKS
    # the streamed response was stored like an unstreamed one
    assert sdk(gateway).responses.retrieve(final["id"]).output_text == "".join(deltas)


def test_sdk_stream_helper_gives_the_final_response(gateway):
    with sdk(gateway).responses.stream(model="direct", input="Say hello.") as stream:
        text = "".join(event.delta for event in stream if event.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert final.output_text == text and final.status == "completed"


def test_stream_cut_mid_way_ends_with_error_and_failed(gateway):
    with httpx.stream("POST", gateway.base + "/v1/responses",
                      json={"model": "cut", "input": "Say hello.", "stream": True}) as raw:
        events = sse_events(raw)
    assert [e["type"] for e in events][-2:] == ["error", "response.failed"]
    assert events[-1]["response"]["status"] == "failed" and events[-2]["code"] == "stream_interrupted"


@pytest.mark.parametrize("body,param", [
    ({"input": [{"type": "computer_call", "id": "x"}]}, "input"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "http://x"}]}]}, "input"),
    ({"input": [{"type": "function_call_output", "call_id": "nope", "output": "x"}]}, "input"),
    ({"input": "hi", "tools": [{"type": "web_search"}]}, "tools"),
    ({"input": "hi", "tool_choice": {"type": "function", "name": "missing"}, "tools": [WEATHER]}, None),
    ({"input": "hi", "stream": "true"}, "stream"),
    ({"input": "hi", "store": 1}, "store"),
    ({"input": "hi", "background": True}, "background"),
    ({"input": "hi", "max_output_tokens": 999_999}, "max_output_tokens"),
    ({"input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}}, "text"),
    ({"input": ""}, "input"),
    ({}, "input"),
])
def test_bad_input_is_a_400_naming_the_field(gateway, body, param):
    response = httpx.post(gateway.base + "/v1/responses", json={"model": "direct", **body})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    if param is not None:
        assert (error["param"] or "").split("[")[0].split(".")[0] == param


def test_unstored_and_unknown_previous_ids_are_404(gateway):
    client = sdk(gateway)
    unstored = client.responses.create(model="direct", input="Say hello.", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)
    for missing in (unstored.id, "resp_doesnotexist"):
        with pytest.raises(openai.NotFoundError) as caught:
            client.responses.create(model="direct", input="And?", previous_response_id=missing)
        assert caught.value.param == "previous_response_id"


def test_oversized_input_with_store_is_refused_before_anything_is_written(gateway):
    big = "x" * 70_000  # over the fixture's max_body_bytes: 413 before parsing
    response = httpx.post(gateway.base + "/v1/responses", json={"model": "direct", "input": big})
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"


def test_curl_sees_the_event_sequence(gateway):
    curl = shutil.which("curl")
    assert curl, "curl is needed for this test (apt install curl)"
    out = subprocess.run([curl, "-sN", gateway.base + "/v1/responses", "-H", "content-type: application/json",
                          "-d", json.dumps({"model": "direct", "input": "Say hello.", "stream": True})],
                         capture_output=True, text=True, timeout=30).stdout
    kinds = [line[7:] for line in out.splitlines() if line.startswith("event: ")]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") == STREAM_CHUNKS


@pytest.mark.parametrize("stream", [False, True])
def test_refusals_arrive_as_refusal_parts(gateway, stream):
    client = sdk(gateway)
    if stream:
        with client.responses.stream(model="refuse", input="Do something bad.") as events:
            kinds = [event.type for event in events]
            response = events.get_final_response()
        assert "response.refusal.delta" in kinds and "response.refusal.done" in kinds
    else:
        response = client.responses.create(model="refuse", input="Do something bad.")
    part = response.output[0].content[0]
    assert part.type == "refusal" and part.refusal == "I can't help with that."
