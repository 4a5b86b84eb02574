"""The request plan (router/plan.py): one reader of a chat body's fields, whose answers every
stage gets — the router, the policy, the per-key limits, the embedded backends."""

from __future__ import annotations

import pytest

from gateway.backends.embedded_provider import sampling_params
from gateway.backends.json_output import ANY_OBJECT, requested_schema
from gateway.key_limits import estimated_tokens
from router.plan import RequestPlan

WEATHER = {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
BOOK = {"name": "book_flight", "parameters": {"type": "object", "properties": {}}}


def plan(**fields) -> RequestPlan:
    return RequestPlan.of({"model": "auto", "messages": [{"role": "user", "content": "hi"}], **fields})


@pytest.mark.parametrize("fields,contract", [
    ({}, "text"),
    ({"response_format": {"type": "json_object"}}, "json_object"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}},
     "json_schema"),
    ({"response_format": {"type": "text"}}, "text"),
    ({"tools": [{"type": "function", "function": WEATHER}]}, "tools"),
    ({"tools": [{"type": "function", "function": WEATHER}], "tool_choice": "none",
      "response_format": {"type": "json_object"}}, "json_object"),
    ({"functions": [WEATHER]}, "tools"),
    ({"functions": [WEATHER], "function_call": "none"}, "text"),
])
def test_the_output_contract(fields, contract):
    assert plan(**fields).contract == contract
    assert plan(**fields, stream=True).contract == contract  # stream decides only how it is sent


def test_legacy_functions_read_as_tools_with_their_choice():
    offer = plan(functions=[WEATHER, BOOK], function_call={"name": "book_flight"}).tools
    assert offer.legacy and offer.named == "book_flight"
    assert [f["name"] for f in offer.functions()] == ["book_flight"]
    modern = plan(tools=[{"type": "function", "function": WEATHER}], parallel_tool_calls=False).tools
    assert not modern.legacy and not modern.parallel and modern.named is None


def test_sampling_reads_each_field_once_for_every_reader():
    request = plan(max_completion_tokens=40, max_tokens=99, temperature=0, top_p=0.5, stop="END", seed=3)
    assert request.sampling.max_tokens == 40  # max_completion_tokens wins, as OpenAI reads it
    assert (request.sampling.temperature, request.sampling.top_p, request.sampling.stop,
            request.sampling.seed) == (0.0, 0.5, ("END",), 3)
    # the embedded model behind litellm gets keyword arguments: read by the same reader
    params = sampling_params(dict(request.body), list(request.messages))
    assert (params.max_tokens, params.temperature, params.top_p, params.stop) == (40, 0.0, 0.5, ["END"])
    assert estimated_tokens(request) == len("hi") // 4 + 40


def test_infill_prediction_and_text_size():
    fim = plan(messages=[{"role": "user", "content": "<|fim_prefix|>def f(<|fim_suffix|>):<|fim_middle|>"}])
    assert fim.fim_markers and fim.infill.prefix == "def f(" and fim.infill.suffix == "):"
    predicted = plan(prediction={"type": "content", "content": [{"type": "text", "text": "doc"}]})
    assert predicted.prediction == "doc" and plan().prediction is None
    parts = plan(messages=[{"role": "user", "content": [{"type": "text", "text": "abc"}]},
                           {"role": "assistant", "content": "de"}])
    assert parts.text_chars == 5


def test_changes_make_new_plans_that_match_their_body():
    request = plan(temperature=0.2)
    defaulted = request.with_defaults({"temperature": 0.9, "max_tokens": 8})
    assert defaulted.sampling.temperature == 0.2 and defaulted.sampling.max_tokens == 8  # the client wins
    assert request.with_defaults({"temperature": 0.9}) is request
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    changed = plan(temperature=0.2, response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}})
    assert changed.contract == "json_schema" and requested_schema(changed) == schema
    assert requested_schema(plan(temperature=0.2, response_format={"type": "json_object"})) == ANY_OBJECT
