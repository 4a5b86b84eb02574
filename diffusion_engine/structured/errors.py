"""Errors of the structured-output path; each one says what to change."""

from __future__ import annotations


class UnsupportedSchemaError(ValueError):
    """The schema uses something the skeleton compiler cannot honour.

    The gateway maps this to HTTP 400; ``keyword`` and ``pointer`` (a JSON pointer into
    the request's schema) tell the client exactly what to remove or rewrite.
    """

    def __init__(self, keyword: str, pointer: str, detail: str = "") -> None:
        self.keyword = keyword
        self.pointer = pointer or "/"
        self.detail = detail
        msg = f"unsupported keyword '{keyword}' at {self.pointer}"
        if detail:
            msg += f": {detail}"
        super().__init__(msg)


class UnsatisfiableSchemaError(UnsupportedSchemaError):
    """No JSON value satisfies this part of the schema (e.g. string enum with type object).

    The compiler drops such a part where the schema allows (optional property, anyOf branch,
    array element beyond minItems) and raises this otherwise.
    """


class SchemaTooLargeError(UnsupportedSchemaError):
    """The laid-out skeleton would exceed the canvas budget."""

    def __init__(self, pointer: str, size: int, limit: int) -> None:
        super().__init__(
            "maxItems",
            pointer,
            f"the skeleton needs {size} canvas tokens, more than the limit {limit}; "
            "lower maxItems / maxLength or flatten the schema",
        )
        self.size = size
        self.limit = limit


class StructuredOutputError(RuntimeError):
    """No schema-valid document could be produced (after refills and repair).

    Raised instead of ever handing invalid JSON to a caller.
    """

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        self.errors = list(errors or [])
        super().__init__(message)


class OutputTruncatedError(StructuredOutputError):
    """AR constrained decoding hit ``max_tokens`` before the JSON document closed."""

    def __init__(self, partial_text: str, max_tokens: int) -> None:
        super().__init__(
            f"max_tokens={max_tokens} reached before the JSON document was complete; "
            "raise max_tokens or simplify the schema"
        )
        self.partial_text = partial_text
        self.max_tokens = max_tokens
