"""Agent frameworks on the Responses API, unmodified, against the embedded gateway.

The OpenAI Agents SDK's default model class and pydantic-ai's ``OpenAIResponsesModel``
run a tool agent (it must end with an answer within a small turn budget) and a
structured-output agent; the openai SDK streams a function call as Responses events.
One server for all (``embedded_gateway``), tiny ``max_output_tokens``.
"""

from __future__ import annotations

import asyncio
import json

import openai
import pytest

from tests.agent_models import WEATHER_RESPONSES_TOOL as WEATHER, Person, run_pydantic_ai_weather_agent, weather

pytestmark = pytest.mark.integration

def async_client(server) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base + "/v1", api_key="x", max_retries=0)


def test_openai_agents_default_model_tool_agent(embedded_gateway):
    from agents import Agent, ModelSettings, Runner, function_tool, set_tracing_disabled
    from agents.models.openai_responses import OpenAIResponsesModel

    set_tracing_disabled(True)
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Get the current weather for a city."""
        calls.append(city)
        return weather(city)

    agent = Agent(name="weather", instructions="Answer briefly.", tools=[get_weather],
                  model=OpenAIResponsesModel(model="auto", openai_client=async_client(embedded_gateway)),
                  model_settings=ModelSettings(max_tokens=64, temperature=0))
    result = Runner.run_sync(agent, "What's the weather in Paris?", max_turns=4)
    assert calls and isinstance(result.final_output, str) and result.final_output
    assert len(result.raw_responses) <= 3


def test_openai_agents_default_model_structured_output(embedded_gateway):
    from agents import Agent, ModelSettings, Runner, set_tracing_disabled
    from agents.models.openai_responses import OpenAIResponsesModel

    set_tracing_disabled(True)
    agent = Agent(name="extract", instructions="Extract the person.", output_type=Person,
                  model=OpenAIResponsesModel(model="auto", openai_client=async_client(embedded_gateway)),
                  model_settings=ModelSettings(max_tokens=48))
    result = Runner.run_sync(agent, "Ann lives in Denver.", max_turns=2)
    assert isinstance(result.final_output, Person)


def test_pydantic_ai_responses_model_tool_agent_and_structured_output(embedded_gateway):
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIResponsesModel
    from pydantic_ai.providers.openai import OpenAIProvider
    from pydantic_ai.settings import ModelSettings
    from pydantic_ai.usage import UsageLimits

    provider = OpenAIProvider(base_url=embedded_gateway.base + "/v1", api_key="x")
    result, calls = run_pydantic_ai_weather_agent(OpenAIResponsesModel("auto", provider=provider),
                                                  ModelSettings(max_tokens=64, temperature=0))
    assert calls and isinstance(result.output, str) and result.output
    assert result.usage.requests <= 3

    structured = Agent(OpenAIResponsesModel("auto", provider=provider), output_type=Person,
                       model_settings=ModelSettings(max_tokens=48))
    assert isinstance(structured.run_sync("Ann lives in Denver.", usage_limits=UsageLimits(request_limit=3)).output,
                      Person)


def test_streamed_function_call_events(embedded_gateway):
    async def run():
        client = async_client(embedded_gateway)
        kinds, arguments = [], ""
        async with client.responses.stream(model="auto", input="What's the weather in Paris?", tools=[WEATHER],
                                           tool_choice="required", max_output_tokens=32) as stream:
            async for event in stream:
                kinds.append(event.type)
                if event.type == "response.function_call_arguments.delta":
                    arguments += event.delta
            final = await stream.get_final_response()
        return kinds, arguments, final

    kinds, arguments, final = asyncio.run(run())
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.function_call_arguments.done" in kinds
    call = next(item for item in final.output if item.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments) == json.loads(arguments)
    assert set(json.loads(arguments)) == {"city"}


def test_text_format_json_schema_is_schema_valid(embedded_gateway):
    client = openai.OpenAI(base_url=embedded_gateway.base + "/v1", api_key="x", max_retries=0)
    response = client.responses.parse(model="auto", input="Ann lives in Denver.", text_format=Person,
                                      max_output_tokens=48)
    assert isinstance(response.output_parsed, Person)
    assert response.usage.tandem["tokens_per_forward"] > 0  # served by the diffusion engine's structured path
