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

from gateway.backends.grounded_edits import GroundedEdit, prediction_details
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
class EditedDocument:
    """A Predicted Output answered by a grounded edit operation (see ``grounded_edits``)."""

    text: str
    finish: str
    prompt_tokens: int
    completion_tokens: int
    details: dict[str, int]


async def grounded_edit(optional_params: dict[str, Any], messages: list[dict[str, Any]]) -> EditedDocument | None:
    """The edited document when the request's instruction grounds an edit operation: the
    model fills the operation under the schema's constraint and the document is edited
    verbatim. None when nothing is grounded or the operation did not complete."""
    plan = RequestPlan.of({**optional_params, "messages": messages})
    edit = GroundedEdit.of(plan)
    if edit is None:
        return None
    model = local_model()
    await asyncio.get_running_loop().run_in_executor(None, model.load)  # loads once, off the event loop
    tokenizer = model.tokenizer
    longest = max(len(tokenizer.encode(span, add_special_tokens=False)) for span in edit.spans())
    params = SamplingParams(max_tokens=2 * longest + 32, temperature=0.0, top_p=1.0, seed=None, stop=[],
                            json_schema=edit.schema())
    parts, finish, prompt_tokens = [], "length", 0
    async for event in model.stream_events(edit.messages(), params):
        parts.append(event.text)
        if event.finish_reason:
            finish, prompt_tokens = event.finish_reason, event.prompt_tokens
    operation = _operation("".join(parts)) if finish == "stop" else None
    if operation is None or not edit.allows(operation):
        return None
    tokens = tokenizer.encode(edit.apply(operation), add_special_tokens=False)
    limit = plan.sampling.max_tokens
    cut = bool(limit) and len(tokens) > limit
    tokens = tokens[:limit] if cut else tokens
    return EditedDocument(tokenizer.decode(tokens), "length" if cut else "stop", prompt_tokens, len(tokens),
                          prediction_details(tokenizer.encode(edit.document, add_special_tokens=False), tokens))


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
            model_response.choices[0].message.content = edited.text
            model_response.choices[0].finish_reason = edited.finish
            model_response.usage = Usage(prompt_tokens=edited.prompt_tokens, completion_tokens=edited.completion_tokens,
                                         total_tokens=edited.prompt_tokens + edited.completion_tokens,
                                         completion_tokens_details=edited.details)
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
            yield {"text": edited.text, "is_finished": True, "finish_reason": edited.finish, "index": 0,
                   "tool_use": None, "usage": {"prompt_tokens": edited.prompt_tokens,
                                               "completion_tokens": edited.completion_tokens,
                                               "total_tokens": edited.prompt_tokens + edited.completion_tokens}}
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
