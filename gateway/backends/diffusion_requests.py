"""What a chat request asks of the diffusion engine: plain text, a JSON document for a
schema, a tool call, or a fill-in-the-middle. Pure functions over the request's plan."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gateway.backends.grounded_edits import GroundedEdit, edit_instruction
from gateway.backends.json_output import requested_schema
from gateway.backends.local_ar import template_messages
from gateway.backends.tool_calls import call_schema, with_tool_prompt
from router.plan import RequestPlan


@dataclass(frozen=True)
class ToolSpec:
    """Tools the model may call, as one JSON Schema whose ``name`` slot picks the tool."""

    schema: dict[str, Any]
    names: tuple[str, ...]


@dataclass(frozen=True)
class DiffusionJob:
    kind: str  # text | json | tool | infill | predict
    messages: list[dict[str, Any]]
    schema: dict[str, Any] | None = None
    tools: ToolSpec | None = None
    prefix: str = ""
    suffix: str = ""
    #: Predicted Outputs: the current document (in the prompt, where lookups draft from it)
    prediction: str = ""
    #: text the answer starts with, already in the prompt (not returned)
    answer_prefix: str = ""
    #: where the answer ends, besides the request's own ``stop``
    stops: tuple[str, ...] = ()
    #: Predicted Outputs: the edit operation the instruction grounds, if it grounds one
    edit: GroundedEdit | None = None


def edit_operation_job(job: DiffusionJob) -> DiffusionJob:
    """The structured job that fills one grounded edit operation for a ``predict`` job."""
    assert job.edit is not None
    return DiffusionJob("json", job.edit.messages(), schema=job.edit.schema())


def job_for(request: RequestPlan) -> DiffusionJob:
    """Decide the job from the request's plan (the router already chose diffusion)."""
    messages = template_messages(list(request.messages))
    # the output contract decides how the answer is generated (stream only how it is sent)
    tools = request.tools.functions() if request.contract == "tools" and request.tools is not None else []
    if tools:
        spec = ToolSpec(schema=call_schema(tools), names=tuple(t["name"] for t in tools))
        return DiffusionJob("tool", template_messages(with_tool_prompt(list(request.messages), tools)),
                            schema=spec.schema, tools=spec)
    schema = requested_schema(request)
    if schema is not None:
        return DiffusionJob("json", messages, schema=schema)
    if request.infill is not None and messages and messages[-1]["role"] == "user":
        instruction = "Fill in the missing code between the given prefix and suffix."
        return DiffusionJob("infill", messages[:-1] + [{"role": "user", "content": instruction}],
                            prefix=request.infill.prefix, suffix=request.infill.suffix)
    if request.prediction:
        text = request.prediction
        fence = _fence(text)
        instruction = edit_instruction(request)
        return DiffusionJob("predict", _with_document(messages, instruction, text, fence),
                            prediction=text, answer_prefix=fence + "\n", stops=("\n" + fence, fence + "\n"),
                            edit=GroundedEdit.of(request, instruction))
    return DiffusionJob("text", messages)


#: what Predicted Outputs ask for: the whole document back, edited
PREDICTION_INSTRUCTION = ("Apply the requested edit to the document. "
                          "Reply with the whole edited document in a code block.")


def _fence(document: str) -> str:
    """A code fence longer than any backtick run in ``document``."""
    longest = max((len(run) for run in re.findall(r"`+", document)), default=0)
    return "`" * max(3, longest + 1)


def _with_document(messages: list[dict[str, str]], instruction: str, document: str,
                   fence: str) -> list[dict[str, str]]:
    """The conversation with the instruction to return the document whole, and the document
    fenced in the last turn (the answer then opens the same fence: a small model copies
    the document through, and lookup drafts copy it in one forward per block)."""
    head = [{"role": "system", "content": PREDICTION_INSTRUCTION}]
    if messages and messages[0]["role"] == "system":
        head = [{"role": "system", "content": f"{messages[0]['content']}\n\n{PREDICTION_INSTRUCTION}"}]
        messages = messages[1:]
    last = messages[-1] if messages else {"role": "user", "content": ""}
    edited = {**last, "content": f"Edit: {instruction or 'Edit the document.'}\n\n"
                                 f"Document:\n{fence}\n{document.rstrip()}\n{fence}"}
    return [*head, *messages[:-1], edited]
