"""``/clip-versions/``: save a timeline as a new, immutable version of a clip; read and list versions."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, delete, get, post
from litestar.di import Provide
from litestar.params import Parameter
from pydantic import BaseModel, ConfigDict, Field

from scheduler.records.clip_versions import ClipNotFoundError, ClipVersionStore
from scheduler.admission.service import JobService
from scheduler.records.jobs import JobStore
from server.deps import provide_clip_versions, provide_service, provide_store
from server.errors import refuse_while_used, unprocessable
from server.openapi import responses
from server.schemas import ClipVersion

__all__ = ["ClipVersionController", "ClipVersionCreate"]

_ID_PATTERN = r"^[^/\\\x00-\x1f\x7f]+$"


class ClipVersionCreate(BaseModel):
    """The body of ``POST /clip-versions/``. Without ``clip_id`` a new clip starts at version 1."""

    model_config = ConfigDict(extra="forbid")

    project_id: str = Field(min_length=1, max_length=200, pattern=_ID_PATTERN)
    clip_id: str | None = Field(None, min_length=1, max_length=200)
    name: str | None = Field(None, max_length=500)
    timeline: dict[str, Any]
    metadata: dict[str, Any] = Field(default_factory=dict)


class ClipVersionController(Controller):
    path = "/clip-versions"
    tags = ["clip-versions"]
    dependencies = {
        "service": Provide(provide_service, sync_to_thread=False),
        "clip_versions": Provide(provide_clip_versions, sync_to_thread=False),
        "store": Provide(provide_store, sync_to_thread=False),
    }

    @post("/", status_code=201, summary="Save a timeline as a new clip version", operation_id="createClipVersion",
          responses=responses(201, ClipVersion, 400, 422, 503, description="The new clip version"))
    async def create_clip_version(self, service: JobService, clip_versions: ClipVersionStore,
                                  data: ClipVersionCreate) -> dict[str, Any]:
        """The timeline is checked (its assets must exist in the project) and stored normalised."""
        timeline = await service.check_timeline(data.project_id, data.timeline)
        try:
            return await clip_versions.create(project_id=data.project_id, timeline=timeline, clip_id=data.clip_id,
                                              name=data.name, metadata=data.metadata)
        except ClipNotFoundError as exc:
            raise unprocessable(["body", "clip_id"], str(exc)) from None

    @get("/", summary="List clip versions, newest first", operation_id="listClipVersions",
         responses=responses(200, list[ClipVersion], 422, 503, description="Clip versions, newest first"))
    async def list_clip_versions(
        self,
        clip_versions: ClipVersionStore,
        project_id: str | None = None,
        clip_id: str | None = None,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
    ) -> list[dict[str, Any]]:
        return await clip_versions.list(project_id=project_id, clip_id=clip_id, limit=limit)

    @delete("/{cv_id:str}", status_code=204, summary="Delete a clip version (its renders' assets stay)",
            operation_id="deleteClipVersion", responses=responses(None, None, 404, 409, 503))
    async def delete_clip_version(self, clip_versions: ClipVersionStore, store: JobStore, cv_id: str) -> None:
        """409 while a job that has not finished renders or exports it."""
        await clip_versions.get(cv_id)
        await refuse_while_used(store, cv_id, f"Clip version {cv_id}")
        await clip_versions.delete(cv_id)

    @get("/{cv_id:str}", summary="A clip version", operation_id="getClipVersion",
         responses=responses(200, ClipVersion, 404, 503, description="The clip version"))
    async def get_clip_version(self, clip_versions: ClipVersionStore, cv_id: str) -> dict[str, Any]:
        return await clip_versions.get(cv_id)
