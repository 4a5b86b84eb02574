"""Responses pass-through: a backend with ``api: responses`` gets /v1/responses requests
as the client sent them (hosted tools, reasoning), the chain from Tandem's store as input,
and its own output items back; the openai SDK against the real gateway, the fake upstream's
/v1/responses answering with JSON of what it received."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from router.policy import PolicyError, load_policy
from tests.test_responses_api import EXPECTED_TEXT, sdk, sse_events

WEB_SEARCH = {"type": "web_search"}


def received(response) -> dict:
    """What the fake upstream says it was sent (its answer's text is that JSON)."""
    return json.loads(response.output_text)


def test_hosted_tools_and_reasoning_pass_through_under_our_id(gateway):
    client = sdk(gateway)
    response = client.responses.create(model="responses-direct", input="Find the news.", tools=[WEB_SEARCH],
                                       reasoning={"effort": "low"}, include=["web_search_call.action.sources"])
    assert [item.type for item in response.output] == ["reasoning", "web_search_call", "message"]
    sent = received(response)["received"]
    assert sent["tools"] == [WEB_SEARCH] and sent["reasoning"] == {"effort": "low"}
    assert sent["include"] == ["web_search_call.action.sources"]
    # the chain and the store are Tandem's: the upstream stores nothing and knows no ids of ours
    assert sent["store"] is False and "previous_response_id" not in sent
    assert response.id != "resp_upstream" and response.id.startswith("resp_")
    assert response.usage.output_tokens_details.reasoning_tokens == 3  # the upstream's usage as it sent it
    assert client.responses.retrieve(response.id).output[1].type == "web_search_call"


def test_a_chain_goes_upstream_as_input_without_upstream_only_items(gateway):
    client = sdk(gateway)
    first = client.responses.create(model="responses-direct", input="Find the news.", tools=[WEB_SEARCH])
    second = client.responses.create(model="responses-direct", input="And the weather?", previous_response_id=first.id,
                                     tools=[WEB_SEARCH])
    items = received(second)["input"]
    # earlier user turn, earlier answer, this turn; our ids stripped, the upstream's
    # reasoning and web_search_call items (which only it could look up) left out
    assert [(kind, item_id) for kind, item_id, _ in items] == [("message", None)] * 3
    assert items[0][2] == "Find the news." and items[2][2] == "And the weather?"
    assert json.loads(items[1][2])["input"][0][2] == "Find the news."
    listed = client.responses.input_items.list(second.id, order="asc")
    assert [item.type for item in listed.data] == ["message"]


def test_a_streamed_pass_through_is_numbered_by_us_and_stored(gateway):
    with httpx.stream("POST", gateway.base + "/v1/responses", json={
            "model": "responses-direct", "input": "Find the news.", "stream": True, "tools": [WEB_SEARCH]}) as raw:
        assert raw.status_code == 200
        events = sse_events(raw)
    kinds = [event["type"] for event in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    ids = {event["response"]["id"] for event in events if "response" in event}
    assert len(ids) == 1 and ids != {"resp_upstream"}
    final = events[-1]["response"]
    stored = sdk(gateway).responses.retrieve(final["id"])
    assert [item.type for item in stored.output] == ["reasoning", "web_search_call", "message"]
    text = "".join(event["delta"] for event in events if event["type"] == "response.output_text.delta")
    assert json.loads(text)["received"]["stream"] is True


def test_a_failing_pass_through_falls_back_to_the_chat_translation(gateway):
    raw = httpx.post(gateway.base + "/v1/responses", json={"model": "responses-flaky", "input": "Say hello."})
    assert raw.status_code == 200, raw.text
    assert raw.headers["x-tandem-fallbacks"] == "up-responses-500:500"
    assert raw.json()["output"][0]["content"][0]["text"] == EXPECTED_TEXT


def test_an_upstream_stream_cut_mid_way_ends_with_error_and_failed(gateway):
    with httpx.stream("POST", gateway.base + "/v1/responses",
                      json={"model": "responses-cut", "input": "Say hello.", "stream": True}) as raw:
        events = sse_events(raw)
    assert [e["type"] for e in events] == ["response.created", "error", "response.failed"]
    assert events[1]["code"] == "stream_interrupted" and events[-1]["response"]["status"] == "failed"
    assert events[0]["response"]["id"] == events[-1]["response"]["id"] != "resp_upstream"
    with pytest.raises(openai.NotFoundError):  # a failed stream is not stored
        sdk(gateway).responses.retrieve(events[-1]["response"]["id"])


def test_an_upstream_answer_that_is_no_response_is_a_backend_error(gateway):
    raw = httpx.post(gateway.base + "/v1/responses", json={"model": "responses-bad", "input": "Say hello."})
    assert raw.status_code == 502 and raw.json()["error"]["code"] == "backend_error"


def test_hosted_tools_need_a_responses_backend(gateway):
    raw = httpx.post(gateway.base + "/v1/responses", json={"model": "direct", "input": "hi",
                                                           "tools": [WEB_SEARCH]})
    assert raw.status_code == 400
    error = raw.json()["error"]
    assert error["param"] == "tools[0]" and "api: responses" in error["message"]
    # and a chain of hosted tools on a flaky route skips the chat-only fallback
    raw = httpx.post(gateway.base + "/v1/responses", json={"model": "responses-flaky", "input": "hi",
                                                           "tools": [WEB_SEARCH]})
    assert raw.status_code == 502 and raw.json()["error"]["code"] == "backend_error"


def test_litellm_backends_pass_through_with_litellm_responses(gateway):
    # custom_openai has no native Responses API in litellm: its own bridge answers via chat
    client = sdk(gateway)
    first = client.responses.create(model="responses-litellm", input="Say hello.")
    assert first.output_text.startswith("Hello from the fake upstream")
    stream = client.responses.create(model="responses-litellm", input="Again.", previous_response_id=first.id,
                                     stream=True)
    kinds = [event.type for event in stream]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds


@pytest.mark.parametrize("backend,message", [
    ("{kind: ar, model: embedded/smollm2, api: responses}", "api: responses is for remote AR backends"),
    ("{kind: ar, model: openai/x, api_base: 'http://h/v1', api: soap}", "'soap'"),
])
def test_policy_api_setting_is_checked(tmp_path, backend, message):
    path = tmp_path / "policy.yaml"
    path.write_text(f"version: 1\nbackends:\n  b: {backend}\nroutes:\n  - {{name: r, backend: b}}\n")
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    assert message in str(raised.value)
