"""Workers whose thread a task still holds after its job failed at a deadline: restarted through their nanny.

Dask never interrupts a running task. When a job fails at its deadline (:mod:`pipelines.run.deadlines`) its
futures are released and the worker marks the task cancelled, but the thread runs on until the call returns,
and a call hung in C code never does: the worker would lose that thread for good, and the cluster a thread
per such job. So before the futures are released the run asks the scheduler which workers run the overdue
tasks (:func:`watch_hung`, one round trip); after a grace period (``HUNG_TASK_GRACE_SECONDS``) a background
task asks each of those workers whether a thread still runs one of them (a cancelled task stays in the
worker's ``executing`` or ``long_running`` set, in state "cancelled", until its thread returns) and restarts
each one that does through its nanny. A worker without a nanny cannot be restarted: that is logged.

The job's end never waits for the check: it outlives the run (the dispatcher holds it) and never raises.
Restarting a worker also stops whatever else runs on it; Dask runs those tasks again elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from distributed import Client

__all__ = ["HUNG_TASK_GRACE_SECONDS", "watch_hung"]

_log = logging.getLogger("pipelines.run.stuck")

#: Default seconds a task past its deadline may keep its worker's thread before that worker is restarted.
HUNG_TASK_GRACE_SECONDS = 30.0
_LOOKUP_SECONDS = 2.0  # the scheduler's answer on where the tasks run (the job's end waits for it)
_PROBE_SECONDS = 10.0  # a worker's answer on what its threads run; past it, its event loop is held too
_RESTART_SECONDS = 60.0

LogSink = Callable[[str], Any]


async def watch_hung(client: Client, job_id: str, keys: Iterable[str], *, grace: float,
                     log: LogSink | None = None) -> asyncio.Task[None] | None:
    """Note which workers run ``keys`` now (call it before their futures are released) and start the check
    that restarts those still running them after ``grace`` seconds: the check's task (hold it: it outlives the
    run), or None when none of them runs on a worker. Raises nothing but a cancellation."""
    wanted = set(keys)
    if not wanted:
        return None
    try:
        where = await asyncio.wait_for(_locate(client, wanted), _LOOKUP_SECONDS)
    except Exception as exc:  # noqa: BLE001  (the job fails all the same; its workers are left as they are)
        _log.warning("job %s: could not ask the scheduler where its overdue tasks run (%s: %s); a worker they "
                     "hold will not be restarted", job_id, type(exc).__name__, exc)
        return None
    if not where:
        return None
    _log.info("job %s: overdue tasks %s run on %s; checking them again in %gs", job_id, sorted(wanted),
              ", ".join(sorted(where)), grace)
    return asyncio.create_task(_check(client, job_id, where, grace, log), name=f"hung-tasks-{job_id}")


async def _locate(client: Client, keys: set[str]) -> dict[str, list[str]]:
    """worker address -> the ones of ``keys`` the scheduler has it processing."""
    processing = await client.processing()
    return {addr: sorted(keys.intersection(map(str, on))) for addr, on in processing.items()
            if keys.intersection(map(str, on))}


def running_keys(dask_worker: Any) -> list[str]:
    """On a worker: the keys of the tasks a thread of it runs, cancelled ones included (until their call returns)."""
    return sorted(str(ts.key) for ts in dask_worker.state.all_running_tasks)


async def _check(client: Client, job_id: str, where: dict[str, list[str]], grace: float, log: LogSink | None) -> None:
    try:
        await asyncio.sleep(grace)
        workers = (await client.scheduler.identity(n_workers=-1))["workers"]
        for addr, keys in where.items():
            await _check_worker(client, job_id, addr, keys, workers.get(addr), grace, log)
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001  (a background check: it must never raise)
        _log.exception("job %s: checking the workers of its overdue tasks failed", job_id)


async def _check_worker(client: Client, job_id: str, addr: str, keys: list[str], info: dict[str, Any] | None,
                        grace: float, log: LogSink | None) -> None:
    if info is None:
        _log.info("job %s: worker %s, which ran its overdue tasks, is gone already", job_id, addr)
        return
    try:
        answers = await asyncio.wait_for(client.run(running_keys, workers=[addr], on_error="return"), _PROBE_SECONDS)
        answer = answers.get(addr, [])
    except TimeoutError:
        answer = None
    except Exception as exc:  # noqa: BLE001  (gone meanwhile, or not reachable: nothing to restart)
        answer = exc
    if isinstance(answer, BaseException):
        _log.warning("job %s: could not ask worker %s what it runs (%s: %s); it is left as it is",
                     job_id, addr, type(answer).__name__, answer)
        return
    if answer is None:
        held, why = keys, f"does not answer (its event loop is held too) while it ran task {', '.join(keys)}"
    else:
        held = sorted(set(keys).intersection(answer))
        why = f"still runs task {', '.join(held)}"
    if not held:
        _log.debug("job %s: worker %s let go of its overdue tasks", job_id, addr)
        return
    what = f"Worker {addr} {why} {grace:g}s after the job failed"
    if not info.get("nanny"):
        _tell(log, f"{what}; it has no nanny and cannot be restarted, so that thread stays lost")
        _log.warning("job %s: %s; it has no nanny and cannot be restarted, so that thread stays lost", job_id, what)
        return
    _tell(log, f"{what}: restarting it")
    _log.warning("job %s: %s: restarting it through its nanny", job_id, what)
    result = await client.restart_workers([addr], timeout=_RESTART_SECONDS, raise_for_error=False)
    status = result.get(addr) if isinstance(result, dict) else result
    if status == "OK":
        _log.info("job %s: worker %s restarted", job_id, addr)
        _tell(log, f"Worker {addr} restarted")
    else:
        _log.warning("job %s: restarting worker %s: %s", job_id, addr, status)
        _tell(log, f"Restarting worker {addr}: {status}")


def _tell(log: LogSink | None, message: str) -> None:
    """A line in the job's log; a failing sink is only logged (the check must not stop for it)."""
    if log is None:
        return
    try:
        result = log(message)
        if asyncio.iscoroutine(result):
            asyncio.ensure_future(result)
    except Exception:  # noqa: BLE001
        _log.debug("writing %r to the job's log failed", message, exc_info=True)
