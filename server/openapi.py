"""The OpenAPI document, exact enough for a client generator and for Schemathesis ``--checks all``.

Handlers declare their answers with :func:`responses` (the success model and every error status they
can give, each with the ``{"detail"}`` schema). :func:`finish_openapi` then does what a decorator
cannot, once the graphs are loaded and the settings known:

- ``JobType``, an enum of the loaded graphs' names, for the record's ``job_type`` and the
  ``job_type`` parameters (``JobStatus`` for ``status``);
- the payload models the graphs declare (the timeline), in ``components.schemas``, and the clip-version
  body's ``timeline`` pointing at it;
- ``401`` on every operation but the public ones, and the bearer security scheme, when tokens are
  configured; ``413`` wherever a body is read;
- the upload's request body (raw bytes, or ``multipart/form-data`` with ``file``), which the handler
  streams itself and so does not declare;
- Litestar's generated ``400`` (a schema requiring ``status_code``, never sent) replaced with ours.

Only the ``/v1/`` routes are in the document: the unprefixed ones answer the same, for the reference's
clients, but a generated client should use the stable prefix.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import (
    Components,
    Link,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.openapi.spec.enums import OpenAPIType

from scheduler.admission.graphs import GraphCatalog
from server.op_docs import DOCUMENT, describe
from server.output_schemas import publish_output_schemas
from server.schemas import ErrorDetail

__all__ = ["ERROR_DESCRIPTIONS", "finish_openapi", "publish_payload_models", "responses"]

_REF = "#/components/schemas/{model}"

ERROR_DESCRIPTIONS = {
    400: "Malformed request: a body that is not JSON, or a broken multipart body",
    401: "Missing or wrong bearer token (only when the server has API tokens)",
    404: "Not found",
    409: "Conflicts with the resource's state",
    413: "Request body over the limit (MAX_JSON_BYTES, or MAX_UPLOAD_BYTES for uploads)",
    416: "Range not satisfiable",
    422: "Invalid parameters or payload: the detail lists each problem with its location",
    503: "Redis is unreachable",
}


def responses(status: int | None = None, model: Any = None, *errors: int, description: str = "",
              media_type: str = "application/json") -> dict[int, ResponseSpec]:
    """``responses=`` for a handler: its success answer (``model`` at ``status``) and its error statuses."""
    found: dict[int, ResponseSpec] = {}
    if status is not None and model is not None:
        found[status] = ResponseSpec(model, description=description or "OK", generate_examples=False,
                                     media_type=media_type)
    for code in errors:
        found[code] = ResponseSpec(ErrorDetail, description=ERROR_DESCRIPTIONS[code], generate_examples=False)
    return found


def publish_payload_models(app: Litestar, catalog: GraphCatalog) -> None:
    """Each payload model a graph declares (the timeline), with its pydantic JSON Schema."""
    document = app.openapi_schema
    if document.components is None or document.components.schemas is None:
        return
    schemas: dict[str, Any] = document.components.schemas  # type: ignore[assignment]
    for graph in catalog.graphs.values():
        for model in graph.input_models.values():
            schema = model.model_json_schema(by_alias=True, ref_template=_REF)
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
    for job_type, graph in catalog.graphs.items():
        schemas[payload_schema_name(job_type)] = _payload_schema(graph, schemas)
    publish_output_schemas(catalog, schemas)
    # The clip version's timeline, sent and read back (stored as checked: the same model).
    for name in ("ClipVersionCreate", "ClipVersion"):
        body = schemas.get(name)
        if body is not None and "Timeline" in schemas and body.properties:
            body.properties["timeline"] = Reference(ref=_REF.format(model="Timeline"))


def payload_schema_name(job_type: str) -> str:
    """``generate_clip`` -> ``GenerateClipPayload``."""
    return "".join(part.capitalize() for part in job_type.split("_")) + "Payload"


def _payload_schema(graph: Any, schemas: dict[str, Any]) -> dict[str, Any]:
    """A job type's payload as its graph declares it: each input with its type, default and description, payload
    models by reference, a source as source_uri / source_asset_id. Other keys are allowed, as the server keeps
    them (the reference's "arbitrary configuration": a client's own metadata), except one close to an input's
    name, which is a 422 with "did you mean" (a rule no schema can state)."""
    from pipelines.payload import payload_fields

    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, spec in graph.spec.inputs.items():
        if spec.type == "source":
            text = spec.description or "The source"
            properties["source_uri"] = {"type": "string", "description": f"{text}: a path under the media root"}
            properties["source_asset_id"] = {"type": "string", "description": f"{text}: an asset id"}
            continue
        if name in graph.input_models:
            model = graph.input_models[name]
            ref: dict[str, Any] = {"$ref": _REF.format(model=model.__name__)}
            properties[name] = {"anyOf": [ref, {"type": "null"}]} if spec.nullable else ref
        else:
            properties[name] = payload_fields(graph)[name]
        if spec.description:
            properties[name] = {**properties[name], "description": spec.description}
        if spec.is_required and not spec.from_clip_version:
            required.append(name)
    schema: dict[str, Any] = {"type": "object", "title": payload_schema_name(graph.name), "properties": properties,
                              "additionalProperties": True,
                              "description": " ".join(str(graph.spec.description or graph.name).split())}
    if required:
        schema["required"] = required
    return schema


def _job_body(catalog: GraphCatalog) -> RequestBody:
    return RequestBody(required=True, description=(
        "The job's payload: the body is the payload itself (no wrapper). Its shape is the job type's graph "
        "inputs (one of these, by the job_type query parameter); other keys are kept as the client's own metadata, "
        "except one close to an input's name, which is a 422 with 'did you mean'."),
        content={"application/json": OpenAPIMediaType(schema=Schema(any_of=[  # type: ignore[arg-type]
            Reference(ref=_REF.format(model=payload_schema_name(job_type))) for job_type in sorted(catalog.graphs)]))})


def _error_response(code: int) -> OpenAPIResponse:
    headers = None
    if code == 401:
        headers = {"WWW-Authenticate": OpenAPIHeader(schema=Schema(type=OpenAPIType.STRING),
                                                     description="Bearer (the scheme to authenticate with)")}
    return OpenAPIResponse(
        description=ERROR_DESCRIPTIONS.get(code, "Error"),
        content={"application/json": OpenAPIMediaType(schema=Reference(ref=_REF.format(model="ErrorDetail")))},
        headers=headers,
    )


def _upload_body() -> RequestBody:
    binary = Schema(type=OpenAPIType.STRING, format="binary")  # type: ignore[arg-type]
    return RequestBody(
        required=True,
        description="The file: the raw body (any media type; Content-Type gives the asset's type), or "
                    "multipart/form-data with the file in the field 'file'. Streamed to storage, at most "
                    "MAX_UPLOAD_BYTES.",
        content={
            "application/octet-stream": OpenAPIMediaType(schema=Schema(
                type=OpenAPIType.STRING, format="binary", min_length=1)),  # type: ignore[arg-type]
            "multipart/form-data": OpenAPIMediaType(schema=Schema(
                type=OpenAPIType.OBJECT, required=["file"], properties={"file": binary})),
        },
    )


#: What a creating operation's answer leads to: (operation, its status, the path parameter its id fills, targets).
_LINKS = (
    ("createJob", "202", "job_id", ("getJob", "cancelJob", "jobEvents", "listJobWebhooks", "replayJobWebhook")),
    ("uploadAsset", "201", "asset_id", ("getAsset", "getAssetContent", "getPackageFile")),
    ("createClipVersion", "201", "cv_id", ("getClipVersion",)),
)


def _add_links(operations: dict[str, Any]) -> None:
    """OpenAPI links from each created resource's ``id`` to the operations that read it."""
    for source, status, parameter, targets in _LINKS:
        operation = operations.get(source)
        answer = (operation.responses or {}).get(status) if operation is not None else None
        if not isinstance(answer, OpenAPIResponse):
            continue
        answer.links = {
            target: Link(operation_id=target, parameters={parameter: "$response.body#/id"},
                         description=f"The created resource's id as {parameter}")
            for target in targets if target in operations
        }


