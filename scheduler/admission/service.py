"""Submitting jobs: check the job type and payload against its graph, then enqueue."""

from __future__ import annotations

import functools
from graphlib import CycleError, TopologicalSorter
from dataclasses import dataclass, field
from typing import Any

from anyio import to_thread

from operators.storage import Storage
from operators.types import SourceRef
from pipelines.errors import PayloadError
from pipelines.graph import Graph
from pipelines.payload import BoundPayload, bind_payload
from scheduler.records.assets import AssetStore
from scheduler.records.clip_versions import ClipVersionNotFoundError, ClipVersionStore
from scheduler.admission.graphs import GraphCatalog
from pipelines.limits import PayloadBounds
from scheduler.admission.payload_assets import names_assets, resolve_payload_assets
from scheduler.brand.checks import apply_brand
from scheduler.brand.store import BrandKitStore
from scheduler.admission.sources import resolve_source
from scheduler.records.jobs import JobStore

__all__ = ["BoundJob", "JobService"]


@dataclass(frozen=True, slots=True)
class BoundJob:
    graph: Graph
    bound: BoundPayload
    sources: dict[str, SourceRef]
    #: Payload model inputs with the assets they name resolved (a timeline → its render input).
    resolved: dict[str, Any] = field(default_factory=dict)

    @property
    def values(self) -> dict[str, Any]:
        return {**self.bound.values, **self.sources, **self.resolved}


@dataclass(frozen=True, slots=True)
class JobService:
    store: JobStore
    assets: AssetStore
    catalog: GraphCatalog
    storage: Storage
    clip_versions: ClipVersionStore
    #: Limits payload models check against (``max_render_seconds``), from the settings.
    limits: dict[str, Any] = field(default_factory=dict)
    #: Default bounds on a payload's strings, lists and nesting (where its graph declares none).
    bounds: PayloadBounds = field(default_factory=PayloadBounds)
    #: Brand kits a timeline may name (``brand_kit``); None: a timeline naming one is taken as it is.
    brand_kits: BrandKitStore | None = None

    async def bind(self, job_type: str, payload: dict[str, Any], *, clip_version_id: str | None = None) -> BoundJob:
        """Everything a job needs to run, or a named error (UnknownJobType, Payload, Source)."""
        graph = self.catalog.get(job_type)
        self.bounds.check(payload, declared=graph.spec.inputs)
        fallbacks = await self._clip_version_fallbacks(graph, payload, clip_version_id)
        # Off the loop: binding runs the params' validators, and some check files (a Whisper `model`
        # folder under MODELS_DIR, which may be a network mount).
        bound = await to_thread.run_sync(functools.partial(bind_payload, graph, payload, fallbacks=fallbacks))
        project_id = payload.get("project_id") if isinstance(payload.get("project_id"), str) else None
        sources = {
            name: await resolve_source(request, self.storage, self.assets, project_id=project_id)
            for name, request in bound.sources.items()
        }
        # Models that name assets also see the job's resolved sources (a transcript must be of the source), the
        # storage (to read what they name), and the resolved values of the inputs they `requires:`; a brand kit
        # a timeline names is applied first.
        context = {**self.limits, "sources": sources, "storage": self.storage}
        resolved: dict[str, Any] = {}
        for name in _model_order(graph, bound.values):
            needed = {other: resolved.get(other, bound.values.get(other))
                      for other in graph.spec.inputs[name].requires or ()}
            resolved[name] = await self._resolve(bound.values[name], ["body", name], project_id,
                                                 {**context, "inputs": needed})
        return BoundJob(graph=graph, bound=bound, sources=sources, resolved=resolved)

    async def submit(self, job_type: str, payload: dict[str, Any], *, priority: int = 0,
                     clip_version_id: str | None = None, callback_url: str | None = None) -> dict[str, Any]:
        """Validate and enqueue; the record keeps the payload as the client sent it.

        ``callback_url`` (already checked by the caller) gets the job's terminal webhook.
        """
        await self.bind(job_type, payload, clip_version_id=clip_version_id)
        return await self.store.create(job_type, payload, priority=priority, clip_version_id=clip_version_id,
                                       callback_url=callback_url)

    async def check_timeline(self, project_id: str, timeline: Any, *, loc: tuple[Any, ...] = ("body", "timeline")
                             ) -> dict[str, Any]:
        """A clip version's timeline, checked as a render job would check it, as normalised JSON."""
        from operators.registry import REGISTRY
        from pipelines.payload import check_model_value
        from pipelines.spec import InputSpec

        model = REGISTRY.model("timeline")
        assert model is not None
        self.bounds.check(timeline, loc=tuple(loc))
        errors: list[dict[str, Any]] = []
        value = check_model_value(loc[-1], InputSpec(type="timeline"), model, timeline, {}, errors)
        if errors:
            for error in errors:
                error["loc"] = [*loc, *error["loc"][2:]]
            raise PayloadError(errors)
        await self._resolve(value, list(loc), project_id, {**self.limits, "storage": self.storage})
        return value.model_dump(mode="json", by_alias=True)

    async def _resolve(self, value: Any, loc: list[Any], project_id: str | None, limits: dict[str, Any]) -> Any:
        """A payload model with its brand kit applied and its assets found and checked (a 422 otherwise)."""
        branded = await apply_brand(value, loc=loc, project_id=project_id, kits=self.brand_kits)
        return await resolve_payload_assets(branded, loc=loc, project_id=project_id, storage=self.storage,
                                            assets=self.assets, limits=limits)

    async def _clip_version_fallbacks(self, graph: Graph, payload: dict[str, Any],
                                      clip_version_id: str | None) -> dict[str, Any]:
        """A clip version named by the job must exist; inputs it can fill come from it."""
        if clip_version_id is None:
            return {}
        try:
            record = await self.clip_versions.get(clip_version_id)
        except ClipVersionNotFoundError as exc:
            raise PayloadError([{"loc": ["query", "clip_version_id"], "msg": str(exc), "type": "value_error"}]) from None
        project_id = payload.get("project_id") if isinstance(payload, dict) else None
        if project_id is not None and record.get("project_id") != project_id:
            raise PayloadError([{"loc": ["query", "clip_version_id"], "type": "value_error",
                                 "msg": f"Clip version {clip_version_id} belongs to another project"}])
        return {name: _field_path(record, spec.from_clip_version) for name, spec in graph.spec.inputs.items()
                if spec.from_clip_version}


def _model_order(graph: Graph, values: dict[str, Any]) -> list[str]:
    """The inputs whose models name assets, each after the ones it ``requires`` (declaration order otherwise)."""
    names = [name for name, value in values.items() if names_assets(value)]
    sorter: TopologicalSorter[str] = TopologicalSorter()
    for name in names:
        sorter.add(name, *[other for other in graph.spec.inputs[name].requires or () if other in names])
    try:
        order = list(sorter.static_order())
    except CycleError:
        return names
    return [name for name in order if name in names]


def _field_path(record: dict[str, Any], path: str) -> Any:
    """``timeline`` or a dotted path such as ``renders.-1.outputs.video.id`` (None where it is missing)."""
    from pipelines.run.task import access

    try:
        return access(record, tuple(path.split(".")))
    except (KeyError, IndexError, TypeError):
        return None
