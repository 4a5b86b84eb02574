"""What the agent conformance suites (chat and Responses) ask of the embedded gateway: one
weather tool, the pydantic models of their structured outputs, the tool's answer."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel

WEATHER_PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
#: the tool in chat completions' shape, and flat as the Responses API has it
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city", "parameters": WEATHER_PARAMETERS}}
WEATHER_RESPONSES_TOOL = {"type": "function", **WEATHER_TOOL["function"]}


class Unit(str, Enum):
    celsius = "celsius"
    fahrenheit = "fahrenheit"


class City(BaseModel):
    name: str
    country: str


class Forecast(BaseModel):
    unit: Unit
    cities: list[City]


class Person(BaseModel):
    name: str
    city: str


def weather(city: str) -> str:
    return f"Sunny, 21 C in {city}"


def run_pydantic_ai_weather_agent(model, settings) -> tuple[object, list[str]]:
    """A pydantic-ai agent with one weather tool, asked about Paris: (its result, the tool's calls).
    It must end with an answer within 4 requests."""
    from pydantic_ai import Agent
    from pydantic_ai.usage import UsageLimits

    agent = Agent(model, model_settings=settings)
    calls: list[str] = []

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """Get the current weather for a city."""
        calls.append(city)
        return weather(city)

    return agent.run_sync("What's the weather in Paris?", usage_limits=UsageLimits(request_limit=4)), calls
