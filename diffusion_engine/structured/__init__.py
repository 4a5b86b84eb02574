"""Structured outputs: JSON Schema → skeleton canvas with typed slots (diffusion) and
llguidance-constrained decoding (AR fallback). See compiler.py, decode.py, ar_constraint.py."""

from .compiler import CompileOptions, compile_schema, schema_digest
from .errors import (
    OutputTruncatedError, SchemaTooLargeError, StructuredOutputError, UnsatisfiableSchemaError,
    UnsupportedSchemaError,
)
from .layout import CanvasLayout, layout_for

__all__ = [
    "CanvasLayout", "CompileOptions", "OutputTruncatedError", "SchemaTooLargeError",
    "StructuredOutputError", "UnsatisfiableSchemaError", "UnsupportedSchemaError", "compile_schema", "layout_for",
    "schema_digest",
]