_BINARY_TYPES = ("application/octet-stream", "video/*", "audio/*", "image/*", "text/*", "application/*")


def _binary_answers(operation: Any) -> None:
    """The file's bytes: ``format: binary`` (a generated client reads a blob, never JSON or text)."""
    for code in ("200", "206"):
        answer = (operation.responses or {}).get(code)
        if isinstance(answer, OpenAPIResponse) and answer.content:
            # application/octet-stream first (what generators read as a file), then the families an asset's
            # own Content-Type comes from (video/mp4, image/png, application/vnd.apple.mpegurl, ...).
            answer.content = {media: OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING, format="binary"))
                              for media in _BINARY_TYPES}
            answer.headers = {name: OpenAPIHeader(schema=Schema(type=OpenAPIType.STRING), description=text)
                              for name, text in (("Content-Range", "Which bytes (206): bytes first-last/total"),
                                                 ("Accept-Ranges", "bytes"), ("ETag", "The file's version"))}


def _next_page_header(operation: Any) -> None:
    answer = (operation.responses or {}).get("200")
    if isinstance(answer, OpenAPIResponse):
        answer.headers = {"Link": OpenAPIHeader(schema=Schema(type=OpenAPIType.STRING), description=(
            'The next page, when there is one: <URL with cursor=...>; rel="next"'))}


