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
from typing import Any

from distributed import Client

from operators.context import EVENTS_TOPIC
from scheduler.admission.service import JobService
from scheduler.dispatch.execution import JobExecution, RunningJob
from scheduler.dispatch.lifecycle import Action, Event, IllegalTransitionError
from scheduler.dispatch.recovery import Recovery
from scheduler.errors import QueueUnavailableError
from scheduler.records.fencing import JobLostError
from scheduler.records.jobs import guard
from scheduler.records.metrics import RETRIES_KEY, RETRY_TOPIC, RetryEvents
from scheduler.settings import Settings

__all__ = ["Dispatcher"]

_log = logging.getLogger("scheduler.dispatch.dispatcher")


class Dispatcher(JobExecution):
    def __init__(self, service: JobService, client: Client, settings: Settings, *, owner: str | None = None) -> None:
        self.service = service
        self.store = service.store
        self.client = client
        self.settings = settings
        self.owner = owner or f"dispatcher-{secrets.token_hex(6)}"
        self._running: dict[str, RunningJob] = {}
        self._stopping = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        #: Each background loop's state for /health/diagnostics: ``running``, or ``restarting: <error>``.
        self.loops: dict[str, str] = {}
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
        for loop in (self._claim_loop, self._heartbeat_loop, self._watch_loop, self._flush_loop):
            name = loop.__name__.strip("_")
            self._tasks.append(asyncio.create_task(self._supervise(name, loop), name=f"{self.owner}-{name}"))

    async def _supervise(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run a background loop for as long as the dispatcher runs: whatever ends it (a Redis ``ResponseError``
        such as READONLY, OOM or BUSY, a bug) is logged with its traceback, shown in ``/health/diagnostics``,
        and the loop starts again after a pause that grows while it keeps failing (at most 5 s)."""
        delay = 0.25
        while not self._stopping.is_set():
            self.loops[name] = "running"
            started = time.monotonic()
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001  (the supervisor's whole point)
                self.loops[name] = f"restarting: {type(exc).__name__}: {exc}"
                _log.exception("dispatcher %s: the %s loop died; restarting it", self.owner, name)
                delay = 0.25 if time.monotonic() - started > 30 else min(delay * 2, 5.0)
                await self._pause(delay)
        self.loops[name] = "stopped"

    async def stop(self) -> None:
        """Stop taking jobs; jobs still running are left for recovery by the next dispatcher."""
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        for running in list(self._running.values()):
            if running.task is not None:
                running.task.cancel()
        await asyncio.gather(*self._tasks, *(r.task for r in self._running.values() if r.task), return_exceptions=True)
        for task in list(self._background):  # retry counts, checks of hung workers (their grace not yet over)
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
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

    def diagnostics(self) -> dict[str, Any]:
        """For ``/health/diagnostics``: the loops' states and each running job's phase history."""
        return {"owner": self.owner, "loops": dict(self.loops),
                "jobs": {job_id: running.life.describe() for job_id, running in self._running.items()}}

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
                running = RunningJob(lease.job_id, lease)
                self._apply(running, Event.CLAIMED, f"attempt {lease.attempt}")
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
                elif held[0] == "cancelled":
                    self._apply(running, Event.CANCEL_SEEN, "DELETE /jobs/{id}")

    def _apply(self, running: RunningJob, event: Event, note: str = "", *, stop: bool = True) -> None:
        """Feed an event to the job's lifecycle and take the actions it answers (the only place that does).

        ``stop=False`` from the job's own task, which is already on its way out (it must not cancel itself).
        """
        before = running.life.phase
        try:
            actions = running.life.apply(event, note)
        except IllegalTransitionError:  # a dispatcher bug: say so loudly, but let the job end
            _log.exception("job %s: %s", running.job_id, "; ".join(running.life.describe()))
            return
        if running.life.phase is not before:
            _log.debug("job %s: %s -%s-> %s %s", running.job_id, before.value, event.value,
                       running.life.phase.value, note)
        if Action.ABANDON_PUBLISH in actions and running.publisher is not None:
            running.publisher.guard.abandon(note)  # publishing stops at its next write
        if Action.STOP_TASK in actions and stop and running.task is not None:
            running.task.cancel()

    def _lose(self, running: RunningJob, reason: str, *, stop: bool = True) -> None:
        """This dispatcher no longer holds the job: stop its graph (and so its Dask tasks), write nothing."""
        if not running.life.ended:
            _log.warning("dispatcher %s lost job %s (attempt %d): %s; stopping its tasks, publishing nothing",
                         self.owner, running.job_id, running.lease.attempt, reason)
        self._apply(running, Event.LEASE_LOST, reason, stop=stop)

    async def _flush_loop(self) -> None:
        while not self._stopping.is_set():
            await self._pause(0.2)
            for running in list(self._running.values()):
                try:
                    await self._flush(running)
                except JobLostError as exc:
                    self._lose(running, exc.reason)

    async def _flush(self, running: RunningJob) -> None:
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

    def _release(self, running: RunningJob) -> None:
        # Only this run's entry: a later attempt of the same job may have replaced it (see _claim_loop).
        if self._running.get(running.job_id) is running:
            del self._running[running.job_id]
        self._slot_free.set()
