"""What a completed graph run publishes: its outputs as assets, clip-version updates and chained jobs.

Every write here happens only after :class:`~scheduler.records.fencing.PublishGuard` has confirmed, recently enough,
that this dispatcher still holds the job, and asset records are moreover written by a fenced script that
Redis refuses once the lease is gone (see :mod:`scheduler.records.fencing` for the window that remains for the
rest). A run that turns out to be stale after publishing (its final, fenced transition refused) calls
:meth:`rollback`, which forgets the asset records it registered while it held the job (their files are the
new run's too: same paths) and cancels the jobs it chained.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pipelines.errors import PayloadError
from pipelines.graph import Chain, Graph
from pipelines.run.runner import JobInfo, resolve_value
from scheduler.records.assets import AssetNotFoundError
from scheduler.records.clip_versions import ClipVersionNotFoundError
from scheduler.errors import InvalidTransitionError, JobNotFoundError, SourceError
from scheduler.errors import UnknownJobTypeError
from scheduler.records.fencing import PublishGuard
from scheduler.dispatch.outputs import publish_outputs
from scheduler.admission.service import BoundJob, JobService
from scheduler.timefmt import now_ts

__all__ = ["JobPublisher"]

UntilRedis = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]


@dataclass
class JobPublisher:
    """Publishes one job's outputs, behind its lease guard; remembers what it wrote."""

    service: JobService
    job_id: str
    guard: PublishGuard
    log: Callable[[str], None]
    #: Retries a call while Redis is unreachable (the dispatcher's ``_until_redis``).
    until_redis: UntilRedis
    #: Storage path -> public asset record, of every asset registered (kept by retention).
    registered: dict[str, dict[str, Any]] = field(default_factory=dict)
    chained_ids: list[str] = field(default_factory=list)

    @property
    def paths(self) -> set[str]:
        return set(self.registered)

    async def publish(self, bound: BoundJob, record: dict[str, Any], job: JobInfo,
                      outputs: dict[str, Any]) -> dict[str, Any]:
        """The job's ``result_payload`` additions (``outputs``, ``chained_jobs``), after publishing them."""
        project_id = record["payload"].get("project_id")
        # A retry after a Redis outage starts over, but ``registered`` keeps what was written: no asset twice.
        published = await self.until_redis(lambda: self._outputs(outputs, bound.sources, project_id))
        await self._annotate_sources(bound.sources, published)
        await self._update_clip_version(bound.graph, record, published)
        result: dict[str, Any] = {"outputs": published}
        chained = await self._chain(bound.graph, job, bound.values, published)
        if chained:
            result["chained_jobs"] = chained
        return result

    async def rollback(self) -> None:
        """Undo what a run that lost its job published: its asset records and its chained jobs."""
        # Waiting out a Redis outage (as the final transition does): a record left would be a second asset.
        for asset in self.registered.values():
            await self.until_redis(lambda asset_id=str(asset["id"]): self.service.assets.forget(asset_id))
        for chained in self.chained_ids:
            with contextlib.suppress(InvalidTransitionError, JobNotFoundError):
                await self.until_redis(lambda job_id=chained: self.service.store.cancel(
                    job_id, message=f"Cancelled: job {self.job_id}, which started it, was taken over by another "
                                    "dispatcher"))

    async def _outputs(self, outputs: dict[str, Any], sources: dict[str, Any], project_id: str | None) -> Any:
        await self.guard.check()
        source_ids = [s.asset_id for s in sources.values() if getattr(s, "asset_id", None)]
        derived = await self.service.assets.lineage(source_ids) if source_ids else None
        return await publish_outputs(outputs, self.service.assets, project_id=project_id, job_id=self.job_id,
                                     clip_versions=self.service.clip_versions, derived_from=derived,
                                     before_write=self.guard.check, registered=self.registered,
                                     write=self._fenced_write,
                                     id_seed=f"{self.job_id}.a{self.guard.lease.attempt}")

    async def _fenced_write(self, commands: list[list[str]]) -> None:
        """An asset record's writes, refused by Redis itself unless this run still holds the job: a write
        that reached Redis late (the process stalled past the guard's window) cannot register it twice."""
        await self.service.store.fenced_write(self.guard.lease, commands)

    async def _annotate_sources(self, sources: dict[str, Any], outputs: dict[str, Any]) -> None:
        """A job's ``media_info`` output describes its source: keep it on the source asset."""
        info = outputs.get("media_info")
        if not isinstance(info, dict):
            return
        for source in sources.values():
            if getattr(source, "asset_id", None):
                await self.guard.check()
                # A source deleted meanwhile keeps nothing; Redis away: wait for it, as every write here does.
                with contextlib.suppress(AssetNotFoundError):
                    await self.until_redis(lambda asset_id=source.asset_id: self.service.assets.update(
                        asset_id, media_info=info))

    async def _update_clip_version(self, graph: Graph, record: dict[str, Any], outputs: dict[str, Any]) -> None:
        """Downstream update: append the outputs the graph names to the job's clip version."""
        spec = graph.spec.clip_version
        cv_id = record.get("clip_version_id")
        if spec is None or not cv_id:
            return
        entry = {"job_id": self.job_id, "created_at": now_ts(),
                 "outputs": {name: outputs.get(name) for name in spec.outputs}}

        async def append() -> Any:
            await self.guard.check()
            return await self.service.clip_versions.append_output(cv_id, spec.append, entry)

        try:
            await self.until_redis(append)
        except ClipVersionNotFoundError:
            self.log(f"Clip version {cv_id} no longer exists: this job's {spec.append} were not added to it")
            return
        self.log(f"Added to the {spec.append} of clip version {cv_id}")

    async def _chain(self, graph: Graph, job: JobInfo, values: dict[str, Any],
                     outputs: dict[str, Any]) -> dict[str, Any]:
        """Submit the graph's ``then`` jobs; a ``for_each`` chain submits one per item (ids as a list)."""
        chained: dict[str, Any] = {}
        for chain in graph.chains:
            if not self._chain_wanted(chain, values, job, outputs):
                continue
            if chain.for_each is None:
                job_id = await self._submit_chained(chain, job, values, outputs, None)
                if job_id is not None:
                    chained[chain.job_type] = job_id
                continue
            items = resolve_value(chain.for_each, values=values, job=job, outputs=outputs) or []
            ids = [await self._submit_chained(chain, job, values, outputs, item) for item in items]
            chained[chain.job_type] = [i for i in ids if i is not None]
        return chained

    def _chain_wanted(self, chain: Chain, values: dict[str, Any], job: JobInfo, outputs: dict[str, Any]) -> bool:
        conditions = chain.when  # parsed at load (pipelines.graph.Chain): only evaluated here
        when = resolve_value(conditions, values=values, job=job, outputs=outputs)
        if isinstance(when, list):
            # A list means all of them, e.g. [asked for a transcript, there is audio to transcribe].
            # When the first (the request) holds but a later one does not, the log says why.
            unmet = [c for c, v in zip(conditions, when, strict=True) if not v]
            if unmet and when and when[0]:
                names = ", ".join(getattr(c, "text", "") or repr(getattr(c, "value", c)) for c in unmet)
                self.log(f"Did not start the {chain.job_type} job: {names} is empty")
            return not unmet
        return bool(when)

    async def _submit_chained(self, chain: Chain, job: JobInfo, values: dict[str, Any], outputs: dict[str, Any],
                              item: Any) -> str | None:
        def resolve(raw: Any) -> Any:
            return resolve_value(raw, values=values, job=job, outputs=outputs, item=item)

        payload = {k: v for k, v in resolve(chain.payload).items() if v is not None}
        priority, clip_version_id = resolve(chain.priority), resolve(chain.clip_version_id)

        async def submit() -> dict[str, Any]:
            await self.guard.check()
            return await self.service.submit(chain.job_type, payload, priority=int(priority or 0),
                                             clip_version_id=clip_version_id)

        try:
            record = await self.until_redis(submit)
        except (UnknownJobTypeError, PayloadError, SourceError) as exc:
            self.log(f"Could not start the {chain.job_type} job: {exc}")
            return None
        self.chained_ids.append(str(record["id"]))
        self.log(f"Started {chain.job_type} job {record['id']}")
        return str(record["id"])