def _sse_events(operation: Any) -> None:
    """Each server-sent event of ``/jobs/{id}/events``: ``id`` (the job's change count) and ``data``, the job
    record as JSON (the same as ``GET /jobs/{id}``)."""
    answer = (operation.responses or {}).get("200")
    if not isinstance(answer, OpenAPIResponse) or not answer.content:
        return
    event = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "id": {"type": "string", "pattern": "^[0-9]+$", "description": "The job's change count"},
            "event": {"type": "string", "enum": ["message"]},
            "data": {"type": "string", "contentMediaType": "application/json",
                     "contentSchema": {"$ref": _REF.format(model="JobRecord")},
                     "description": "The job record, as GET /jobs/{job_id} answers it"},
            "retry": {"type": "integer", "description": "Reconnection delay (ms), sent first"},
        },
    }
    answer.content = {"text/event-stream": OpenAPIMediaType(schema=event)}  # type: ignore[arg-type]


def _exactly_one(schema: Any, fields: tuple[str, ...]) -> None:
    """A body that takes exactly one of ``fields`` (each a string, never null) says so with ``oneOf``."""
    if not isinstance(schema, Schema) or not schema.properties:
        return
    for name in fields:
        field = schema.properties.get(name)
        if isinstance(field, Schema) and field.one_of:
            text = next((s for s in field.one_of if isinstance(s, Schema) and s.type == OpenAPIType.STRING), None)
            if text is not None:
                text.description, text.min_length, text.max_length = (field.description, field.min_length,
                                                                      field.max_length)
                schema.properties[name] = text
    schema.one_of = [Schema(required=[name]) for name in fields]


def finish_openapi(app: Litestar, catalog: GraphCatalog, *, auth: bool, public_operations: set[str]) -> None:
    """Complete the document (see the module's docstring)."""
    publish_payload_models(app, catalog)
    document = app.openapi_schema
    if document.components is None:
        document.components = Components()
    if document.components.schemas is None:
        document.components.schemas = {}
    schemas: dict[str, Any] = document.components.schemas  # type: ignore[assignment]
    job_types = sorted(catalog.graphs)
    schemas["JobType"] = Schema(type=OpenAPIType.STRING, enum=job_types,  # type: ignore[arg-type]
                                description="The job types of the graphs this server has loaded")
    record = schemas.get("JobRecord")
    if isinstance(record, Schema) and record.properties:
        record.properties["job_type"] = Reference(ref=_REF.format(model="JobType"))
    _exactly_one(schemas.get("SignedUrlRequest"), ("asset_id", "job_id"))
    if auth:
        document.components.security_schemes = {
            "bearer": SecurityScheme(type="http", scheme="bearer",
                                     description="A token of API_TOKENS / API_TOKENS_FILE"),
        }
        document.security = [{"bearer": []}]
    operations: dict[str, Any] = {}
    for path, item in (document.paths or {}).items():
        for method in ("get", "put", "post", "delete", "patch", "head"):
            operation = getattr(item, method, None)
            if operation is None:
                continue
            operations[operation.operation_id] = operation
            public = operation.operation_id in public_operations
            for parameter in operation.parameters or []:
                name = getattr(parameter, "name", None)
                if name == "job_type":
                    parameter.schema = Reference(ref=_REF.format(model="JobType"))
                elif name == "status":
                    parameter.schema = Reference(ref=_REF.format(model="JobStatus"))
            if operation.operation_id == "uploadAsset":
                operation.request_body = _upload_body()
            if operation.operation_id == "createJob":
                operation.request_body = _job_body(catalog)
            if operation.operation_id == "jobEvents":
                _sse_events(operation)
            if operation.operation_id in ("getAssetContent", "getPackageFile"):
                _binary_answers(operation)
            if operation.operation_id in ("listJobs", "listAssets"):
                _next_page_header(operation)
            answers = operation.responses or {}
            for code in list(answers):
                if code.isdigit() and int(code) >= 400:
                    answers[code] = _error_response(int(code))
            if auth and not public:
                answers["401"] = _error_response(401)
            if operation.request_body is not None:
                answers.setdefault("413", _error_response(413))
            if auth and public:
                operation.security = []
            operation.responses = answers
    _add_links(operations)
    describe(operations)
    document.info.description = DOCUMENT
