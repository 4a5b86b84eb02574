"""The real embedded models behind the default policy (marked integration: slower)."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

pytestmark = pytest.mark.integration


def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base + "/v1", api_key="x", max_retries=0, timeout=240)


def test_streams_an_answer_from_the_embedded_model(embedded_gateway):
    stream = client(embedded_gateway).chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "What is the capital of France?"}],
        stream=True, max_tokens=24, temperature=0, stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    assert chunks[-1].usage is not None and 0 < chunks[-1].usage.completion_tokens <= 24
    assert all(c.model == "embedded-ar" for c in chunks)


def test_max_tokens_and_stop_are_honoured(embedded_gateway):
    completion = client(embedded_gateway).chat.completions.create(
        model="ar", messages=[{"role": "user", "content": "Count from 1 to 20, separated by commas."}],
        max_tokens=8, temperature=0,
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 8
    stopped = client(embedded_gateway).chat.completions.create(
        model="ar", messages=[{"role": "user", "content": "Count from 1 to 20, separated by commas."}],
        max_tokens=40, temperature=0, stop=["5"],
    )
    assert stopped.choices[0].finish_reason == "stop"
    assert "5" not in stopped.choices[0].message.content


SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population_millions": {"type": "number"}},
    "required": ["city", "population_millions"],
    "additionalProperties": False,
}


def test_structured_request_is_schema_valid(embedded_gateway):
    raw = client(embedded_gateway).chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": "Paris has about 2.1 million inhabitants. Extract city and population."}],
        response_format={"type": "json_schema", "json_schema": {"name": "city", "strict": True, "schema": SCHEMA}},
        max_tokens=64, temperature=0,
    )
    assert raw.headers["x-tandem-task"] == "structured"
    # served by the diffusion backend (verified: AR + grammar with drafts), not by the AR fallback
    assert raw.headers["x-tandem-backend"] == "embedded-diffusion"
    assert raw.headers["x-tandem-fallbacks"] == "none"
    completion = raw.parse()
    value = json.loads(completion.choices[0].message.content)
    jsonschema.validate(value, SCHEMA)
    verified = completion.usage.model_extra["tandem"]["structured"]["verified"]
    # the AR document, not the skeleton fallback: a model broken at load (a random lm_head, see
    # diffusion_engine/loading.py) still gives a valid skeleton, so validity alone cannot tell
    assert verified["source"] == "ar" and verified["forwards"] >= 1


def test_diffusion_joint_alias_denoises_the_schema_skeleton(embedded_gateway):
    completion = client(embedded_gateway).chat.completions.create(
        model="diffusion-joint",
        messages=[{"role": "user", "content": "Paris has about 2.1 million inhabitants. Extract city and population."}],
        response_format={"type": "json_schema", "json_schema": {"name": "city", "strict": True, "schema": SCHEMA}},
        max_tokens=64, temperature=0,
    )
    assert completion.model == "embedded-diffusion-joint"
    jsonschema.validate(json.loads(completion.choices[0].message.content), SCHEMA)
    assert "verified" not in completion.usage.model_extra["tandem"]["structured"]


def test_diffusion_alias_answers_from_the_shipped_adapter(embedded_gateway):
    raw = client(embedded_gateway).chat.completions.with_raw_response.create(
        model="diffusion", messages=[{"role": "user", "content": "Name a fruit."}], max_tokens=32, temperature=0)
    completion = raw.parse()
    assert raw.headers["x-tandem-backend"] == "embedded-diffusion" and completion.model == "embedded-diffusion"
    assert completion.choices[0].message.content.strip()
    assert completion.usage.model_extra["tandem"]["steps"] >= 1


def test_usage_tandem_has_one_shape_on_every_diffusion_answer(embedded_gateway):
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    structured = client(embedded_gateway).chat.completions.create(
        model="diffusion", messages=[{"role": "user", "content": "Ann lives in Denver."}], max_tokens=24,
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": schema}})
    text = client(embedded_gateway).chat.completions.create(
        model="diffusion", messages=[{"role": "user", "content": "Say hi."}], max_tokens=8)
    structured_stats = structured.usage.model_extra["tandem"]
    text_stats = text.usage.model_extra["tandem"]
    assert set(text_stats) <= set(structured_stats)
    assert structured_stats["steps"] > 0 and structured_stats["tokens_per_forward"] > 0


def test_predicted_output_comes_back_whole(embedded_gateway):
    document = "The quick brown fox jumps over the lazy dog.\nIt was a sunny day in the park.\nEveryone was happy.\n"
    completion = client(embedded_gateway).chat.completions.create(
        model="auto", messages=[{"role": "user", "content": f"Change 'quick' to 'slow'.\n\n{document}"}],
        prediction={"type": "content", "content": document}, max_tokens=96)
    text = completion.choices[0].message.content
    # every line that the edit leaves alone is there: the answer is the document, not its first line
    assert all(line in text for line in document.splitlines()[1:])
    assert completion.choices[0].finish_reason == "stop"
    assert text.startswith("The slow brown fox") and "quick" not in text  # and the edit is applied
    details = completion.usage.completion_tokens_details
    assert details.accepted_prediction_tokens > 0 and details.rejected_prediction_tokens > 0


def test_predicted_insertion_and_deletion_come_back_exactly(embedded_gateway):
    document = "It was a sunny day in the park.\nEveryone was happy.\n"
    for instruction, expected in (("Add a last line: 'Then it rained.'", document + "Then it rained.\n"),
                                  ("Delete the line 'Everyone was happy.'", "It was a sunny day in the park.\n")):
        completion = client(embedded_gateway).chat.completions.create(
            model="auto", messages=[{"role": "user", "content": f"{instruction}\n\n{document}"}],
            prediction={"type": "content", "content": document}, max_tokens=64)
        assert completion.choices[0].message.content == expected


@pytest.mark.parametrize("model", ["auto", "ar"])  # the diffusion route, and the AR model pinned
def test_predicted_rename_comes_back_whole_streamed_or_not(embedded_gateway, model):
    code = 'def greet(name):\n    return f"Hello, {name}!"\n\n\nprint(greet("Ada"))\n'
    request = dict(model=model, messages=[{"role": "user", "content": f"Rename greet to welcome.\n\n{code}"}],
                   prediction={"type": "content", "content": code}, max_tokens=96)
    stream = client(embedded_gateway).chat.completions.create(**request, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == code.replace("greet", "welcome")
    completion = client(embedded_gateway).chat.completions.create(**request)
    assert completion.choices[0].message.content == text
    assert completion.usage.completion_tokens_details.rejected_prediction_tokens > 0
