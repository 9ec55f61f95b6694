"""``<JobType>Outputs``: what ``result_payload.outputs`` holds for each job type, in the OpenAPI document.

Made from the graphs (:func:`pipelines.output_types.output_types`: each output's operator return
type) with pydantic's JSON Schema. A file an operator stored is published as an asset, so it is an
``Asset`` here; a proposed clip version is published as its id. ``ResultPayload.outputs`` is one of
them (``anyOf``: the job's ``job_type`` says which).
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from pipelines.output_types import output_types
from scheduler.admission.graphs import GraphCatalog

__all__ = ["outputs_schema_name", "publish_output_schemas"]

_REF = "#/components/schemas/{model}"
#: Operator values that the dispatcher publishes as something else.
_PUBLISHED_AS: dict[str, dict[str, Any]] = {
    "StoredFile": {"$ref": _REF.format(model="Asset")},
    "NewClipVersion": {"type": "string", "description": "The id of the clip version the job made (cv_…)"},
}


def outputs_schema_name(job_type: str) -> str:
    """``generate_clip`` -> ``GenerateClipOutputs``."""
    return "".join(part.capitalize() for part in job_type.split("_")) + "Outputs"


def _published(value: Any) -> Any:
    """``value`` with references to what is published as something else replaced by what it becomes."""
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.rsplit("/", 1)[-1] in _PUBLISHED_AS:
            return dict(_PUBLISHED_AS[ref.rsplit("/", 1)[-1]])
        return {k: _published(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_published(v) for v in value]
    return value


def _schema(annotation: Any, schemas: dict[str, Any]) -> dict[str, Any]:
    try:
        # As a list's items: a model at the root is then a $ref, like one anywhere else.
        schema = TypeAdapter(list[annotation]).json_schema(ref_template=_REF, mode="serialization")
    except Exception:  # noqa: BLE001  (a type pydantic cannot describe: any value)
        return {}
    for name, definition in schema.pop("$defs", {}).items():
        if name not in _PUBLISHED_AS:
            schemas.setdefault(name, _published(definition))
    return _published(schema.get("items", {}))  # type: ignore[no-any-return]


def publish_output_schemas(catalog: GraphCatalog, schemas: dict[str, Any]) -> None:
    """Add each job type's ``<JobType>Outputs``, and point ``ResultPayload.outputs`` at them."""
    names = []
    for job_type, graph in sorted(catalog.graphs.items()):
        properties = {name: _schema(annotation, schemas) for name, annotation in output_types(graph).items()}
        names.append(outputs_schema_name(job_type))
        schemas[names[-1]] = {
            "type": "object", "title": names[-1], "properties": properties, "required": sorted(properties),
            "description": f"result_payload.outputs of a completed {job_type} job (the graph's outputs)"}
    payload = schemas.get("ResultPayload")
    properties = getattr(payload, "properties", None)
    if properties is not None and "outputs" in properties:
        properties["outputs"] = {  # type: ignore[assignment]
            "anyOf": [{"$ref": _REF.format(model=n)} for n in names],
            "description": "The job's outputs, once it completed: the <JobType>Outputs of its job_type"}
    _clip_version_entries(catalog, schemas)


def _clip_version_entries(catalog: GraphCatalog, schemas: dict[str, Any]) -> None:
    """``ClipVersion.renders`` / ``exports``: entries of the job types that append there, each ``{job_id,
    created_at, outputs}`` with the outputs the graph's ``clip_version:`` names, typed as in its Outputs."""
    entries: dict[str, list[dict[str, Any]]] = {"renders": [], "exports": []}
    for job_type, graph in sorted(catalog.graphs.items()):
        spec = graph.spec.clip_version
        if spec is None:
            continue
        typed = schemas[outputs_schema_name(job_type)]["properties"]
        entries[spec.append].append({
            "type": "object", "required": ["job_id", "created_at", "outputs"],
            "description": f"What one {job_type} job of this clip version made",
            "properties": {"job_id": {"type": "string"}, "created_at": {"type": "string", "format": "date-time"},
                           "outputs": {"type": "object", "properties": {n: typed.get(n, {}) for n in spec.outputs}}}})
    record = getattr(schemas.get("ClipVersion"), "properties", None)
    if record is None:
        return
    for field, kinds in entries.items():
        if kinds and field in record:
            record[field] = {"type": "array", "items": kinds[0] if len(kinds) == 1 else {"anyOf": kinds}}
