"""The one reader of what JSON a request asks for, for the embedded backends.

``json_schema`` → its schema. ``json_object`` → any object, unless the system prompt carries
a JSON Schema for it (instructor's JSON mode and many prompt templates put the schema there
and ask for "an instance of the JSON, not the schema"): then the object follows that schema,
which is still an object, so the answer honours ``json_object`` either way.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from router.plan import RequestPlan, message_text

ANY_OBJECT: dict[str, Any] = {"type": "object"}
#: how many '{' positions of a system prompt are tried as the start of a schema
_MAX_CANDIDATES = 64


def requested_schema(plan: RequestPlan) -> dict[str, Any] | None:
    """The schema to generate under, or None for free text."""
    if plan.output.kind == "json_schema":
        return dict(plan.output.schema or {}) or ANY_OBJECT
    if plan.output.kind == "json_object":
        return schema_in_prompt(plan.messages) or ANY_OBJECT
    return None


def schema_in_prompt(messages: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The first object-typed JSON Schema written out in a system/developer message that
    the schema compiler can honour (one it cannot leaves the request at any object)."""
    from jsonschema import Draft202012Validator

    from diffusion_engine.structured import compile_schema

    decoder = json.JSONDecoder()
    for message in messages:
        if message.get("role") not in ("system", "developer"):
            continue
        content = message_text(message)
        start = content.find("{")
        for _ in range(_MAX_CANDIDATES):
            if start < 0:
                break
            try:
                value, _end = decoder.raw_decode(content, start)
            except ValueError:
                value = None
            if isinstance(value, dict) and value.get("type") == "object" and isinstance(value.get("properties"), dict):
                try:
                    Draft202012Validator.check_schema(value)
                    compile_schema(value)
                    return value
                except Exception:  # not a schema we can generate under: keep looking
                    pass
            start = content.find("{", start + 1)
    return None
