"""OpenAI's surface beyond chat: model retrieval, errors from any path in OpenAI's envelope,
request bodies in the OpenAPI document. Real server (fake upstream), real openai SDK."""

from __future__ import annotations

import httpx
import openai
import pytest

from bench.fake_upstream import STREAM_CHUNKS, WORDS


def sdk(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base + "/v1", api_key="x", max_retries=0)


def assert_envelope(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if code is not None:
        assert error["code"] == code
    return error


def test_models_retrieve_known_and_unknown(gateway):
    client = sdk(gateway)
    card = client.models.retrieve("auto")
    assert card.id == "auto" and card.object == "model"
    assert {m.id for m in client.models.list()} >= {"auto", "direct"}
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.code == "model_not_found" and "Available:" in caught.value.message


@pytest.mark.parametrize("method,path,status,code", [
    ("POST", "/v1/no/such/endpoint", 404, "unknown_url"),
    ("GET", "/nothing-here", 404, "unknown_url"),
    ("GET", "/v1/chat/completions", 405, "method_not_allowed"),
    ("DELETE", "/v1/models", 405, "method_not_allowed"),
])
def test_unknown_paths_and_methods_answer_in_the_envelope(gateway, method, path, status, code):
    response = httpx.request(method, gateway.base + path, json={})
    error = assert_envelope(response, status, code)
    assert path in error["message"]


def test_sdk_sees_the_envelope_of_an_unknown_path(gateway):
    client = openai.OpenAI(base_url=gateway.base + "/v2", api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
    assert "Invalid URL" in caught.value.message


def test_openapi_describes_request_bodies(gateway):
    document = httpx.get(gateway.base + "/openapi.json").json()
    schemas = document["components"]["schemas"]
    body = document["paths"]["/v1/chat/completions"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"]
    request = schemas[ref.rsplit("/", 1)[1]]
    assert {"model", "messages"} <= set(request["required"])
    assert "tools" in request["properties"] and "stream" in request["properties"]

    def refs(node):
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for target in refs(document):  # every reference resolves inside the document
        assert target.rsplit("/", 1)[1] in schemas, target


# --- legacy completions -------------------------------------------------------------------

def test_completion_continues_a_prompt(gateway):
    raw = sdk(gateway).completions.with_raw_response.create(model="auto", prompt="Once upon a time", max_tokens=8)
    completion = raw.parse()
    assert completion.object == "text_completion" and completion.id.startswith("cmpl-")
    assert completion.choices[0].text == "Hello from the fake upstream. All good."
    assert completion.choices[0].finish_reason == "stop" and completion.usage.total_tokens == 14
    assert raw.headers["x-tandem-task"] == "chat"


def test_completion_stream_is_text_completion_chunks(gateway):
    stream = sdk(gateway).completions.create(model="direct", prompt=["Once upon a time"], max_tokens=8, stream=True,
                                             stream_options={"include_usage": True})
    chunks = list(stream)
    assert all(chunk.object == "text_completion" for chunk in chunks)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "".join(WORDS[:STREAM_CHUNKS])
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == STREAM_CHUNKS


@pytest.mark.parametrize("extra", [{"suffix": "\nprint(add(1, 2))\n"}, {}])
def test_suffix_or_sentinels_route_as_code_infill(gateway, extra):
    prompt = "def add(a, b):\n    " if extra else "<PRE> def add(a, b):\n     <SUF>\nprint(add(1, 2))\n <MID>"
    client = sdk(gateway)
    explained = httpx.post(gateway.base + "/v1/completions", json={"model": "auto", "prompt": prompt, **extra})
    assert explained.headers["x-tandem-task"] == "code"
    with client.completions.with_streaming_response.create(model="auto", prompt=prompt, stream=True, **extra) as raw:
        assert raw.headers["x-tandem-task"] == "code"
        lines = [line for line in raw.iter_lines() if line]
    assert lines[-1] == "data: [DONE]" and len(lines) == 2  # infill is sent whole, in one chunk


@pytest.mark.parametrize("body,param", [
    ({"prompt": ["a", "b"]}, "prompt"),
    ({"prompt": "a", "echo": True}, "echo"),
    ({"prompt": "a", "max_tokens": "8"}, "max_tokens"),
    ({"prompt": "a", "stream": "false"}, "stream"),
    ({"prompt": "a", "n": 3}, "n"),
    ({}, "prompt"),
])
def test_completion_bad_input_is_a_400_naming_the_field(gateway, body, param):
    error = assert_envelope(httpx.post(gateway.base + "/v1/completions", json={"model": "auto", **body}), 400)
    assert error["param"] == param


@pytest.mark.integration
def test_infill_is_filled_by_the_diffusion_engine(embedded_gateway):
    raw = sdk(embedded_gateway).completions.with_raw_response.create(
        model="auto", prompt="def add(a, b):\n    return ", suffix="\n\nprint(add(1, 2))\n", max_tokens=12,
        temperature=0)
    completion = raw.parse()
    assert raw.headers["x-tandem-backend"] == "embedded-diffusion" and raw.headers["x-tandem-task"] == "code"
    assert completion.choices[0].text.strip() and completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage.completion_tokens > 0
