"""OpenAI chat-completions wire models: the one definition of each shape Tandem speaks.

Requests are validated here (types, ranges, roles) so every later layer can trust
them. Types are strict, as OpenAI's are: ``"stream": "false"`` or ``"max_tokens": true``
is a 400, not a coercion. Unknown top-level fields are tolerated (``extra="allow"``)
but never forwarded: upstreams get ``forwarded_fields`` of the body only, so a field
this gateway does not check cannot bypass its limits.
Responses are built as these models too, then dumped without ``None`` fields.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class ContentPart(_Open):
    type: str
    text: str | None = None


class FunctionCall(_Open):
    name: str
    arguments: str


class ToolCall(_Open):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Open):
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _content_present(self) -> "ChatMessage":
        if self.role in ("system", "developer", "user") and self.content is None:
            raise ValueError(f"a {self.role} message needs 'content'")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs 'tool_call_id'")
        return self


def checked_schema(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """``value`` if it is a valid JSON Schema (draft 2020-12), else a ValueError saying where not."""
    if value is None:
        return value
    from jsonschema import Draft202012Validator, SchemaError

    try:
        Draft202012Validator.check_schema(value)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "the root"
        raise ValueError(f"not a valid JSON Schema (at {where}: {exc.message})") from None
    return value


class FunctionDefinition(_Open):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @field_validator("parameters")
    @classmethod
    def _parameters_are_a_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        checked_schema(value)
        if value.get("type", "object") != "object":
            raise ValueError(f"function parameters must be a schema of type 'object', not {value.get('type')!r}")
        return value


class ToolDefinition(_Open):
    type: Literal["function"]
    function: FunctionDefinition


class NamedToolChoice(_Open):
    type: Literal["function"]
    function: dict[str, str]


class JsonSchemaFormat(_Open):
    name: str = "response"
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None
    description: str | None = None

    @field_validator("schema_")
    @classmethod
    def _schema_is_valid(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return checked_schema(value)


class ResponseFormat(_Open):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> "ResponseFormat":
        if self.type == "json_schema" and (self.json_schema is None or self.json_schema.schema_ is None):
            raise ValueError("response_format of type 'json_schema' needs json_schema.schema")
        return self


class Prediction(_Open):
    type: Literal["content"]
    content: str | list[ContentPart]


class StreamOptions(_Open):
    include_usage: bool = False


class ChatCompletionRequest(_Open):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = Field(default=None, ge=1)
    response_format: ResponseFormat | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    prediction: Prediction | None = None
    metadata: dict[str, str] | None = None
    parallel_tool_calls: bool | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        return value

    @field_validator("n")
    @classmethod
    def _single_choice(cls, value: int | None) -> int | None:
        if value is not None and value != 1:
            raise ValueError("only n=1 is supported; send several requests for several choices")
        return value

    @model_validator(mode="after")
    def _tool_choice_needs_tools(self) -> "ChatCompletionRequest":
        if isinstance(self.tool_choice, NamedToolChoice) or self.tool_choice == "required":
            if not self.tools:
                raise ValueError("tool_choice requires 'tools'")
        if isinstance(self.tool_choice, NamedToolChoice):
            wanted = self.tool_choice.function.get("name")
            if wanted not in {tool.function.name for tool in self.tools or []}:
                raise ValueError(f"tool_choice names '{wanted}', which is not in 'tools'")
        return self

    @model_validator(mode="after")
    def _tool_results_answer_calls(self) -> "ChatCompletionRequest":
        called: set[str] = set()
        for index, message in enumerate(self.messages):
            called.update(call.id for call in message.tool_calls or [])
            if message.role == "tool" and message.tool_call_id not in called:
                raise ValueError(f"messages[{index}] is a tool result for tool_call_id "
                                 f"'{message.tool_call_id}', which no earlier assistant message called")
        return self

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def token_fields(self) -> dict[str, int]:
        """Every token limit the request sets, by field: each one is checked, since
        backends differ in which of them they read."""
        return {name: value for name, value in (("max_tokens", self.max_tokens),
                                                 ("max_completion_tokens", self.max_completion_tokens))
                if value is not None}


#: OpenAI chat parameters passed on to AR backends (everything else in a body stays here)
FORWARDED_FIELDS = (
    "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "seed", "n",
    "response_format", "tools", "tool_choice", "stream_options", "user", "presence_penalty",
    "frequency_penalty", "logit_bias", "parallel_tool_calls", "prediction", "logprobs", "top_logprobs",
    "metadata", "functions", "function_call", "top_k",
)


def forwarded_fields(body: dict[str, Any]) -> dict[str, Any]:
    return {key: body[key] for key in FORWARDED_FIELDS if key in body}


# --- responses -------------------------------------------------------------


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    refusal: str | None = None


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: Literal["stop", "length", "tool_calls", "content_filter"] | None
    logprobs: None = None


class Usage(_Open):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "tandem"
    description: str | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def now() -> int:
    return int(time.time())


def dump(model: BaseModel) -> dict[str, Any]:
    """Wire dict of a response model: ``None`` fields dropped except where OpenAI keeps them."""
    data = model.model_dump(exclude_none=True)
    if isinstance(model, (ChatCompletion, ChatCompletionChunk)):
        for choice, raw in zip(data["choices"], model.choices):
            choice["finish_reason"] = raw.finish_reason
            choice["logprobs"] = None
    return data
