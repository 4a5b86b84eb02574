"""Tool use with OpenAI's semantics: the call-or-answer decision and the call schema."""

from __future__ import annotations

import jsonschema
import openai
import pytest
from enum import Enum
from pydantic import BaseModel

from gateway.backends import tool_calls
from gateway.backends.tool_calls import call_schema, close_objects
from router import tool_use
from router.plan import RequestPlan

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Get the current weather for a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
BOOK = {"type": "function", "function": {"name": "book_flight", "description": "Book a flight offer",
                                         "parameters": {"type": "object", "properties": {"offer": {"type": "string"}}}}}


def decide_tool_use(body: dict):
    return tool_use.decide_tool_use(RequestPlan.of(body))


def follow_tool_use(body: dict, decision) -> dict:
    """The body an embedded backend is given under ``decision``."""
    return dict(tool_calls.follow_tool_use(RequestPlan.of(body), decision).body)


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def called(name: str, arguments: str, ident: str) -> list[dict]:
    return [{"role": "assistant", "content": None,
             "tool_calls": [{"id": ident, "type": "function", "function": {"name": name, "arguments": arguments}}]},
            {"role": "tool", "tool_call_id": ident, "content": "done"}]


@pytest.mark.parametrize("text", ["Hi! What is 2+2?", "Tell me a joke", "Write a haiku about autumn"])
def test_auto_answers_a_turn_no_tool_serves(text):
    decision = decide_tool_use({"messages": [user(text)], "tools": [WEATHER]})
    assert decision.mode == "answer"


def test_auto_calls_the_tool_the_turn_asks_for():
    decision = decide_tool_use({"messages": [user("What's the weather in Paris?")], "tools": [WEATHER, BOOK]})
    assert decision.mode == "call" and decision.tools == ("get_weather",)
    assert "weather" in decision.reason


def test_tool_results_end_the_loop():
    messages = [user("What's the weather in Paris?"), *called("get_weather", '{"city": "Paris"}', "c1")]
    decision = decide_tool_use({"messages": messages, "tools": [WEATHER]})
    assert decision.mode == "answer" and "tool results" in decision.reason


def test_an_uncalled_tool_the_turn_asks_for_is_the_next_step():
    messages = [user("Find the cheapest weather-proof flight and book it"),
                *called("get_weather", '{"city": "Oslo"}', "c1")]
    decision = decide_tool_use({"messages": messages, "tools": [WEATHER, BOOK]})
    assert decision.mode == "call" and decision.tools == ("book_flight",)


