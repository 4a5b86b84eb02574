"""Tool calls on the embedded backends: the request they generate for, and the answer back.

The router's ``ToolUse`` decision (``router.tool_use``) says call or answer; here it binds
the embedded models (providers choose for themselves and get the request unchanged):

- answer: the tools leave the request, the model writes text;
- call: one JSON document ``{"name": …, "arguments": …}`` is generated under a schema whose
  ``name`` picks a tool and whose ``arguments`` are that tool's ``parameters`` — the same
  schema compiler as ``response_format``, so pydantic's ``$defs``/``$ref``, enums and nested
  models work. With no ``additionalProperties`` given, objects are closed for generation
  (declared properties only, as a function signature means); the document still satisfies
  the schema as given.
- Arguments are grounded: a free-text string argument never starts with a tool's own name
  (a small model copies ``lookup_word`` from the tool list into ``word``); the name stays
  possible where the schema lists it (``enum``/``const``) or constrains the string itself
  (``pattern``/``format``), where the schema, not the model, decides.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from typing import Any, Mapping

from gateway.wire import FunctionCall, ToolCall
from router.plan import RequestPlan

#: the fields that offer tools or choose among them (legacy function calling included)
TOOL_FIELDS = ("tools", "tool_choice", "parallel_tool_calls", "functions", "function_call")

_DEF_KEYS = ("$defs", "definitions")
#: keywords under which a schema holds sub-schemas (values are schemas or lists/maps of them)
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_ONE = ("items", "additionalProperties", "not", "if", "then", "else", "contains",
                  "propertyNames", "unevaluatedProperties", "unevaluatedItems")


def follow_tool_use(plan: RequestPlan, tool_use: Any) -> RequestPlan:
    """The request as an embedded backend should serve it under the router's decision
    (no decision with tools means ``tool_choice: "none"``: text)."""
    if plan.tools is None:
        return plan
    request = {k: v for k, v in plan.body.items() if k not in TOOL_FIELDS}
    if tool_use is not None and tool_use.mode == "call":
        allowed = set(tool_use.tools)
        request["tools"] = [t for t in plan.tools.tools if t.get("function", {}).get("name") in allowed]
        request["tool_choice"] = "required"
    return plan.with_tools(request)


def call_schema(tools: list[dict[str, Any]]) -> dict[str, Any]:
    """One JSON Schema for ``{"name", "arguments"}`` over ``tools``; every tool's ``$defs`` are
    hoisted to the root (prefixed by the tool's name when there are several) and its
    ``$ref``s pointed there, so they resolve as they did inside ``parameters``."""
    branches, defs = [], {}
    names = [tool["name"] for tool in tools]
    for tool in tools:
        parameters = copy.deepcopy(tool.get("parameters") or {"type": "object", "properties": {}})
        prefix = f"{tool['name']}." if len(tools) > 1 else ""
        own = {name: sub for key in _DEF_KEYS for name, sub in (parameters.pop(key, None) or {}).items()}
        _retarget_refs(parameters, prefix)
        ground_strings(parameters, names)
        for name, sub in own.items():
            _retarget_refs(sub, prefix)
            ground_strings(sub, names)
            defs[prefix + name] = sub
        branches.append({
            "type": "object",
            "properties": {"name": {"const": tool["name"]}, "arguments": parameters},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        })
    schema: dict[str, Any] = branches[0] if len(branches) == 1 else {"anyOf": branches}
    if defs:
        schema = {**schema, "$defs": defs}
    return close_objects(schema)


def ground_strings(schema: Any, names: list[str]) -> Any:
    """``schema`` (changed in place) where each free-text string (``type: string`` with no
    ``enum``, ``const``, ``pattern`` or ``format``) may not start with one of ``names``
    (case-insensitive): a ``pattern`` for the complement, which the grammar enforces token
    by token and the validator checks; the empty string stays allowed, so the slot is
    always satisfiable."""
    pattern = _not_starting_with(names)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if (node.get("type") == "string"
                    and not any(k in node for k in ("enum", "const", "pattern", "format"))):
                node["pattern"] = pattern
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    if names:
        walk(schema)
    return schema


def _not_starting_with(names: list[str]) -> str:
    """An anchored regex of the strings that start with none of ``names`` (ignoring case),
    written without lookarounds (the grammar engine has none): a trie of the names whose
    every node allows the end of the string, any other next character, or a child that is
    not itself the end of a name."""
    trie: dict[Any, Any] = {}
    for name in names:
        node = trie
        for char in name.lower():
            node = node.setdefault(char, {})
        node[None] = {}

    def chars(node_chars: Any, negate: bool) -> str:
        body = "".join(re.escape(c) + (re.escape(c.upper()) if c.upper() != c else "") for c in node_chars)
        return f"[{'^' if negate else ''}{body}]"

    def alternatives(node: dict[Any, Any]) -> str:
        children = sorted(c for c in node if c is not None)
        alts = ["", chars(children, True) + r"[\s\S]*"]
        alts += [chars(c, False) + f"(?:{alternatives(node[c])})" for c in children if None not in node[c]]
        return "|".join(alts)

    return f"^(?:{alternatives(trie)})$"


def _retarget_refs(node: Any, prefix: str) -> None:
    """``#/$defs/X`` and ``#/definitions/X`` → ``#/$defs/<prefix>X``, in place."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            for key in _DEF_KEYS:
                if ref.startswith(f"#/{key}/"):
                    node["$ref"] = f"#/$defs/{prefix}{ref[len(key) + 3:]}"
        for value in node.values():
            _retarget_refs(value, prefix)
    elif isinstance(node, list):
        for value in node:
            _retarget_refs(value, prefix)


def close_objects(schema: Any) -> Any:
    """``schema`` (changed in place) where each object schema that lists ``properties`` and says nothing of
    other keys gets ``additionalProperties: false``. Not inside ``allOf`` (its branches
    share one instance, so closing one would reject the others' properties)."""
    def walk(node: Any, in_all_of: bool) -> None:
        if not isinstance(node, dict):
            return
        if ("properties" in node and not in_all_of and "additionalProperties" not in node
                and "patternProperties" not in node and "unevaluatedProperties" not in node):
            node["additionalProperties"] = False
        for key in _SUBSCHEMA_MAPS:
            for sub in (node.get(key) or {}).values() if isinstance(node.get(key), dict) else ():
                walk(sub, False)
        for key in _SUBSCHEMA_LISTS:
            for sub in node.get(key) or () if isinstance(node.get(key), list) else ():
                walk(sub, in_all_of or key == "allOf")
        for key in _SUBSCHEMA_ONE:
            walk(node.get(key), False)

    walk(schema, False)
    return schema


def tool_prompt(tools: list[dict[str, Any]]) -> str:
    """The tools in words, for a system turn: what a small model needs to pick and fill one."""
    lines = ["You can call these tools. Answer with one call. Fill its arguments with the words the user "
             "wrote (a name, a place, a phrase to search for), never with a tool's name:"]
    for tool in tools:
        properties = (tool.get("parameters") or {}).get("properties") or {}
        arguments = ", ".join(properties) or "no arguments"
        lines.append(f"- {tool['name']}({arguments}): {tool.get('description') or ''}".rstrip(": "))
    return "\n".join(lines)


def with_tool_prompt(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` with the tool list in the system turn (a new one when there is none)."""
    text = tool_prompt(tools)
    if messages and messages[0].get("role") in ("system", "developer"):
        first = messages[0]
        return [{**first, "content": f"{first.get('content') or ''}\n\n{text}".strip()}, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def tool_call(value: Mapping[str, Any]) -> ToolCall:
    """The wire tool call for a generated ``{"name", "arguments"}`` document."""
    return ToolCall(id="call_" + uuid.uuid4().hex[:24],
                    function=FunctionCall(name=value["name"], arguments=json.dumps(value["arguments"])))


#: the head of a generated call document (compact JSON: the grammar fixes the separators)
_CALL_HEAD = re.compile(r'\{"name": ("(?:[^"\\]|\\.)*"), "arguments": ', re.DOTALL)


def cut_tool_call(text: str) -> ToolCall | None:
    """The call in a document that ``max_tokens`` cut: its name and the arguments written so
    far (not valid JSON), as OpenAI returns a call cut at ``finish_reason: "length"``; None
    while the name itself is unfinished."""
    head = _CALL_HEAD.match(text)
    if head is None:
        return None
    return ToolCall(id="call_" + uuid.uuid4().hex[:24],
                    function=FunctionCall(name=json.loads(head.group(1)), arguments=text[head.end():]))


def completion_as_chunks(completion: dict[str, Any], plan: RequestPlan) -> list[dict[str, Any]]:
    """A whole ``chat.completion`` as the stream OpenAI would send for it: the message in one
    delta (``tool_calls`` with whole arguments, or content), the finish, then usage if asked."""
    choice = completion["choices"][0]
    message = choice.get("message") or {}
    delta: dict[str, Any] = {"role": "assistant"}
    if message.get("tool_calls"):
        delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
    else:
        delta["content"] = message.get("content") or ""
    head = {"id": completion.get("id"), "object": "chat.completion.chunk", "created": completion.get("created"),
            "model": completion.get("model")}
    chunks = [{**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
              {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": choice.get("finish_reason")}]}]
    if plan.include_usage and completion.get("usage"):
        chunks.append({**head, "choices": [], "usage": completion["usage"]})
    return chunks
