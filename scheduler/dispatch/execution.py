"""One job's run inside the dispatcher: its record (:class:`RunningJob`) and its task, from the graph to the end.

:class:`JobExecution` is the half of :class:`~scheduler.dispatch.dispatcher.Dispatcher` that runs one claimed job:
bind its payload, run its graph, publish behind the lease guard, write the final state (fenced) and clean up.
The other half (:mod:`scheduler.dispatch.dispatcher`) holds the loops that claim jobs and watch them. Every change
of a job's phase goes through ``_apply`` and the pure :mod:`scheduler.dispatch.lifecycle`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from distributed import Client

from pipelines.cache.node import JobCache
from pipelines.errors import JobFailedError, PayloadError
from pipelines.run.runner import GraphRun, JobInfo
from scheduler.admission.service import JobService
from scheduler.cache.index import RedisCacheIndex
from scheduler.dispatch.eta import EtaEstimator
from scheduler.dispatch.lifecycle import Event, JobLifecycle, Phase
from scheduler.dispatch.publishing import JobPublisher
from scheduler.dispatch.retention import remove_intermediates
from scheduler.errors import (
    InvalidTransitionError,
    JobNotFoundError,
    QueueUnavailableError,
    SourceError,
    StorageUnavailableError,
    UnknownJobTypeError,
)
from scheduler.records.fencing import JobLostError, Lease, PublishGuard
from scheduler.records.jobs import JobStore
from scheduler.timefmt import now_ts
from scheduler.settings import Settings

__all__ = ["JobExecution", "RunningJob"]

_log = logging.getLogger("scheduler.dispatch.dispatcher")
T = TypeVar("T")


@dataclass
class RunningJob:
    job_id: str
    lease: Lease
    run: GraphRun | None = None
    task: asyncio.Task[None] | None = None
    #: (timestamp, message): stamped when they happen, written in batches by the flush loop.
    pending_messages: list[tuple[str, str]] = field(default_factory=list)
    pending_progress: float | None = None
    #: Where the job is (claimed, running, finishing, ...): changed only through :meth:`Dispatcher._apply`.
    life: JobLifecycle = field(default_factory=JobLifecycle)
    job_type: str = ""
    eta: EtaEstimator = field(default_factory=EtaEstimator)
    publisher: JobPublisher | None = None

    def log(self, message: str) -> None:
        self.pending_messages.append((now_ts(), message))

    @property
    def lost(self) -> bool:
        """Another dispatcher holds the job now (or nobody, re-queued): write nothing more for it."""
        return self.life.phase is Phase.LOST

    @property
    def published_paths(self) -> set[str]:
        return self.publisher.paths if self.publisher is not None else set()


class JobExecution:
    """Running one claimed job to its end; mixed into the Dispatcher, whose loops feed it."""

    service: JobService
    store: JobStore
    client: Client
    settings: Settings
    owner: str
    _running: dict[str, RunningJob]
    _stopping: asyncio.Event
    _slot_free: asyncio.Event
    _background: set[asyncio.Task[None]]

    def _apply(self, running: RunningJob, event: Event, note: str = "", *, stop: bool = True) -> None:
        raise NotImplementedError

    def _lose(self, running: RunningJob, reason: str, *, stop: bool = True) -> None:
        raise NotImplementedError

    def _release(self, running: RunningJob) -> None:
        raise NotImplementedError

    async def _flush(self, running: RunningJob) -> None:
        raise NotImplementedError

    async def _run_job(self, running: RunningJob) -> None:
        job_id = running.job_id
        outcome: tuple[str, Any]
        try:
            outcome = ("completed", await self._execute(running))
        except asyncio.CancelledError:
            if running.run is not None:
                await running.run.cancel()
            if running.life.phase is Phase.LOST:
                outcome = ("lost", None)
            elif running.life.phase is Phase.CANCELLED:
                outcome = ("stands", None)
            elif not self._stopping.is_set() and not _cancelling():
                # Nobody cancelled this task: a CancelledError from inside a library call (Dask's, see
                # pipelines.run.fetching). Released, the job would stay in_progress until recovery found it.
                outcome = ("failed", "Internal error while running the job: a call to the cluster was "
                                     "cancelled unexpectedly; the job can be submitted again")
            else:  # the dispatcher is stopping: leave the job for recovery
                self._apply(running, Event.RELEASED, "the dispatcher is stopping", stop=False)
                self._release(running)
                raise
        except JobLostError as exc:
            self._lose(running, exc.reason, stop=False)
            if running.run is not None:
                await running.run.cancel()
            outcome = ("lost", None)
        except InvalidTransitionError:
            outcome = ("stands", None)  # cancelled while it finished: the stored status stands, publish nothing
        except JobFailedError as exc:
            outcome = ("failed", str(exc))
        except (UnknownJobTypeError, SourceError) as exc:
            outcome = ("failed", f"The job cannot run: {exc}")
        except PayloadError as exc:
            outcome = ("failed", f"The job's payload does not fit its graph: {exc}")
        except JobNotFoundError:
            self._apply(running, Event.RELEASED, "the job's record is gone", stop=False)
            self._release(running)
            return
        except Exception as exc:  # noqa: BLE001  (whatever happens, the job must end)
            _log.exception("job %s failed unexpectedly", job_id)
            outcome = ("failed", f"Internal error while running the job: {type(exc).__name__}: {exc}")
        await self._finish(running, *outcome)

    async def _execute(self, running: RunningJob) -> dict[str, Any]:
        """Run the job's graph, then publish its outputs behind the lease guard; the result to complete with."""
        job_id = running.job_id
        fields = await self._until_redis(lambda: self.store.internal(job_id))
        if (fields.get("owner"), int(fields.get("attempts") or 0)) != (self.owner, running.lease.attempt):
            raise JobLostError(running.lease, holder=fields.get("owner", ""), attempt=fields.get("attempts", ""))
        running.eta.start(time.monotonic(), float(fields.get("progress") or 0))
        record = await self._until_redis(lambda: self.store.get(job_id))
        running.job_type = record["job_type"]
        bound = await self._until_redis(lambda: self.service.bind(
            record["job_type"], record["payload"], clip_version_id=record.get("clip_version_id")))
        job = JobInfo(id=job_id, type=record["job_type"], priority=record["priority"], attempt=running.lease.attempt)

        def on_progress(value: float) -> None:
            running.pending_progress = min(value, 0.999)

        cache = None
        if self.settings.cache_enabled and any(node.cache for node in bound.graph.nodes.values()):
            index = RedisCacheIndex(self.store.redis, max_bytes=self.settings.cache_max_bytes,
                                    ttl_seconds=self.settings.cache_ttl_days * 86400)
            cache = JobCache(index, self.service.storage, job_id, running.log)
        run = GraphRun(self.client, bound.graph, job, values=bound.values, storage=self.service.storage, cache=cache,
                       on_progress=on_progress, on_log=running.log, max_seconds=self.settings.max_job_seconds,
                       max_tasks=self.settings.max_tasks_per_node,
                       log_tracebacks=self.settings.job_log_tracebacks or self.settings.log_level.lower() == "debug",
                       hung_task_grace=self.settings.hung_task_grace_seconds)
        running.run = run
        self._apply(running, Event.STARTED)
        outputs = await run.run()
        self._apply(running, Event.GRAPH_DONE)
        # From here on nothing is written unless the lease is confirmed fresh (fencing.PublishGuard).
        ttl = self.settings.dispatcher_heartbeat_ttl
        lease_guard = PublishGuard(self.store, running.lease, ttl=ttl, margin=ttl / 3)
        running.publisher = JobPublisher(self.service, job_id, lease_guard, running.log, self._until_redis)
        result = await running.publisher.publish(bound, record, job, outputs)
        if cache is not None:
            result["cache"] = cache.summary()
        return result

    async def _until_redis(self, call: Callable[[], Awaitable[T]]) -> T:
        """Await ``call()``, retrying while Redis is unreachable: an outage delays a job, never fails it.

        Stopping the dispatcher cancels the waiting task, and the job is recovered by the next one.
        """
        delay = 0.25
        while True:
            try:
                return await call()
            except QueueUnavailableError as exc:
                if self._stopping.is_set():
                    raise asyncio.CancelledError from exc  # recovery picks the job up later
                what = "Media storage unreachable" if isinstance(exc, StorageUnavailableError) else "Redis unavailable"
                _log.warning("%s, job waiting: %s", what, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _finish(self, running: RunningJob, status: str, detail: Any) -> None:
        """Write the final state (fenced), retrying while Redis is down, so the result is not lost; then delete
        the job's intermediates. Published assets stay only if the job completed: otherwise (failed while
        publishing, cancelled meanwhile, lost) their records are rolled back. A lost job's files are left to
        the dispatcher that holds it now."""
        if status == "failed":
            self._apply(running, Event.GRAPH_FAILED, str(detail)[:200], stop=False)
        elif status == "stands":
            self._apply(running, Event.FOUND_CANCELLED, stop=False)
        completed = False

        async def write() -> None:
            await self._flush(running)
            if status == "completed":
                await self.store.complete(running.job_id, detail, lease=running.lease, keep=running.published_paths)
            elif status == "failed":
                await self.store.fail(running.job_id, detail, lease=running.lease)

        try:
            if status != "lost":
                try:
                    await self._until_redis(write)
                    completed = status == "completed"
                    if status in ("completed", "failed"):
                        self._apply(running, Event.COMPLETED_WRITTEN if completed else Event.FAILED_WRITTEN)
                except InvalidTransitionError:
                    # Cancelled meanwhile (the stored status stands), or this very write went through
                    # before Redis went away without answering, and its retry found the job completed.
                    completed = status == "completed" and await self._completed_by(running)
                    self._apply(running, Event.COMPLETED_WRITTEN if completed else Event.FOUND_CANCELLED,
                                stop=False)
                except JobLostError as exc:
                    self._lose(running, exc.reason, stop=False)
                    status = "lost"
            if not completed and running.publisher is not None:
                await running.publisher.rollback()
            if status != "lost":
                await remove_intermediates(self.service.storage, running.job_id,
                                           running.published_paths if completed else ())
        finally:
            _log.info("job %s ended %s on %s: %s", running.job_id, running.life.phase.value, self.owner,
                      "; ".join(running.life.describe()))
            self._release(running)
            self._keep_hung_check(running)

    def _keep_hung_check(self, running: RunningJob) -> None:
        """Hold the run's check of the workers its overdue tasks may still hold (:mod:`pipelines.run.stuck`): it
        outlives the job, which never waits for it; the lines it writes go into the job's log when it is done."""
        check = running.run.hung_check if running.run is not None else None
        if check is None:
            return

        async def then_flush() -> None:
            with contextlib.suppress(Exception):  # the check never raises; the job may be lost or gone by now
                await check
                await self._flush(running)

        task = asyncio.create_task(then_flush(), name=f"hung-check-{running.job_id}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _completed_by(self, running: RunningJob) -> bool:
        """Whether the job is completed under this run's lease (its own final write, answered too late)."""
        held = await self._until_redis(lambda: self.store.holder(running.job_id))
        return held == ("completed", self.owner, running.lease.attempt)


def _cancelling() -> bool:
    """Whether the running task was asked to cancel (``Task.cancel``), not merely handed a CancelledError."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
