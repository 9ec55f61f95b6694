"""Response models for the OpenAPI document (msgspec Structs): the exact shape of each answer.

The handlers build their answers as plain dicts (the job record is assembled straight from Redis, in
the reference's field order); these Structs say what those dicts hold, field for field, and
``server/openapi.py`` puts them in ``components.schemas``. ``tests/test_openapi_fuzz.py`` checks every
answer of a live server against them with Schemathesis. Fields a record has only sometimes are
``UNSET`` here (optional, never null unless the union says so).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from msgspec import UNSET, Struct, UnsetType

from scheduler.records.jobs import STATUSES

__all__ = [
    "CacheCleared",
    "Asset",
    "ClipVersion",
    "Diagnostics",
    "ErrorDetail",
    "Graph",
    "GraphDetail",
    "Health",
    "JobRecord",
    "JobStatus",
    "LogEntry",
    "ResultPayload",
    "UploadedAsset",
    "ValidationErrorItem",
    "WebhookDelivery",
    "WebhookListing",
]

JobStatus = Enum("JobStatus", {s: s for s in STATUSES}, type=str)  # type: ignore[misc]
JobStatus.__doc__ = "pending → queued → in_progress → completed / failed / cancelled"


class ValidationErrorItem(Struct, kw_only=True):
    """One problem with the request: where (``["body", "timeline", "tracks", 0]``), what, and its kind."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorDetail(Struct, kw_only=True):
    """Every error: ``{"detail": "Job X not found"}``, or for a 422 the list of problems."""

    detail: str | list[ValidationErrorItem]


class Health(Struct, kw_only=True):
    status: str
    app: str
    environment: str


class Diagnostics(Struct, kw_only=True):
    status: str
    app: str
    environment: str
    queue: dict[str, Any]
    cluster: dict[str, Any]
    #: This process's dispatcher, when it runs one: its background loops (``running``, or ``restarting: <error>``
    #: while one is down) and the phase history of each job it runs.
    dispatcher: dict[str, Any] | None = None


class LogEntry(Struct, kw_only=True):
    timestamp: str
    message: str


class ResultPayload(Struct, kw_only=True):
    """Progress, the ETA and the log while the job runs; its outputs once it completes."""

    progress: float
    eta_seconds: float | None
    log: list[LogEntry]
    outputs: dict[str, Any] | UnsetType = UNSET
    chained_jobs: dict[str, Any] | UnsetType = UNSET


class JobRecord(Struct, kw_only=True):
    """A job, exactly as the API reference documents it (``job_type``: the loaded graphs, see JobType)."""

    id: str
    created_at: str
    updated_at: str
    clip_version_id: str | None
    job_type: str
    status: JobStatus
    queue_name: str
    priority: int
    payload: dict[str, Any]
    result_payload: ResultPayload | None
    error_message: str | None
    started_at: str | None
    completed_at: str | None


class UploadedAsset(Struct, kw_only=True):
    """The answer to an upload."""

    id: str
    project_id: str
    filename: str
    content_type: str
    size: int
    sha256: str
    created_at: str
    kind: str


class Asset(Struct, kw_only=True):
    """An asset: an uploaded source or a job's output; ``url`` downloads its bytes."""

    id: str
    project_id: str | None
    filename: str
    content_type: str
    size: int
    sha256: str | None
    created_at: str
    kind: str
    job_id: str | None
    url: str
    meta: dict[str, Any] | UnsetType = UNSET
    derived_from: list[str] | UnsetType = UNSET
    media_info: dict[str, Any] | UnsetType = UNSET
    width: int | None | UnsetType = UNSET
    height: int | None | UnsetType = UNSET
    duration: float | None | UnsetType = UNSET


class GraphNode(Struct, kw_only=True):
    op: str
    map: str | None
    deps: list[str]


class Graph(Struct, kw_only=True):
    """A job type: its inputs (the payload it takes), nodes and outputs."""

    name: str
    description: str
    inputs: dict[str, dict[str, Any]]
    nodes: dict[str, GraphNode]
    outputs: list[str]
    clip_version: dict[str, Any] | UnsetType = UNSET


class GraphDetail(Graph, kw_only=True):
    """A job type with its DAG (layers, edges) and a Mermaid flowchart of it."""

    dag: dict[str, Any]
    mermaid: str


class ClipVersion(Struct, kw_only=True):
    """An immutable timeline over a project's assets, version ``version`` of clip ``clip_id``."""

    id: str
    clip_id: str
    version: int
    project_id: str
    name: str | None
    timeline: dict[str, Any]
    metadata: dict[str, Any]
    renders: list[dict[str, Any]]
    exports: list[dict[str, Any]]
    created_at: str
    updated_at: str


class WebhookDelivery(Struct, kw_only=True):
    id: str | None
    event: str | None
    url: str | None
    state: str | None
    replay: bool
    attempts: int
    created_at: str | None
    last_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: str | None


class WebhookListing(Struct, kw_only=True):
    job_id: str
    callback_url: str | None
    deliveries: list[WebhookDelivery]
    attempts: list[dict[str, Any]]


class CacheCleared(Struct, kw_only=True):
    """What ``DELETE /cache`` removed: entries forgotten, their bytes, files deleted from the media store."""

    entries: int
    bytes: int
    files: int
