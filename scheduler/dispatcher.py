"""The dispatcher: takes queued jobs in priority order and runs their graphs on Dask.

It runs at most ``MAX_RUNNING_JOBS`` at once, writes progress and log lines into each
job while it runs, and records how it ended. A heartbeat key marks it alive; on start
(and now and then) it re-queues jobs whose dispatcher died, or fails them once they
have been interrupted ``MAX_JOB_ATTEMPTS`` times, so no job stays in_progress forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass, field
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from distributed import Client

from operators.context import EVENTS_TOPIC
from pipelines.errors import JobFailedError, PayloadError
from pipelines.graph import Graph
from pipelines.runner import GraphRun, JobInfo, resolve_value
from scheduler.clip_versions import ClipVersionNotFoundError
from scheduler.eta import EtaEstimator
from scheduler.errors import (
    InvalidTransitionError,
    JobNotFoundError,
    QueueUnavailableError,
    SourceError,
    UnknownJobTypeError,
)
from scheduler.metrics import RETRIES_KEY, RETRY_TOPIC, RetryEvents
from scheduler.outputs import publish_outputs
from scheduler.service import JobService
from scheduler.settings import Settings
from scheduler.store import guard
from scheduler.timefmt import now_ts

__all__ = ["Dispatcher"]

_log = logging.getLogger("scheduler.dispatcher")
T = TypeVar("T")
HEARTBEAT_TTL = 15


@dataclass
class _Running:
    job_id: str
    run: GraphRun | None = None
    task: asyncio.Task[None] | None = None
    #: (timestamp, message): stamped when they happen, written in batches by the flush loop.
    pending_messages: list[tuple[str, str]] = field(default_factory=list)

    def log(self, message: str) -> None:
        self.pending_messages.append((now_ts(), message))
    pending_progress: float | None = None
    cancelled: bool = False
    job_type: str = ""
    eta: EtaEstimator = field(default_factory=EtaEstimator)


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
        """Re-queue (or fail) jobs left in_progress by dispatchers that are gone."""
        handled = []
        for job_id, owner in await self.store.orphans(exclude=self.owner):
            try:
                fields = await self.store.internal(job_id)
            except JobNotFoundError:
                continue
            attempts = int(fields.get("attempts") or 0)
            if attempts >= self.settings.max_job_attempts:
                with contextlib.suppress(InvalidTransitionError):
                    await self.store.fail(
                        job_id,
                        f"The job was interrupted {attempts} times (its dispatcher {owner} stopped) "
                        "and is not retried again",
                    )
            else:
                await self.store.requeue(
                    job_id,
                    f"Re-queued: dispatcher {owner} stopped while running it "
                    f"(attempt {attempts} of {self.settings.max_job_attempts})",
                )
            handled.append(job_id)
        return handled

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
                job_id = await self.store.claim(self.owner)
                backoff = 0.5
                if job_id is None:
                    await self.store.wait_for_work(timeout=1)
                    continue
                running = _Running(job_id)
                self._running[job_id] = running
                running.task = asyncio.create_task(self._run_job(running), name=f"job-{job_id}")
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
        last_recovery = 0.0
        while not self._stopping.is_set():
            try:
                await self.store.heartbeat(self.owner, HEARTBEAT_TTL)
                if time.monotonic() - last_recovery > HEARTBEAT_TTL:
                    await self.recover()
                    last_recovery = time.monotonic()
            except QueueUnavailableError:
                pass
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                _log.exception("dispatcher heartbeat error")
            await self._pause(HEARTBEAT_TTL / 3)

    async def _watch_loop(self) -> None:
        """Notice cancellations made through the API and stop their Dask tasks."""
        while not self._stopping.is_set():
            await self._pause(0.25)
            for running in list(self._running.values()):
                try:
                    status = await self.store.status(running.job_id)
                except QueueUnavailableError:
                    break
                if status == "cancelled" and not running.cancelled and running.task is not None:
                    running.cancelled = True
                    running.task.cancel()

    async def _flush_loop(self) -> None:
        while not self._stopping.is_set():
            await self._pause(0.2)
            for running in list(self._running.values()):
                await self._flush(running)

    async def _flush(self, running: _Running) -> None:
        if not running.pending_messages and running.pending_progress is None:
            return
        messages, progress = running.pending_messages, running.pending_progress
        running.pending_messages, running.pending_progress = [], None
        # The ETA is written with the progress it was estimated from.
        eta = running.eta.update(time.monotonic(), progress) if progress is not None else ...
        try:
            await self.store.report(running.job_id, progress=progress, messages=messages, eta=eta)
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
            fields = await self._until_redis(lambda: self.store.internal(job_id))
            running.eta.start(time.monotonic(), float(fields.get("progress") or 0))
            record = await self._until_redis(lambda: self.store.get(job_id))
            running.job_type = record["job_type"]
            bound = await self._until_redis(lambda: self.service.bind(
                record["job_type"], record["payload"], clip_version_id=record.get("clip_version_id")))
            job = JobInfo(id=job_id, type=record["job_type"], priority=record["priority"],
                          attempt=int(fields.get("attempts") or 1))

            def on_progress(value: float) -> None:
                running.pending_progress = min(value, 0.999)

            run = GraphRun(self.client, bound.graph, job, values=bound.values, storage=self.service.storage,
                           on_progress=on_progress, on_log=running.log, max_seconds=self.settings.max_job_seconds)
            running.run = run
            outputs = await run.run()
            project_id = record["payload"].get("project_id")
            published = await self._until_redis(
                lambda: self._publish(outputs, bound.sources, project_id, job_id))
            await self._annotate_sources(bound.sources, published)
            await self._update_clip_version(bound.graph, record, published, running)
            result: dict[str, Any] = {"outputs": published}
            chained = await self._chain(bound.graph, job, bound.values, published, running)
            if chained:
                result["chained_jobs"] = chained
            outcome = ("completed", result)
        except asyncio.CancelledError:
            if running.run is not None:
                await running.run.cancel()
            if not running.cancelled:  # the dispatcher is stopping: leave the job for recovery
                self._release(job_id)
                raise
            outcome = ("cancelled", None)
        except JobFailedError as exc:
            outcome = ("failed", str(exc))
        except (UnknownJobTypeError, SourceError) as exc:
            outcome = ("failed", f"The job cannot run: {exc}")
        except PayloadError as exc:
            outcome = ("failed", f"The job's payload does not fit its graph: {exc}")
        except JobNotFoundError:
            self._release(job_id)
            return
        except Exception as exc:  # noqa: BLE001  (whatever happens, the job must end)
            _log.exception("job %s failed unexpectedly", job_id)
            outcome = ("failed", f"Internal error while running the job: {type(exc).__name__}: {exc}")
        await self._finish(running, *outcome)

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
                _log.warning("Redis unavailable, job waiting: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _finish(self, running: _Running, status: str, detail: Any) -> None:
        """Write the final state, retrying while Redis is down, so the result is not lost."""

        async def write() -> None:
            await self._flush(running)
            if status == "completed":
                await self.store.complete(running.job_id, detail)
            elif status == "failed":
                await self.store.fail(running.job_id, detail)

        try:
            await self._until_redis(write)
        except InvalidTransitionError:
            pass  # cancelled (or finished) meanwhile: the stored status stands
        finally:
            self._release(running.job_id)

    def _release(self, job_id: str) -> None:
        self._running.pop(job_id, None)
        self._slot_free.set()

    async def _publish(self, outputs: dict[str, Any], sources: dict[str, Any], project_id: str | None,
                       job_id: str) -> Any:
        source_ids = [s.asset_id for s in sources.values() if getattr(s, "asset_id", None)]
        derived = await self.service.assets.lineage(source_ids) if source_ids else None
        return await publish_outputs(outputs, self.service.assets, project_id=project_id, job_id=job_id,
                                     clip_versions=self.service.clip_versions, derived_from=derived)

    async def _annotate_sources(self, sources: dict[str, Any], outputs: dict[str, Any]) -> None:
        """A job's ``media_info`` output describes its source: keep it on the source asset."""
        info = outputs.get("media_info")
        if not isinstance(info, dict):
            return
        for source in sources.values():
            if getattr(source, "asset_id", None):
                with contextlib.suppress(Exception):
                    await self.service.assets.update(source.asset_id, media_info=info)

    async def _update_clip_version(self, graph: Graph, record: dict[str, Any], outputs: dict[str, Any],
                                   running: _Running) -> None:
        """Downstream update: append the outputs the graph names to the job's clip version."""
        spec = graph.spec.clip_version
        cv_id = record.get("clip_version_id")
        if spec is None or not cv_id:
            return
        entry = {"job_id": running.job_id, "created_at": now_ts(),
                 "outputs": {name: outputs.get(name) for name in spec.outputs}}
        try:
            await self._until_redis(lambda: self.service.clip_versions.append_output(cv_id, spec.append, entry))
        except ClipVersionNotFoundError:
            running.log(f"Clip version {cv_id} no longer exists: this job's {spec.append} were not added to it")
            return
        running.log(f"Added to the {spec.append} of clip version {cv_id}")

    async def _chain(self, graph: Any, job: JobInfo, values: dict[str, Any], outputs: dict[str, Any],
                     running: _Running) -> dict[str, Any]:
        """Submit the graph's ``then`` jobs; a ``for_each`` chain submits one per item (ids as a list)."""
        from pipelines.refs import parse_value

        chained: dict[str, Any] = {}
        for chain in graph.chains:
            if not self._chain_wanted(chain, values, job, outputs, running):
                continue
            if chain.for_each is None:
                job_id = await self._submit_chained(chain, job, values, outputs, running, None)
                if job_id is not None:
                    chained[chain.job_type] = job_id
                continue
            items = resolve_value(parse_value(chain.for_each), values=values, job=job, outputs=outputs) or []
            ids = [await self._submit_chained(chain, job, values, outputs, running, item) for item in items]
            chained[chain.job_type] = [i for i in ids if i is not None]
        return chained

    def _chain_wanted(self, chain: Any, values: dict[str, Any], job: JobInfo, outputs: dict[str, Any],
                      running: _Running) -> bool:
        from pipelines.refs import parse_value

        conditions = parse_value(chain.when)
        when = resolve_value(conditions, values=values, job=job, outputs=outputs)
        if isinstance(when, list):
            # A list means all of them, e.g. [asked for a transcript, there is audio to transcribe].
            # When the first (the request) holds but a later one does not, the log says why.
            unmet = [c for c, v in zip(conditions, when, strict=True) if not v]
            if unmet and when and when[0]:
                names = ", ".join(getattr(c, "text", "") or repr(getattr(c, "value", c)) for c in unmet)
                running.log(f"Did not start the {chain.job_type} job: {names} is empty")
            return not unmet
        return bool(when)

    async def _submit_chained(self, chain: Any, job: JobInfo, values: dict[str, Any], outputs: dict[str, Any],
                              running: _Running, item: Any) -> str | None:
        from pipelines.refs import parse_value

        def resolve(raw: Any) -> Any:
            return resolve_value(parse_value(raw), values=values, job=job, outputs=outputs, item=item)

        payload = {k: v for k, v in resolve(chain.payload).items() if v is not None}
        priority, clip_version_id = resolve(chain.priority), resolve(chain.clip_version_id)
        try:
            record = await self._until_redis(lambda: self.service.submit(
                chain.job_type, payload, priority=int(priority or 0), clip_version_id=clip_version_id))
        except (UnknownJobTypeError, PayloadError, SourceError) as exc:
            running.log(f"Could not start the {chain.job_type} job: {exc}")
            return None
        running.log(f"Started {chain.job_type} job {record['id']}")
        return str(record["id"])
