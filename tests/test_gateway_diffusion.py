"""openai SDK → gateway → diffusion engine, end to end over loopback, on a tiny random
DiffusionGemma checkpoint directory (outputs are noise; shapes and validity are not)."""

from __future__ import annotations

import json

import openai
import pytest
from pydantic import BaseModel, Field

from tests.conftest import start_gateway

POLICY = """
version: 1
backends:
  tiny-diffusion:
    kind: diffusion
    model: "diffusion_gemma:{path}"
    timeout_s: 120
    engine: {{block_size: 8, rule: threshold, threshold: 0.9}}
models:
  diffusion: {{backend: tiny-diffusion}}
routes:
  - name: all
    backend: tiny-diffusion
"""


class Person(BaseModel):
    name: str = Field(max_length=8)
    age: int = Field(ge=0, le=120)
    member: bool


@pytest.fixture(scope="module")
def diffusion_gateway(tmp_path_factory):
    from diffusion_engine.structured.tiny_tokenizer import tiny_tokenizer
    from diffusion_engine.testing import tiny_diffusion_gemma

    folder = tmp_path_factory.mktemp("tiny-diffusion-gemma")
    tiny_diffusion_gemma(0).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    policy = folder / "policy.yaml"
    policy.write_text(POLICY.format(path=folder))
    server = start_gateway(policy)
    yield server
    server.stop()


def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base + "/v1", api_key="x", max_retries=0, timeout=120)


def test_plain_and_streamed_answers(diffusion_gateway):
    messages = [{"role": "user", "content": "hello"}]
    completion = client(diffusion_gateway).chat.completions.create(model="diffusion", messages=messages,
                                                                   max_tokens=16, seed=3)
    assert completion.model == "tiny-diffusion"
    assert 0 < completion.usage.completion_tokens <= 16
    tandem = completion.usage.model_extra["tandem"]
    assert tandem["steps"] >= 1 and tandem["tokens_per_forward"] > 0

    stream = client(diffusion_gateway).chat.completions.create(
        model="diffusion", messages=messages, max_tokens=16, seed=3, stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == completion.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == completion.usage.completion_tokens


def test_sdk_parse_with_pydantic_model(diffusion_gateway):
    parsed = client(diffusion_gateway).chat.completions.parse(
        model="diffusion", messages=[{"role": "user", "content": "make a person"}], response_format=Person, seed=1)
    person = parsed.choices[0].message.parsed
    assert isinstance(person, Person) and 0 <= person.age <= 120


def test_sdk_tool_calling(diffusion_gateway):
    tools = [{"type": "function", "function": {"name": "set_alarm", "strict": True, "parameters": {
        "type": "object", "properties": {"hour": {"type": "integer", "minimum": 0, "maximum": 23}},
        "required": ["hour"], "additionalProperties": False}}}]
    completion = client(diffusion_gateway).chat.completions.create(
        model="diffusion", messages=[{"role": "user", "content": "wake me at 7"}], tools=tools, tool_choice="required")
    call = completion.choices[0].message.tool_calls[0]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "set_alarm"
    assert 0 <= json.loads(call.function.arguments)["hour"] <= 23


def test_unsupported_schema_is_a_400_naming_keyword_and_pointer(diffusion_gateway):
    schema = {"type": "object", "properties": {"tags": {"type": "object", "if": {"required": ["a"]},
                                                        "then": {"required": ["b"]}}}}
    with pytest.raises(openai.BadRequestError) as info:
        client(diffusion_gateway).chat.completions.create(
            model="diffusion", messages=[{"role": "user", "content": "x"}],
            response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": schema}})
    assert "'if'" in str(info.value) and "/properties/tags" in str(info.value)
