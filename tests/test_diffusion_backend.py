"""The diffusion backend over a tiny random DiffusionGemma: request mapping, streaming,
structured outputs and tool calls (validity must not depend on model quality)."""

from __future__ import annotations

import asyncio
import json

import jsonschema
import pytest

from gateway.backends.base import BackendError
from router.plan import RequestPlan
from tests.conftest import tiny_diffusion_backend

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 6},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "ok": {"type": "boolean"},
    },
    "required": ["name", "age", "ok"],
    "additionalProperties": False,
}
TOOLS = [
    {"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {"zone": {"enum": ["utc", "cet"]}}, "required": ["zone"],
        "additionalProperties": False}}},
    {"type": "function", "function": {"name": "add", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"],
        "additionalProperties": False}}},
]


@pytest.fixture(scope="module")
def backend():
    return tiny_diffusion_backend("tiny-diffusion")


def body(**extra) -> RequestPlan:
    return RequestPlan.of({"model": "diffusion", "messages": [{"role": "user", "content": "hello"}], "seed": 7, **extra})


def collect(backend, request):
    async def run():
        return [chunk async for chunk in backend.stream(request)]

    return asyncio.run(run())


def test_text_completion_reports_engine_stats(backend):
    result = asyncio.run(backend.complete(body(max_tokens=12)))
    assert result["object"] == "chat.completion" and result["model"] == "tiny-diffusion"
    usage = result["usage"]
    assert 0 < usage["completion_tokens"] <= 12
    assert usage["tandem"]["steps"] >= 1 and usage["tandem"]["tokens_per_forward"] > 0
    assert result["choices"][0]["finish_reason"] in ("stop", "length")


def test_stream_matches_plain_for_same_seed(backend):
    plain = asyncio.run(backend.complete(body(max_tokens=12)))["choices"][0]["message"]["content"]
    chunks = collect(backend, body(max_tokens=12, stream_options={"include_usage": True}))
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == plain
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_json_schema_output_is_valid(backend, seed):
    fmt = {"type": "json_schema", "json_schema": {"name": "p", "strict": True, "schema": SCHEMA}}
    result = asyncio.run(backend.complete(body(response_format=fmt, seed=seed)))
    jsonschema.validate(json.loads(result["choices"][0]["message"]["content"]), SCHEMA)


def test_tool_call_names_a_tool_with_valid_arguments(backend):
    result = asyncio.run(backend.complete(body(tools=TOOLS, tool_choice="required")))
    choice = result["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    tool = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}[call["function"]["name"]]
    jsonschema.validate(json.loads(call["function"]["arguments"]), tool)


def test_streamed_structured_document_arrives_whole(backend):
    fmt = {"type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA}}
    chunks = collect(backend, body(response_format=fmt, stream=True))
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    jsonschema.validate(json.loads(text), SCHEMA)


def test_unsupported_schema_keyword_is_a_client_error(backend):
    schema = {"type": "object", "not": {"required": ["x"]}}
    fmt = {"type": "json_schema", "json_schema": {"name": "p", "schema": schema}}
    with pytest.raises(BackendError) as info:
        asyncio.run(backend.complete(body(response_format=fmt)))
    assert info.value.status == 400 and info.value.client_error
    assert "'not'" in info.value.message


def test_prediction_is_edited_in_place(backend):
    draft = "the cat sat"
    result = asyncio.run(backend.complete(body(prediction={"type": "content", "content": draft}, max_tokens=64)))
    usage = result["usage"]
    # the canvas is the draft plus slack, not max_tokens: a short draft stays a short answer
    assert 0 < usage["completion_tokens"] <= len(draft) + 16
    assert usage["tandem"]["steps"] >= 1


def test_draft_events_only_when_asked(backend):
    plain = collect(backend, body(max_tokens=16))
    assert not any("tandem" in c for c in plain)
    with_drafts = collect(backend, body(max_tokens=16, tandem_drafts=True))
    drafts = [c["tandem"]["draft"] for c in with_drafts if "tandem" in c]
    assert drafts and all(c["choices"] == [] for c in with_drafts if "tandem" in c)
    assert {"block", "text"} <= set(drafts[0])
    text = lambda chunks: "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text(with_drafts) == text(plain)
