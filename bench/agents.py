"""Agents on the embedded models: requests per finished task, seconds per run; Predicted Outputs.

Starts the gateway on the default policy (or uses ``--base``), then:

* tool agents (pydantic-ai, openai-agents, a langchain bind_tools loop) on a few tasks that
  need one tool call, and a few that need none: finished = ended with a text answer within
  the turn budget; requests = model calls the framework made;
* Predicted Outputs: renames, one-word changes, insertions and deletions in code and prose;
  "whole" = every unchanged line of the document is in the answer, "applied" = the edit is,
  "grounded" = answered by one grounded edit operation (``gateway/backends/grounded_edits.py``).

Writes ``bench/results/agents.json``. Run: ``python -m bench.agents``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import openai

TASKS = [  # (prompt, needs the tool)
    ("What's the weather in Paris?", True),
    ("Is it raining in Oslo right now?", True),
    ("How warm is it in Rome today?", True),
    ("Hi! What is 2+2?", False),
    ("Tell me a joke.", False),
]

GREET = 'def greet(name):\n    """Say hello."""\n    return f"Hello, {name}!"\n\n\nprint(greet("Ada"))\n'
PROSE = "The quick brown fox jumps over the lazy dog.\nIt was a sunny day in the park.\nEveryone was happy.\n"
USER_CLASS = 'class User {\n  firstName: string = "";\n  lastName: string = "";\n  username: string = "";\n}\n\nexport default User;\n'
EDITS = [  # (instruction, document, text the edited document must contain, text it must not)
    # the lines the edit may change are those with the text it must not keep, or (renames) with
    # the renamed word: TOUCHED
    ("Rename greet to welcome.", GREET, "def welcome(", "def greet("),
    ("Change the greeting from Hello to Hi.", GREET, 'f"Hi, {name}!"', 'f"Hello, {name}!"'),
    ("Add the line `print(greet(\"Bob\"))` at the end.", GREET, 'print(greet("Bob"))', None),
    ("Change 'quick' to 'slow'.", PROSE, "The slow brown fox", "quick"),
    ("Replace 'sunny' with 'rainy'.", PROSE, "rainy day", "sunny"),
    ("Add a last line: 'Then it rained.'", PROSE, "Then it rained.", None),
    # written after grounded edits were built: a check that they are not fitted to the six above
    ("Rename name to person.", GREET, "def greet(person)", "{name}"),
    ("Replace 'Ada' with 'Grace'.", GREET, 'greet("Grace")', "Ada"),
    ("Rename the function greet to say_hello.", GREET, "def say_hello(", "greet"),
    ("Change the greeting from Hello to Good morning.", GREET, "Good morning, {name}", "Hello"),
    ("Change lazy to sleepy.", PROSE, "the sleepy dog", "lazy"),
    ("Delete the line 'Everyone was happy.'", PROSE, "in the park.", "Everyone"),
    ("Delete the print statement.", GREET, 'return f"Hello, {name}!"', "print("),
    ("Insert the line 'Once upon a time.' at the top.", PROSE, "Once upon a time.\nThe quick", None),
    ("Add the line 'It was warm.' after the line with sunny.", PROSE, "park.\nIt was warm.\nEveryone", None),
    # the example of OpenAI's Predicted Outputs guide
    ('Replace the "username" property with an "email" property. Respond only with code, and with no '
     'markdown formatting.', USER_CLASS, 'email: string = "";', "username"),
    # names no text of the document: left to the model, which copies the document through
    ("Remove the docstring.", GREET, "def greet(name):", '"""'),
    ("Make the last sentence shout, in capitals.", PROSE, "EVERYONE WAS HAPPY", "Everyone was happy"),
]


TOUCHED = {"Rename greet to welcome.": "greet", "Rename name to person.": "name",
           "Rename the function greet to say_hello.": "greet"}


def weather(city: str) -> str:
    return f"Sunny, 21 C in {city}"


def run_pydantic_ai(base: str, prompt: str) -> tuple[bool, int]:
    from pydantic_ai import Agent
    from pydantic_ai.exceptions import UsageLimitExceeded
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider
    from pydantic_ai.settings import ModelSettings
    from pydantic_ai.usage import UsageLimits

    agent = Agent(OpenAIChatModel("auto", provider=OpenAIProvider(base_url=base, api_key="x")),
                  model_settings=ModelSettings(max_tokens=32))

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """Get the current weather for a city."""
        return weather(city)

    try:
        result = agent.run_sync(prompt, usage_limits=UsageLimits(request_limit=6))
    except UsageLimitExceeded:
        return False, 6
    return bool(result.output), result.usage.requests


