"""Structured payload models (the timeline) published in the OpenAPI document.

Job payloads and clip-version timelines are checked by the graphs' own models (so errors carry
nested paths), which Litestar cannot see: the handlers take plain JSON objects. Here each
payload model a graph declares is added to ``components.schemas`` with its pydantic JSON
Schema, and the clip-version body's ``timeline`` points at it, so a client generator gets the
whole timeline type.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.openapi.spec import Reference

from scheduler.graphs import GraphCatalog

__all__ = ["publish_payload_models"]

_REF = "#/components/schemas/{model}"


def publish_payload_models(app: Litestar, catalog: GraphCatalog) -> None:
    document = app.openapi_schema
    if document.components is None or document.components.schemas is None:
        return
    schemas: dict[str, Any] = document.components.schemas  # type: ignore[assignment]
    for graph in catalog.graphs.values():
        for model in graph.input_models.values():
            schema = model.model_json_schema(by_alias=True, ref_template=_REF)
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
    body = schemas.get("ClipVersionCreate")
    if body is not None and "Timeline" in schemas and body.properties:
        body.properties["timeline"] = Reference(ref=_REF.format(model="Timeline"))
