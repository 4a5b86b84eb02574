"""Request bodies in the OpenAPI document, from the wire models the server validates with.

Handlers read their bodies themselves (auth and size limits come before parsing), so
FastAPI cannot infer the bodies; each endpoint names its model here instead, and the
document carries that model's JSON Schema: what schema-driven tools and fuzzers need.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

_REF = "#/components/schemas/{model}"


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route whose JSON body is ``model``."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": _REF.format(model=model.__name__)}}}}}


def install_bodies(app: FastAPI, models: list[type[BaseModel]]) -> None:
    """Add ``models`` (and every model they use) to the document's components."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            _, schemas = models_json_schema([(model, "validation") for model in models], ref_template=_REF)
            document.setdefault("components", {}).setdefault("schemas", {}).update(schemas.get("$defs", {}))
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi
