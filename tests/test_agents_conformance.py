"""Agent frameworks, unmodified, against the real gateway on the embedded models.

Each framework is pointed at one URL with model ``auto`` (or ``ar``), as a new user would:
a tool agent must end with an answer within a small turn budget, structured output with
pydantic models (enums, nested lists) must parse, and streamed tool calls and structured
output must arrive as OpenAI sends them. One server for all (``embedded_gateway``), tiny
``max_tokens``: the point is the protocol, not the prose of a 135M model.
"""

from __future__ import annotations

import asyncio
import json

import openai
import pytest

from tests.agent_models import WEATHER_TOOL, Forecast, Person, Unit, run_pydantic_ai_weather_agent, weather

pytestmark = pytest.mark.integration

def sdk(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base + "/v1", api_key="x", max_retries=0)


# --- openai SDK ---------------------------------------------------------------------------

def test_auto_answers_small_talk_and_calls_for_weather(embedded_gateway):
    client = sdk(embedded_gateway)
    small_talk = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "Hi! What is 2+2?"}], tools=[WEATHER_TOOL],
        tool_choice="auto", max_tokens=8)
    assert small_talk.parse().choices[0].message.tool_calls is None
    assert small_talk.headers["x-tandem-tool-use"].startswith("answer")
    asked = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "What's the weather in Paris?"}], tools=[WEATHER_TOOL],
        max_tokens=32)
    call = asked.choices[0].message.tool_calls[0]
    assert asked.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and set(json.loads(call.function.arguments)) == {"city"}


@pytest.mark.parametrize("model", ["auto", "ar"])
def test_streamed_tool_call_arrives_as_delta_tool_calls(embedded_gateway, model):
    stream = sdk(embedded_gateway).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "What's the weather in Paris?"}], tools=[WEATHER_TOOL],
        tool_choice="required", stream=True, max_tokens=32)
    arguments, names, finish = "", [], None
    for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                names += [call.function.name] if call.function.name else []
                arguments += call.function.arguments or ""
            finish = choice.finish_reason or finish
    assert names == ["get_weather"] and finish == "tool_calls"
    assert "city" in json.loads(arguments)


@pytest.mark.parametrize("stream", [False, True])
def test_legacy_functions_get_a_legacy_function_call(embedded_gateway, stream):
    """``functions`` in, ``message.function_call`` / ``delta.function_call`` and finish
    ``function_call`` out, as OpenAI answers legacy function calling (no ``tool_calls``)."""
    answer = sdk(embedded_gateway).chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "What's the weather in Paris?"}],
        functions=[WEATHER_TOOL["function"]], function_call={"name": "get_weather"}, stream=stream, max_tokens=32)
    if stream:
        name, arguments, finish = "", "", None
        for chunk in answer:
            for choice in chunk.choices:
                assert choice.delta.tool_calls is None
                call = choice.delta.function_call
                name += (call.name or "") if call else ""
                arguments += (call.arguments or "") if call else ""
                finish = choice.finish_reason or finish
    else:
        message, finish = answer.choices[0].message, answer.choices[0].finish_reason
        assert message.tool_calls is None
        name, arguments = message.function_call.name, message.function_call.arguments
    assert name == "get_weather" and finish == "function_call"
    assert "city" in json.loads(arguments)


def _tool(name: str, argument: str, description: str | None = None) -> dict:
    function = {"name": name, "parameters": {"type": "object", "properties": {argument: {"type": "string"}},
                                             "required": [argument]}}
    return {"type": "function", "function": {**function, **({"description": description} if description else {})}}


@pytest.mark.parametrize("model", ["auto", "ar"])
@pytest.mark.parametrize("tools,turn,expected", [
    ([_tool("open_file", "path")], "show me the readme", "open_file"),
    ([WEATHER_TOOL, _tool("lookup_word", "word", "Look up the definition of a word")], "Define serendipity",
     "lookup_word")])
