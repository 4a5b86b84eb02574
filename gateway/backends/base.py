"""The one interface every backend implements, and the error it raises.

A backend takes a chat request's plan (``router.plan.RequestPlan``: validated, with the
route's parameters applied; providers forward its ``body``, the embedded models read its
fields) and returns an OpenAI ``chat.completion`` dict, or an async
iterator of ``chat.completion.chunk`` dicts. The gateway sets the response ``model``
and headers; backends only generate.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, AsyncIterator

from router.plan import RequestPlan
from router.policy import BackendSpec


class BackendError(Exception):
    """A backend failed; the fields decide whether a fallback applies."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        timeout: bool = False,
        connection: bool = False,
        client_error: bool = False,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        #: Tandem's own words: safe to log and to show a client
        self.message = message
        #: the upstream's own error text: may hold anything, shown only where the policy allows
        self.detail = detail
        self.status = status
        self.timeout = timeout
        self.connection = connection
        #: the request itself is wrong (4xx): pass to the client, never fall back
        self.client_error = client_error

    @property
    def reason(self) -> str:
        if self.timeout:
            return "timeout"
        if self.connection:
            return "connection"
        return str(self.status) if self.status else "error"


class Backend(ABC):
    def __init__(self, spec: BackendSpec) -> None:
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def ready(self) -> bool:
        """False while a local model is still loading."""
        return True

    def warmup(self) -> None:
        """Load whatever the backend needs (blocking; called off the event loop)."""

    #: True for the embedded models: the router's tool-use decision binds them (providers
    #: decide tool use themselves and get the request as the client sent it)
    follows_tool_use: bool = False

    @abstractmethod
    async def complete(self, request: RequestPlan) -> dict[str, Any]: ...

    @abstractmethod
    def stream(self, request: RequestPlan) -> AsyncIterator[dict[str, Any]]: ...

    @property
    def speaks_responses(self) -> bool:
        """The upstream takes Responses API requests (``api: responses`` in the policy)."""
        return self.spec.api == "responses"

    async def respond(self, body: dict[str, Any]) -> dict[str, Any]:
        """A Responses API request as it is → the upstream's ``response`` object."""
        raise BackendError(f"{self.name}: does not speak the Responses API", status=501)

    def respond_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """A Responses API request as it is → the upstream's stream events."""
        raise BackendError(f"{self.name}: does not speak the Responses API", status=501)

    async def aclose(self) -> None:
        """Release connections."""


def upstream_model(model: str) -> str:
    """``openai/gpt-4o-mini`` → ``gpt-4o-mini`` (the name the upstream server knows)."""
    return model.split("/", 1)[1] if "/" in model else model
