"""Submitting jobs: check the job type and payload against its graph, then enqueue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from operators.storage import Storage
from operators.types import SourceRef
from pipelines.graph import Graph
from pipelines.payload import BoundPayload, bind_payload
from scheduler.assets import AssetStore
from scheduler.graphs import GraphCatalog
from scheduler.sources import resolve_source
from scheduler.store import JobStore

__all__ = ["BoundJob", "JobService"]


@dataclass(frozen=True, slots=True)
class BoundJob:
    graph: Graph
    bound: BoundPayload
    sources: dict[str, SourceRef]

    @property
    def values(self) -> dict[str, Any]:
        return {**self.bound.values, **self.sources}


@dataclass(frozen=True, slots=True)
class JobService:
    store: JobStore
    assets: AssetStore
    catalog: GraphCatalog
    storage: Storage

    async def bind(self, job_type: str, payload: dict[str, Any]) -> BoundJob:
        """Everything a job needs to run, or a named error (UnknownJobType, Payload, Source)."""
        graph = self.catalog.get(job_type)
        bound = bind_payload(graph, payload)
        sources = {
            name: await resolve_source(request, self.storage, self.assets) for name, request in bound.sources.items()
        }
        return BoundJob(graph=graph, bound=bound, sources=sources)

    async def submit(self, job_type: str, payload: dict[str, Any], *, priority: int = 0,
                     clip_version_id: str | None = None) -> dict[str, Any]:
        """Validate and enqueue; the record keeps the payload as the client sent it."""
        await self.bind(job_type, payload)
        return await self.store.create(job_type, payload, priority=priority, clip_version_id=clip_version_id)
