"""OpenAI's surface beyond chat: model retrieval, errors from any path in OpenAI's envelope,
request bodies in the OpenAPI document. Real server (fake upstream), real openai SDK."""

from __future__ import annotations

import httpx
import openai
import pytest


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