def test_arguments_never_echo_the_tool_name(embedded_gateway, model, tools, turn, expected):
    """A 135M model fills ``path`` with ``open_file`` when left to itself (the name sits right
    there in the tool list): on every route the call schema rules it out; and with two tools
    and a forced call, the one the turn asks for is called."""
    completion = sdk(embedded_gateway).chat.completions.create(
        model=model, messages=[{"role": "user", "content": turn}], tools=tools,
        tool_choice="required", max_tokens=32, temperature=0)
    call = completion.choices[0].message.tool_calls[0]
    assert call.function.name == expected
    value = next(iter(json.loads(call.function.arguments).values()))
    assert not value.lower().startswith(tuple(t["function"]["name"] for t in tools))


def test_pydantic_tool_with_enum_and_nested_model(embedded_gateway):
    completion = sdk(embedded_gateway).chat.completions.parse(
        model="auto", messages=[{"role": "user", "content": "Forecast for Paris, France in celsius."}],
        tools=[openai.pydantic_function_tool(Forecast)], tool_choice="required", max_tokens=64)
    call = completion.choices[0].message.tool_calls[0]
    assert isinstance(call.function.parsed_arguments, Forecast)


def test_parse_and_stream_structured_output(embedded_gateway):
    client = sdk(embedded_gateway)
    parsed = client.chat.completions.parse(
        model="auto", messages=[{"role": "user", "content": "Forecast in celsius for Paris, France."}],
        response_format=Forecast, max_tokens=64)
    assert isinstance(parsed.choices[0].message.parsed, Forecast)
    with client.chat.completions.stream(
        model="auto", messages=[{"role": "user", "content": "Ann lives in Denver."}], response_format=Person,
        max_tokens=48,
    ) as stream:
        prefixes = [event.snapshot for event in stream if event.type == "content.delta"]
        final = stream.get_final_completion()
    assert isinstance(final.choices[0].message.parsed, Person)
    assert prefixes and final.choices[0].message.content.startswith(prefixes[0])


