"""OpenAI Responses API request models: what ``POST /v1/responses`` accepts, validated once.

Strict like the chat models (booleans are booleans). What Tandem cannot serve is refused
with a 400 naming the field, not silently dropped: images and files in the input, background
mode, prompt templates and the Conversations API. Hosted tools (web search, file search, …)
are accepted here and served only where the route's backend speaks the Responses API
(passed through); the chat translation refuses them with a 400 naming them. Fields that
change nothing on the translated path (``include``, ``reasoning`` for models that do not
reason, cache hints) are accepted, and passed through where the upstream speaks Responses.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from gateway.wire import FunctionDefinition, JsonSchemaFormat, _Open

#: item types a client may send; everything else is a 400 naming the type
INPUT_ITEM_TYPES = ("message", "function_call", "function_call_output")


class InputContentPart(_Open):
    type: str
    text: str | None = None
    refusal: str | None = None

    @model_validator(mode="after")
    def _text_only(self) -> "InputContentPart":
        if self.type not in ("input_text", "output_text", "text", "refusal"):
            raise ValueError(f"content part type '{self.type}' is not supported here; send input_text parts")
        if self.type == "refusal" and self.refusal is None:
            raise ValueError("a refusal part needs 'refusal'")
        if self.type != "refusal" and self.text is None:
            raise ValueError(f"a {self.type} part needs 'text'")
        return self


class MessageItem(_Open):
    type: Literal["message"] = "message"
    id: str | None = None
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[InputContentPart]
    status: str | None = None


class FunctionCallItem(_Open):
    type: Literal["function_call"]
    id: str | None = None
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str
    status: str | None = None


class FunctionCallOutputItem(_Open):
    type: Literal["function_call_output"]
    id: str | None = None
    call_id: str = Field(min_length=1)
    output: str | list[InputContentPart]
    status: str | None = None


def _item_kind(item: Any) -> str:
    if isinstance(item, dict):
        kind = item.get("type", "message" if "role" in item else None)
        return kind if kind in INPUT_ITEM_TYPES else "unsupported"
    return kind if (kind := getattr(item, "type", None)) in INPUT_ITEM_TYPES else "unsupported"


class UnsupportedItem(_Open):
    type: str | None = None

    @model_validator(mode="after")
    def _refuse(self) -> "UnsupportedItem":
        what = f"type '{self.type}'" if self.type else "without 'type' or 'role'"
        raise ValueError(f"input item {what} is not supported; send {', '.join(INPUT_ITEM_TYPES)} items")


InputItem = Annotated[
    Union[Annotated[MessageItem, Tag("message")], Annotated[FunctionCallItem, Tag("function_call")],
          Annotated[FunctionCallOutputItem, Tag("function_call_output")],
          Annotated[UnsupportedItem, Tag("unsupported")]],
    Discriminator(_item_kind),
]


class FunctionTool(FunctionDefinition):
    """A Responses function tool: the chat definition, flat, with ``type``."""

    type: Literal["function"]


class HostedTool(_Open):
    """A provider's own tool (web search, file search, …): served only by a backend that
    speaks the Responses API (``api: responses``); the chat translation refuses it."""

    type: str


Tool = Annotated[
    Union[Annotated[FunctionTool, Tag("function")], Annotated[HostedTool, Tag("hosted")]],
    Discriminator(lambda t: "function" if (t.get("type") if isinstance(t, dict) else t.type) == "function"
                  else "hosted"),
]


class FunctionChoice(_Open):
    type: Literal["function"]
    name: str


class TextFormat(JsonSchemaFormat):
    """``text.format``: chat's ``json_schema`` fields, flat, with the ``type`` beside them."""

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> "TextFormat":
        if self.type == "json_schema" and self.schema_ is None:
            raise ValueError("text.format of type 'json_schema' needs 'schema'")
        return self


class TextConfig(_Open):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ResponsesRequest(_Open):
    model: str
    input: str | list[InputItem] = Field(min_length=1)
    instructions: str | None = None
    previous_response_id: str | None = None
    store: bool = True
    stream: bool = False
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | FunctionChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    include: list[str] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    background: bool | None = None
    conversation: Any = None
    prompt: Any = None

    @field_validator("background")
    @classmethod
    def _no_background(cls, value: bool | None) -> bool | None:
        if value:
            raise ValueError("background responses are not supported; send the request and wait, or stream it")
        return value

    @field_validator("conversation", "prompt")
    @classmethod
    def _not_served(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("not supported by this gateway (use previous_response_id to chain turns)")
        return value

    @model_validator(mode="after")
    def _tool_choice_needs_tools(self) -> "ResponsesRequest":
        names = {tool.name for tool in self.function_tools()}
        if isinstance(self.tool_choice, FunctionChoice) and self.tool_choice.name not in names:
            raise ValueError(f"tool_choice names '{self.tool_choice.name}', which is not in 'tools'")
        if self.tool_choice == "required" and not names:
            raise ValueError("tool_choice 'required' needs 'tools'")
        return self

    def function_tools(self) -> list[FunctionTool]:
        return [tool for tool in self.tools or [] if isinstance(tool, FunctionTool)]

    def hosted_tools(self) -> list[tuple[int, HostedTool]]:
        """(index in ``tools``, tool) of every non-function tool."""
        return [(i, tool) for i, tool in enumerate(self.tools or []) if isinstance(tool, HostedTool)]

    def items(self) -> list[MessageItem | FunctionCallItem | FunctionCallOutputItem]:
        if isinstance(self.input, str):
            return [MessageItem(role="user", content=self.input)]
        return list(self.input)