ORDER = {"type": "function", "function": {
    "name": "get_order_status", "description": "Look up the status of an existing order.",
    "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}}}


@pytest.mark.parametrize("text, mode", [
    ("Before I order a tent, do you ship to Canada?", "answer"),   # mentions orders, names none
    ("What's the status of my order?", "answer"),                  # a model asks for the number
    ("What's the status of order A-12345?", "call"),
    ("Where is my order #4521?", "call"),
])
def test_a_tool_that_needs_an_identifier_waits_for_one(text, mode):
    decision = decide_tool_use({"messages": [user(text)], "tools": [ORDER, WEATHER]})
    assert decision.mode == mode
    if mode == "answer":
        assert decision.reason == "get_order_status needs order_id, which the conversation does not give yet"


@pytest.mark.parametrize("text, gives", [
    ("order A-12345", True), ("ticket TK-9", True), ("#4521", True), ("invoice 100234", True), ("inv_0042", True),
    ("SKU 88-1204", True),
    ("free over $75", False), ("ships in 5-9 days", False), ("returns within 60 days", False), ("2+2", False),
])
def test_what_counts_as_an_identifier(text, gives):
    assert tool_use.conversation_gives_identifier([user(text)]) is gives


def test_an_identifier_in_the_system_prompt_makes_the_tool_callable():
    messages = [{"role": "system", "content": "The signed-in customer's last order is A-5521."},
                user("What's the status of my last order?")]
    assert decide_tool_use({"messages": messages, "tools": [ORDER]}).mode == "call"


def test_an_identifier_from_a_tool_result_makes_the_tool_callable():
    lookup = {"type": "function", "function": {"name": "find_orders", "description": "Find a customer's orders.",
                                               "parameters": {"type": "object", "properties": {}}}}
    messages = [user("Check the status of my latest order"), *called("find_orders", "{}", "c1")]
    messages[-1]["content"] = '[{"order_id": "A-777", "placed": "yesterday"}]'
    decision = decide_tool_use({"messages": messages, "tools": [lookup, ORDER]})
    assert decision.mode == "call" and decision.tools == ("get_order_status",)


@pytest.mark.parametrize("name, schema, is_identifier", [
    ("order_id", {"type": "string"}, True), ("ticketId", {"type": "string"}, True),
    ("invoice_number", {"type": "integer"}, True), ("city", {"type": "string"}, False),
    ("country_code", {"enum": ["US", "CA"]}, False),  # the schema lists the values: nothing to wait for
    ("country_code", {"type": "string"}, False),      # follows from a name ("France")
    ("code", {"type": "string"}, False),              # source code, not an identifier
])
def test_identifier_arguments(name, schema, is_identifier):
    function = {"name": "f", "parameters": {"type": "object", "properties": {name: schema}, "required": [name]}}
    assert tool_use.identifier_arguments(function) == ([name] if is_identifier else [])
    optional = {"name": "f", "parameters": {"type": "object", "properties": {name: schema}}}
    assert tool_use.identifier_arguments(optional) == []


def test_the_same_call_twice_is_a_loop():
    messages = [user("weather in Paris and then again"), *called("get_weather", '{"city":"Paris"}', "c1"),
                *called("get_weather", '{"city": "Paris"}', "c2")]
    decision = decide_tool_use({"messages": messages, "tools": [WEATHER, BOOK]})
    assert decision.mode == "answer" and "same tool call" in decision.reason


def test_required_and_named_force_a_call():
    required = decide_tool_use({"messages": [user("Hi")], "tools": [WEATHER, BOOK], "tool_choice": "required",
                                "parallel_tool_calls": False})
    assert required.mode == "call" and required.forced and required.max_calls == 1
    named = decide_tool_use({"messages": [user("Hi")], "tools": [WEATHER, BOOK],
                             "tool_choice": {"type": "function", "function": {"name": "book_flight"}}})
    assert named.tools == ("book_flight",)
    assert decide_tool_use({"messages": [user("weather?")], "tools": [WEATHER], "tool_choice": "none"}) is None


def test_embedded_backends_follow_the_decision():
    body = {"messages": [user("x")], "tools": [WEATHER, BOOK], "tool_choice": "auto"}
    answer = follow_tool_use(body, decide_tool_use({"messages": [user("Tell me a joke")], "tools": [WEATHER]}))
    assert "tools" not in answer and "tool_choice" not in answer
    call = follow_tool_use(body, decide_tool_use({"messages": [user("weather in Rome?")], "tools": [WEATHER, BOOK]}))
    assert [t["function"]["name"] for t in call["tools"]] == ["get_weather"] and call["tool_choice"] == "required"


class Unit(str, Enum):
    celsius = "celsius"
    fahrenheit = "fahrenheit"


class Location(BaseModel):
    city: str
    country: str | None = None


class GetWeather(BaseModel):
    location: Location
    unit: Unit
    extra: list[Location] = []


def test_pydantic_defs_resolve_in_the_call_schema():
    tool = openai.pydantic_function_tool(GetWeather)["function"]
    other = {"name": "other", "parameters": {"type": "object", "$defs": {"Location": {"type": "integer"}},
                                             "properties": {"n": {"$ref": "#/$defs/Location"}}}}
    schema = call_schema([tool, other])
    validator = jsonschema.Draft202012Validator(schema)
    good = {"name": "GetWeather", "arguments": {"location": {"city": "Paris", "country": None}, "unit": "celsius",
                                                "extra": []}}
    assert validator.is_valid(good)
    assert not validator.is_valid({**good, "arguments": {**good["arguments"], "unit": "kelvin"}})
    assert validator.is_valid({"name": "other", "arguments": {"n": 3}})  # each tool keeps its own Location
    assert not validator.is_valid({"name": "other", "arguments": {"n": "3"}})


def test_objects_are_closed_for_generation_but_not_inside_all_of():
    schema = close_objects({"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {}}}},
                            "allOf": [{"properties": {"c": {}}}]})
    assert schema["additionalProperties"] is False
    assert schema["properties"]["a"]["additionalProperties"] is False
    assert "additionalProperties" not in schema["allOf"][0]


LOOKUP = {"name": "lookup_word", "parameters": {"type": "object", "properties": {
    "word": {"type": "string"}, "lang": {"type": "string", "enum": ["en", "lookup_word"]},
    "code": {"type": "string", "pattern": "^[a-z_]+$"}}, "required": ["word"]}}


@pytest.mark.parametrize("value,grounded", [
    ("serendipity", True), ("", True), ("lookup", True), ("looking glass", True), ("l", True),
    ("lookup_word", False), ("Lookup_Word", False), ("lookup_word serendipity", False),
    ("get_weather", False), ("get", True), ("get weather", True)])
def test_free_text_arguments_never_start_with_a_tool_name(value, grounded):
    schema = call_schema([LOOKUP, WEATHER["function"]])
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid({"name": "lookup_word", "arguments": {"word": value}}) is grounded
    assert validator.is_valid({"name": "get_weather", "arguments": {"city": value}}) is grounded


def test_grounding_leaves_values_the_schema_decides():
    """An enum that lists the name, or a pattern of the schema's own, keeps it possible."""
    validator = jsonschema.Draft202012Validator(call_schema([LOOKUP]))
    assert validator.is_valid({"name": "lookup_word", "arguments": {"word": "x", "lang": "lookup_word",
                                                                     "code": "lookup_word"}})


def test_the_grounding_pattern_compiles_for_the_grammar_engine():
    from llguidance import LLMatcher

    grammar = LLMatcher.grammar_from_json_schema(call_schema([LOOKUP, WEATHER["function"]]))
    assert LLMatcher.validate_grammar(grammar) == ""  # the empty string: no error


def test_required_narrows_to_the_tools_the_turn_asks_for():
    decision = decide_tool_use({"messages": [user("What's the weather in Rome?")], "tools": [WEATHER, BOOK],
                                "tool_choice": "required"})
    assert decision.tools == ("get_weather",) and decision.forced
    assert "weather" in decision.reason
    unrelated = decide_tool_use({"messages": [user("Hi")], "tools": [WEATHER, BOOK], "tool_choice": "required"})
    assert unrelated.tools == ("get_weather", "book_flight")


def test_legacy_function_calling_reads_as_tools():
    """``functions`` + ``function_call`` mean what ``tools`` + ``tool_choice`` mean, for the
    router's decision and for what the embedded backends generate."""
    legacy = {"messages": [user("Hi")], "functions": [WEATHER["function"], BOOK["function"]],
              "function_call": {"name": "book_flight"}}
    decision = decide_tool_use(legacy)
    assert decision.mode == "call" and decision.tools == ("book_flight",) and decision.forced
    served = follow_tool_use(legacy, decision)
    assert "functions" not in served and "function_call" not in served
    assert [t["function"]["name"] for t in served["tools"]] == ["book_flight"]
    assert decide_tool_use({**legacy, "function_call": "none"}) is None