@pytest.mark.parametrize("stream", [False, True])
def test_a_call_cut_by_max_tokens_is_a_cut_call(embedded_gateway, stream):
    """As OpenAI: the tool call so far (arguments not yet JSON) with finish "length", never the
    gateway's internal call document as text."""
    request = dict(model="ar", messages=[{"role": "user", "content": "Find a recipe for bread"}],
                   tools=[WEATHER_TOOL, {"type": "function", "function": {"name": "search", "parameters": {
                       "type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}],
                   tool_choice={"type": "function", "function": {"name": "search"}}, max_tokens=12, temperature=0)
    client = sdk(embedded_gateway)
    if stream:
        name, arguments, finish, content = None, "", None, ""
        for chunk in client.chat.completions.create(**request, stream=True):
            for choice in chunk.choices:
                for call in choice.delta.tool_calls or []:
                    name = call.function.name or name
                    arguments += call.function.arguments or ""
                content += choice.delta.content or ""
                finish = choice.finish_reason or finish
    else:
        choice = client.chat.completions.create(**request).choices[0]
        call = choice.message.tool_calls[0]
        name, arguments, finish, content = call.function.name, call.function.arguments, choice.finish_reason, \
            choice.message.content or ""
    assert finish == "length" and name == "search" and not content
    assert arguments.startswith("{") and '"name"' not in arguments
    with pytest.raises(ValueError):
        json.loads(arguments)


def test_length_inside_a_document_is_finish_length(embedded_gateway):
    client = sdk(embedded_gateway)
    completion = client.chat.completions.create(
        model="ar", messages=[{"role": "user", "content": "Ann lives in Denver."}], max_tokens=4,
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": Person.model_json_schema()}})
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content.startswith("{")
    with pytest.raises(openai.LengthFinishReasonError):
        client.chat.completions.parse(model="ar", messages=[{"role": "user", "content": "Ann lives in Denver."}],
                                      response_format=Person, max_tokens=4)


# --- frameworks ---------------------------------------------------------------------------

def test_pydantic_ai_tool_agent_ends_with_an_answer(embedded_gateway):
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider
    from pydantic_ai.settings import ModelSettings

    model = OpenAIChatModel("auto", provider=OpenAIProvider(base_url=embedded_gateway.base + "/v1", api_key="x"))
    result, calls = run_pydantic_ai_weather_agent(model, ModelSettings(max_tokens=24))
    assert calls and isinstance(result.output, str) and result.output
    assert result.usage.requests <= 3


def test_pydantic_ai_structured_output(embedded_gateway):
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider
    from pydantic_ai.settings import ModelSettings
    from pydantic_ai.usage import UsageLimits

    model = OpenAIChatModel("auto", provider=OpenAIProvider(base_url=embedded_gateway.base + "/v1", api_key="x"))
    agent = Agent(model, output_type=Forecast, model_settings=ModelSettings(max_tokens=64))
    result = agent.run_sync("Forecast in celsius for Paris, France.", usage_limits=UsageLimits(request_limit=3))
    assert isinstance(result.output, Forecast)


def test_openai_agents_tool_agent_ends_with_an_answer(embedded_gateway):
    from agents import Agent, ModelSettings, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)

    @function_tool
    def get_weather(city: str, unit: Unit = Unit.celsius) -> str:
        """Get the current weather for a city."""
        return weather(city)

    client = openai.AsyncOpenAI(base_url=embedded_gateway.base + "/v1", api_key="x", max_retries=0)
    agent = Agent(name="weather", instructions="Answer briefly.", tools=[get_weather],
                  model=OpenAIChatCompletionsModel(model="auto", openai_client=client),
                  model_settings=ModelSettings(max_tokens=24))
    result = Runner.run_sync(agent, "What's the weather in Paris?", max_turns=4)
    assert isinstance(result.final_output, str) and result.final_output
    assert len(result.raw_responses) <= 3


def test_langchain_answers_after_the_tool_message(embedded_gateway):
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """Get the current weather for a city."""
        return weather(city)

    llm = ChatOpenAI(model="auto", base_url=embedded_gateway.base + "/v1", api_key="x", max_tokens=24,
                     max_retries=0).bind_tools([get_weather])
    messages = [HumanMessage("What's the weather in Paris?")]
    first = llm.invoke(messages)
    assert [call["name"] for call in first.tool_calls] == ["get_weather"]
    messages += [first, ToolMessage(weather("Paris"), tool_call_id=first.tool_calls[0]["id"])]
    second = llm.invoke(messages)
    assert second.tool_calls == [] and second.content


def test_langchain_structured_output(embedded_gateway):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="auto", base_url=embedded_gateway.base + "/v1", api_key="x", max_tokens=64, max_retries=0)
    assert isinstance(llm.with_structured_output(Forecast).invoke("Forecast in celsius for Paris, France."), Forecast)


def test_litellm_tool_call_and_stream(embedded_gateway):
    import litellm

    kwargs = dict(model="openai/auto", api_base=embedded_gateway.base + "/v1", api_key="x", tools=[WEATHER_TOOL],
                  messages=[{"role": "user", "content": "What's the weather in Paris?"}], max_tokens=32)
    response = litellm.completion(**kwargs)
    assert response.choices[0].message.tool_calls[0].function.name == "get_weather"

    async def streamed() -> str:
        chunks = [c async for c in await litellm.acompletion(**kwargs, stream=True)]
        return litellm.stream_chunk_builder(chunks).choices[0].message.tool_calls[0].function.name

    assert asyncio.run(streamed()) == "get_weather"


def test_json_object_follows_a_schema_in_the_system_prompt(embedded_gateway):
    # what instructor's Mode.JSON sends (instructor itself needs openai<3; README)
    schema = json.dumps(Person.model_json_schema(), indent=2)
    system = (f"Understand the content and provide the parsed objects in json that match the following json_schema:"
              f"\n\n{schema}\n\nMake sure to return an instance of the JSON, not the schema itself. " + "Be precise. " * 300)
    completion = sdk(embedded_gateway).chat.completions.create(
        model="auto", response_format={"type": "json_object"}, max_tokens=48,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": "Ann lives in Denver."}])
    Person.model_validate_json(completion.choices[0].message.content)