def run_openai_agents(base: str, prompt: str) -> tuple[bool, int]:
    from agents import Agent, ModelSettings, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled
    from agents.exceptions import MaxTurnsExceeded

    set_tracing_disabled(True)

    @function_tool
    def get_weather(city: str) -> str:
        """Get the current weather for a city."""
        return weather(city)

    agent = Agent(name="w", instructions="Answer briefly.", tools=[get_weather],
                  model=OpenAIChatCompletionsModel(model="auto", openai_client=openai.AsyncOpenAI(base_url=base, api_key="x")),
                  model_settings=ModelSettings(max_tokens=32))
    try:
        result = Runner.run_sync(agent, prompt, max_turns=6)
    except MaxTurnsExceeded:
        return False, 6
    return bool(result.final_output), len(result.raw_responses)


def run_langchain(base: str, prompt: str) -> tuple[bool, int]:
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """Get the current weather for a city."""
        return weather(city)

    llm = ChatOpenAI(model="auto", base_url=base, api_key="x", max_tokens=32).bind_tools([get_weather])
    messages = [HumanMessage(prompt)]
    for requests in range(1, 7):
        reply = llm.invoke(messages)
        if not reply.tool_calls:
            return bool(reply.content), requests
        messages.append(reply)
        messages += [ToolMessage(weather(c["args"].get("city", "")), tool_call_id=c["id"]) for c in reply.tool_calls]
    return False, 6


def agents(base: str) -> dict:
    results = {}
    for name, run in (("pydantic-ai", run_pydantic_ai), ("openai-agents", run_openai_agents),
                      ("langchain", run_langchain)):
        rows = []
        for prompt, needs_tool in TASKS:
            start = time.perf_counter()
            finished, requests = run(base, prompt)
            rows.append({"prompt": prompt, "needs_tool": needs_tool, "finished": finished, "requests": requests,
                         "seconds": round(time.perf_counter() - start, 2)})
        done = [r for r in rows if r["finished"]]
        results[name] = {
            "finished": f"{len(done)}/{len(rows)}",
            "requests_per_finished_task": round(sum(r["requests"] for r in done) / max(len(done), 1), 2),
            "seconds_per_run": round(sum(r["seconds"] for r in rows) / len(rows), 2),
            "runs": rows,
        }
        print(name, {k: v for k, v in results[name].items() if k != "runs"}, flush=True)
    return results


def predicted_outputs(base: str) -> dict:
    client = openai.OpenAI(base_url=base, api_key="x", max_retries=0)
    rows = []
    for instruction, document, wanted, unwanted in EDITS:
        start = time.perf_counter()
        reply = client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": f"{instruction}\n\n{document}"}],
            prediction={"type": "content", "content": document}, max_tokens=160)
        text = reply.choices[0].message.content or ""
        touched = TOUCHED.get(instruction, unwanted)
        kept = [line for line in document.splitlines() if line.strip() and (touched is None or touched not in line)]
        rows.append({"edit": instruction, "whole": all(line in text for line in kept),
                     "applied": wanted in text and (unwanted is None or unwanted not in text),
                     "grounded": "edit" in (reply.usage.model_extra or {}).get("tandem", {}),
                     "finish": reply.choices[0].finish_reason, "seconds": round(time.perf_counter() - start, 2)})
    summary = {"whole": f"{sum(r['whole'] for r in rows)}/{len(rows)}",
               "applied": f"{sum(r['applied'] for r in rows)}/{len(rows)}",
               "grounded": f"{sum(r['grounded'] for r in rows)}/{len(rows)}", "runs": rows}
    print("predicted outputs", {k: v for k, v in summary.items() if k != "runs"}, flush=True)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="a running gateway's /v1 URL (default: start one on the default policy)")
    args = parser.parse_args()
    server = None
    if args.base is None:
        from tests.conftest import ROOT, start_gateway

        server = start_gateway(ROOT / "policies" / "default.yaml", ready_timeout=300)
        args.base = server.base + "/v1"
    try:
        import platform

        result = {"cpu": platform.processor() or platform.machine(), "agents": agents(args.base),
                  "predicted_outputs": predicted_outputs(args.base)}
    finally:
        if server is not None:
            server.stop()
    out = Path(__file__).parent / "results" / "agents.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
