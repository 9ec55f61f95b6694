"""The dispatcher: takes queued jobs in priority order and runs their graphs on Dask.

It runs at most ``MAX_RUNNING_JOBS`` at once, writes progress and log lines into each
job while it runs, and records how it ended. A heartbeat key marks it alive; on start
(and now and then) it re-queues jobs whose dispatcher died, or fails them once they
have been interrupted ``MAX_JOB_ATTEMPTS`` times, so no job stays in_progress forever.

Every write it makes for a job is fenced with its lease (owner and attempt, :mod:`scheduler.records.fencing`).
A dispatcher that finds it lost a job (a write refused, or its heartbeat or watch loop seeing another
holder) cancels the job's Dask tasks and publishes nothing: no assets, no clip-version updates, no chained
jobs, no final state, and it leaves the job's files alone (the new owner's tasks use them). A job that ends
while held has its intermediates (``jobs/<id>/`` minus its published assets) deleted, whatever the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from distributed import Client

from operators.context import EVENTS_TOPIC
from pipelines.errors import JobFailedError, PayloadError
from pipelines.run.runner import GraphRun, JobInfo
from scheduler.dispatch.eta import EtaEstimator
from scheduler.errors import (
    InvalidTransitionError,
    JobNotFoundError,
    QueueUnavailableError,
    SourceError,
    StorageUnavailableError,
    UnknownJobTypeError,
)
from scheduler.records.fencing import JobLostError, Lease, PublishGuard
from scheduler.dispatch.recovery import Recovery
from scheduler.records.metrics import RETRIES_KEY, RETRY_TOPIC, RetryEvents
from scheduler.dispatch.publishing import JobPublisher
from scheduler.dispatch.retention import remove_intermediates
from scheduler.admission.service import JobService
from scheduler.wiring.settings import Settings
from scheduler.records.jobs import guard
from scheduler.records.timefmt import now_ts

__all__ = ["Dispatcher"]

_log = logging.getLogger("scheduler.dispatch.dispatcher")
T = TypeVar("T")


@dataclass
class _Running:
    job_id: str
    lease: Lease
    run: GraphRun | None = None
    task: asyncio.Task[None] | None = None
    #: (timestamp, message): stamped when they happen, written in batches by the flush loop.
    pending_messages: list[tuple[str, str]] = field(default_factory=list)
    pending_progress: float | None = None
    cancelled: bool = False
    #: Another dispatcher holds the job now (or nobody, re-queued): write nothing more for it.
    lost: bool = False
    #: The graph has finished: the final writes are under way (fenced themselves), so nothing cancels them.
    finishing: bool = False
    job_type: str = ""
    eta: EtaEstimator = field(default_factory=EtaEstimator)
    publisher: JobPublisher | None = None

    def log(self, message: str) -> None:
        self.pending_messages.append((now_ts(), message))

    @property
    def published_paths(self) -> set[str]:
        return self.publisher.paths if self.publisher is not None else set()


class Dispatcher:
    def __init__(self, service: JobService, client: Client, settings: Settings, *, owner: str | None = None) -> None:
        self.service = service
        self.store = service.store
        self.client = client
        self.settings = settings
        self.owner = owner or f"dispatcher-{secrets.token_hex(6)}"
        self._running: dict[str, _Running] = {}
        self._stopping = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._recovery = Recovery(self.store, self.owner, settings.max_job_attempts)

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        self.client.subscribe_topic(EVENTS_TOPIC, self._on_event)
        self.client.subscribe_topic(RETRY_TOPIC, self._on_retry)
        try:
            # Tells us of tasks Dask runs again after they raised (a node's retries:), for /metrics.
            await self.client.register_plugin(RetryEvents(), name=RetryEvents.name)
        except Exception as exc:  # noqa: BLE001  (a scheduler without this package: no retry counts)
            _log.warning("task retries will not be counted: the Dask scheduler did not take the plugin (%s)", exc)
        for coro in (self._claim_loop(), self._heartbeat_loop(), self._watch_loop(), self._flush_loop()):
            self._tasks.append(asyncio.create_task(coro))

    async def stop(self) -> None:
        """Stop taking jobs; jobs still running are left for recovery by the next dispatcher."""
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        for running in list(self._running.values()):
            if running.task is not None:
                running.task.cancel()
        await asyncio.gather(*self._tasks, *(r.task for r in self._running.values() if r.task), return_exceptions=True)
        with contextlib.suppress(Exception):
            self.client.unsubscribe_topic(EVENTS_TOPIC)
        with contextlib.suppress(Exception):
            self.client.unsubscribe_topic(RETRY_TOPIC)
        with contextlib.suppress(QueueUnavailableError):
            await self.store.release_owner(self.owner)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but return at once when the dispatcher stops.

        Cancelling a loop is not enough on its own: redis-py can swallow a cancellation that
        lands inside a command, and the loop would then sleep out its full interval.
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    @property
    def running_jobs(self) -> list[str]:
        return list(self._running)

    async def recover(self) -> list[str]:
        """Re-queue (or fail) jobs left in_progress by dispatchers that are gone, and claims of this one it
        never learnt of (see :mod:`scheduler.dispatch.recovery`); the ids handled."""
        return await self._recovery.run(self._running)

    # -- loops --------------------------------------------------------------------------
    async def _claim_loop(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                if len(self._running) >= self.settings.max_running_jobs:
                    # Woken by _finish the moment a job ends, so a full dispatcher never idles.
                    self._slot_free.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._slot_free.wait(), timeout=1)
                    continue
                lease = await self.store.claim_lease(self.owner)
                backoff = 0.5
                if lease is None:
                    await self.store.wait_for_work(timeout=1)
                    continue
                previous = self._running.get(lease.job_id)
                if previous is not None:
                    # Re-queued under this very dispatcher and claimed again before the old run noticed.
                    self._lose(previous, f"this dispatcher claimed it again (attempt {lease.attempt})")
                running = _Running(lease.job_id, lease)
                self._running[lease.job_id] = running
                running.task = asyncio.create_task(self._run_job(running), name=f"job-{lease.job_id}")
            except QueueUnavailableError as exc:
                _log.warning("Redis unavailable, dispatcher waiting: %s", exc)
                await self._pause(backoff)
                backoff = min(backoff * 2, 5.0)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001  (the loop must survive anything)
                _log.exception("dispatcher claim loop error")
                await self._pause(1)

    async def _heartbeat_loop(self) -> None:
        last_recovery, ttl = 0.0, self.settings.dispatcher_heartbeat_ttl
        while not self._stopping.is_set():
            try:
                sent = list(self._running.values())
                lost = set(await self.store.heartbeat(self.owner, ttl, [r.lease for r in sent]))
                for running in sent:
                    if running.job_id in lost:
                        self._lose(running, "the heartbeat found the job held by another dispatcher")
                if time.monotonic() - last_recovery > ttl:
                    await self.recover()
                    last_recovery = time.monotonic()
            except QueueUnavailableError as exc:
                # Past the TTL without one, this dispatcher's jobs may be re-queued and run elsewhere;
                # its fenced writes then refuse it, so the job is not run twice to the end.
                _log.warning("dispatcher %s heartbeat failed (%s); its jobs may be re-queued after %d s",
                             self.owner, exc, ttl)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                _log.exception("dispatcher heartbeat error")
            await self._pause(ttl / 3)

    async def _watch_loop(self) -> None:
        """Notice cancellations made through the API, and jobs another dispatcher took over; stop their tasks."""
        while not self._stopping.is_set():
            await self._pause(0.25)
            for running in list(self._running.values()):
                try:
                    held = await self.store.holder(running.job_id)
                except QueueUnavailableError:
                    break
                if held is None or (held[1], held[2]) != (self.owner, running.lease.attempt):
                    self._lose(running, f"it is held by {held[1] or 'nobody'} now" if held else "it is gone")
                elif held[0] == "cancelled" and not running.cancelled and running.task is not None:
                    running.cancelled = True
                    running.task.cancel()

    def _lose(self, running: _Running, reason: str, *, stop: bool = True) -> None:
        """This dispatcher no longer holds the job: stop its graph (and so its Dask tasks), write nothing.

        ``stop=False`` from the job's own task, which is already on its way out (it must not cancel itself).
        """
        if running.lost:
            return
        running.lost = True
        _log.warning("dispatcher %s lost job %s (attempt %d): %s; stopping its tasks, publishing nothing",
                     self.owner, running.job_id, running.lease.attempt, reason)
        if running.publisher is not None:
            running.publisher.guard.abandon(reason)  # publishing stops at its next write
        if stop and running.task is not None and not running.finishing:
            running.task.cancel()

    async def _flush_loop(self) -> None:
        while not self._stopping.is_set():
            await self._pause(0.2)
            for running in list(self._running.values()):
                try:
                    await self._flush(running)
                except JobLostError as exc:
                    self._lose(running, exc.reason)

    async def _flush(self, running: _Running) -> None:
        if running.lost or (not running.pending_messages and running.pending_progress is None):
            return
        messages, progress = running.pending_messages, running.pending_progress
        running.pending_messages, running.pending_progress = [], None
        # The ETA is written with the progress it was estimated from.
        eta = running.eta.update(time.monotonic(), progress) if progress is not None else ...
        try:
            await self.store.report(running.job_id, progress=progress, messages=messages, eta=eta,
                                    lease=running.lease)
        except QueueUnavailableError:
            # Keep them for the next try; progress only matters as its newest value.
            running.pending_messages = messages + running.pending_messages
            if running.pending_progress is None:
                running.pending_progress = progress

    # -- one job ------------------------------------------------------------------------
    def _on_event(self, event: tuple[float, dict[str, Any]]) -> None:
        msg = event[1] if isinstance(event, tuple) else event
        running = self._running.get(str(msg.get("job_id")))
        if running is not None and running.run is not None:
            running.run.handle_event(msg)

    def _on_retry(self, event: tuple[float, dict[str, Any]]) -> None:
        """A task was retried on the cluster: count it if it is one of our jobs'."""
        msg = event[1] if isinstance(event, tuple) else event
        key = str(msg.get("key", "")) if isinstance(msg, dict) else ""
        for running in self._running.values():
            if running.job_id in key and running.job_type:
                task = asyncio.create_task(self._count_retry(running.job_type))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
                return

    async def _count_retry(self, job_type: str) -> None:
        with contextlib.suppress(Exception):
            await guard(self.store.redis.hincrby(RETRIES_KEY, job_type, 1))

    async def _run_job(self, running: _Running) -> None:
        job_id = running.job_id
        outcome: tuple[str, Any]
        try:
            outcome = ("completed", await self._execute(running))
        except asyncio.CancelledError:
            if running.run is not None:
                await running.run.cancel()
            if running.lost:
                outcome = ("lost", None)
            elif running.cancelled:
                outcome = ("stands", None)
            elif not self._stopping.is_set() and not _cancelling():
                # Nobody cancelled this task: a CancelledError from inside a library call (Dask's, see
                # pipelines.run.fetching). Released, the job would stay in_progress until recovery found it.
                outcome = ("failed", "Internal error while running the job: a call to the cluster was "
                                     "cancelled unexpectedly; the job can be submitted again")
            else:  # the dispatcher is stopping: leave the job for recovery
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
            self._release(running)
            return
        except Exception as exc:  # noqa: BLE001  (whatever happens, the job must end)
            _log.exception("job %s failed unexpectedly", job_id)
            outcome = ("failed", f"Internal error while running the job: {type(exc).__name__}: {exc}")
        await self._finish(running, *outcome)

    async def _execute(self, running: _Running) -> dict[str, Any]:
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

        run = GraphRun(self.client, bound.graph, job, values=bound.values, storage=self.service.storage,
                       on_progress=on_progress, on_log=running.log, max_seconds=self.settings.max_job_seconds,
                       max_tasks=self.settings.max_tasks_per_node)
        running.run = run
        outputs = await run.run()
        running.finishing = True
        # From here on nothing is written unless the lease is confirmed fresh (fencing.PublishGuard).
        ttl = self.settings.dispatcher_heartbeat_ttl
        lease_guard = PublishGuard(self.store, running.lease, ttl=ttl, margin=ttl / 3)
        running.publisher = JobPublisher(self.service, job_id, lease_guard, running.log, self._until_redis)
        return await running.publisher.publish(bound, record, job, outputs)

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

    async def _finish(self, running: _Running, status: str, detail: Any) -> None:
        """Write the final state (fenced), retrying while Redis is down, so the result is not lost; then delete
        the job's intermediates. Published assets stay only if the job completed: otherwise (failed while
        publishing, cancelled meanwhile, lost) their records are rolled back. A lost job's files are left to
        the dispatcher that holds it now."""
        running.finishing = True
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
                except InvalidTransitionError:
                    # Cancelled meanwhile (the stored status stands), or this very write went through
                    # before Redis went away without answering, and its retry found the job completed.
                    completed = status == "completed" and await self._completed_by(running)
                except JobLostError as exc:
                    self._lose(running, exc.reason, stop=False)
                    status = "lost"
            if not completed and running.publisher is not None:
                await running.publisher.rollback()
            if status != "lost":
                await remove_intermediates(self.service.storage, running.job_id,
                                           running.published_paths if completed else ())
        finally:
            self._release(running)

    async def _completed_by(self, running: _Running) -> bool:
        """Whether the job is completed under this run's lease (its own final write, answered too late)."""
        held = await self._until_redis(lambda: self.store.holder(running.job_id))
        return held == ("completed", self.owner, running.lease.attempt)

    def _release(self, running: _Running) -> None:
        # Only this run's entry: a later attempt of the same job may have replaced it (see _claim_loop).
        if self._running.get(running.job_id) is running:
            del self._running[running.job_id]
        self._slot_free.set()


def _cancelling() -> bool:
    """Whether the running task was asked to cancel (``Task.cancel``), not merely handed a CancelledError."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
