"""The embedded SmolLM2 as a litellm custom provider (model strings ``embedded/...``).

litellm hands us OpenAI params in ``optional_params``; we run the local model on its
worker thread and give litellm back a ModelResponse or GenericStreamingChunks.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from typing import Any, AsyncIterator

from litellm import CustomLLM

from gateway.backends.grounded_edits import EditedDocument, GroundedEdit
from gateway.backends.json_output import requested_schema
from gateway.backends.local_ar import LocalARModel, SamplingParams
from router.plan import RequestPlan

PROVIDER = "embedded"
DEFAULT_MAX_TOKENS = 256

_model: LocalARModel | None = None
_model_lock = threading.Lock()
_registered = False


def local_model() -> LocalARModel:
    global _model
    with _model_lock:
        if _model is None:
            _model = LocalARModel()
        return _model


def sampling_params(optional_params: dict[str, Any], messages: list[dict[str, Any]]) -> SamplingParams:
    # litellm hands a custom provider keyword arguments, not Tandem's plan: they are read
    # by the same reader (router.plan), so what the gateway planned is what runs here
    plan = RequestPlan.of({**optional_params, "messages": messages})
    schema = requested_schema(plan)
    sampling = plan.sampling
    return SamplingParams(
        max_tokens=sampling.max_tokens or DEFAULT_MAX_TOKENS,
        temperature=0.7 if sampling.temperature is None else sampling.temperature,
        top_p=sampling.top_p or 1.0,
        seed=sampling.seed,
        # a stop string could cut a JSON document in half: constrained output ends when the grammar does
        stop=[] if schema is not None else list(sampling.stop),
        json_schema=schema,
    )


@dataclass(frozen=True)
class EditedAnswer:
    """A Predicted Output answered by a grounded edit operation, with its prompt's size."""

    document: EditedDocument
    prompt_tokens: int


async def grounded_edit(optional_params: dict[str, Any], messages: list[dict[str, Any]]) -> EditedAnswer | None:
    """The edited document when the request's instruction grounds an edit operation: the
    model fills the operation under the schema's constraint and the document is edited
    verbatim. None when nothing is grounded or the operation did not complete."""
    plan = RequestPlan.of({**optional_params, "messages": messages})
    edit = GroundedEdit.of(plan)
    if edit is None:
        return None
    model = local_model()
    await asyncio.get_running_loop().run_in_executor(None, model.load)  # loads once, off the event loop
    params = SamplingParams(max_tokens=edit.token_budget(model.tokenizer), temperature=0.0, top_p=1.0, seed=None,
                            stop=[], json_schema=edit.schema())
    parts, finish, prompt_tokens = [], "length", 0
    async for event in model.stream_events(edit.messages(), params):
        parts.append(event.text)
        if event.finish_reason:
            finish, prompt_tokens = event.finish_reason, event.prompt_tokens
    operation = _operation("".join(parts)) if finish == "stop" else None
    if operation is None or not edit.allows(operation):
        return None
    return EditedAnswer(edit.answer(operation, model.tokenizer, plan.sampling.max_tokens), prompt_tokens)


def _operation(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class EmbeddedLLM(CustomLLM):
    async def acompletion(self, model, messages, api_base, custom_prompt_dict, model_response, print_verbose,
                          encoding, api_key, logging_obj, optional_params, *args, **kwargs):
        from litellm.types.utils import Usage

        model_response.model = f"{PROVIDER}/{model}"
        edited = await grounded_edit(optional_params, messages)
        if edited is not None:
            document = edited.document
            model_response.choices[0].message.content = document.text
            model_response.choices[0].finish_reason = document.finish
            model_response.usage = Usage(prompt_tokens=edited.prompt_tokens, completion_tokens=document.tokens,
                                         total_tokens=edited.prompt_tokens + document.tokens,
                                         completion_tokens_details=document.details)
            return model_response
        params = sampling_params(optional_params, messages)
        parts: list[str] = []
        finish, prompt_tokens, completion_tokens = "stop", 0, 0
        async for event in local_model().stream_events(messages, params):
            parts.append(event.text)
            if event.finish_reason:
                finish, prompt_tokens, completion_tokens = event.finish_reason, event.prompt_tokens, event.completion_tokens
        # max_tokens reached inside a JSON document: the prefix with finish "length", as
        # OpenAI answers (its SDK's parse() raises LengthFinishReasonError on it)
        text = "".join(parts)
        model_response.choices[0].message.content = text
        model_response.choices[0].finish_reason = finish
        model_response.usage = Usage(
            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, total_tokens=prompt_tokens + completion_tokens
        )
        return model_response

    async def astreaming(self, model, messages, api_base, custom_prompt_dict, model_response, print_verbose,
                         encoding, api_key, logging_obj, optional_params, *args, **kwargs) -> AsyncIterator[dict]:
        edited = await grounded_edit(optional_params, messages)
        if edited is not None:  # whole once the operation is complete: one chunk
            document = edited.document
            yield {"text": document.text, "is_finished": True, "finish_reason": document.finish, "index": 0,
                   "tool_use": None, "usage": {"prompt_tokens": edited.prompt_tokens,
                                               "completion_tokens": document.tokens,
                                               "total_tokens": edited.prompt_tokens + document.tokens}}
            return
        params = sampling_params(optional_params, messages)
        async for event in local_model().stream_events(messages, params):
            usage = None
            if event.finish_reason:
                usage = {
                    "prompt_tokens": event.prompt_tokens,
                    "completion_tokens": event.completion_tokens,
                    "total_tokens": event.prompt_tokens + event.completion_tokens,
                }
            yield {
                "text": event.text,
                "is_finished": event.finish_reason is not None,
                "finish_reason": event.finish_reason or "",
                "usage": usage,
                "index": 0,
                "tool_use": None,
            }


def register() -> None:
    """Add the provider to litellm once per process."""
    global _registered
    if _registered:
        return
    import litellm

    litellm.custom_provider_map = [
        entry for entry in litellm.custom_provider_map if entry.get("provider") != PROVIDER
    ] + [{"provider": PROVIDER, "custom_handler": EmbeddedLLM()}]
    _registered = True


__all__ = ["register", "local_model", "EmbeddedLLM"]
