"""What an operator knows about the task it runs in, and how it reports progress.

:class:`OpContext` is a frozen value built by the graph engine and shipped with each task.
Messages and progress travel as Dask worker events on :data:`EVENTS_TOPIC`; the
dispatcher subscribes to that topic and writes them into the job record, so a worker
never needs a connection to Redis.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from operators.storage import Storage

__all__ = ["CORES_PER_TASK_ENV", "EVENTS_TOPIC", "OpContext", "TaskCancelledError", "TaskTimeoutError", "cluster_threads", "cores_per_task"]

EVENTS_TOPIC = "ave-job-events"
#: Environment variable: how many cores one running task may keep busy (codec threads). The
#: LocalCluster sets it for its workers, CPUs / (workers x threads per worker); on a cluster
#: started elsewhere, set it in the workers' environment.
CORES_PER_TASK_ENV = "AVE_CORES_PER_TASK"
_log = logging.getLogger("operators")


def cores_per_task(default: int = 2) -> int:
    """The cores one task may keep busy (``AVE_CORES_PER_TASK``), else ``default`` (a direct call, a test)."""
    try:
        return max(1, int(os.environ.get(CORES_PER_TASK_ENV, "")))
    except ValueError:
        return default


class TaskCancelledError(Exception):
    """The task's job was cancelled while the task ran; raised from :meth:`OpContext.progress`."""


class TaskTimeoutError(Exception):
    """The task ran past its node's ``timeout:``; raised from :meth:`OpContext.progress`."""


@dataclass(frozen=True, slots=True)
class OpContext:
    """The job, node and fan-out position of one task, and the storage it reads and writes."""

    job_id: str
    node: str
    storage: Storage
    key: str = ""
    index: int | None = None
    count: int | None = None
    attempt: int = 1
    #: The node's per-task ``timeout:`` in seconds, and when this try of the task started.
    timeout: float | None = None
    started: float | None = None
    #: Say when the task starts on its worker (a "started" event) even without a timeout: the result cache
    #: records how long a task it stores took, which its hits then save.
    report_start: bool = False

    def output_path(self, name: str) -> str:
        """A storage path for an output of this job: ``jobs/<job_id>/<name>``."""
        return f"jobs/{self.job_id}/{name}"

    def log(self, message: str) -> None:
        """Add a line to the job's ``result_payload.log``."""
        self._emit({"kind": "log", "message": message})

    def progress(self, fraction: float) -> None:
        """Report how far this task is, in [0, 1]; the job's progress moves by its share.

        Raises :class:`TaskCancelledError` once the job has been cancelled: Dask cannot stop a
        running thread, so an operator that reports progress as it goes is also where it stops,
        and its worker is free for the next job within one step instead of at the task's end.
        """
        if self.timeout is not None and self.started is not None and time.time() - self.started > self.timeout:
            raise TaskTimeoutError(f"the task ran past its {self.timeout:g}s timeout")
        worker = _current_worker()
        if worker is not None and self.key:
            task = worker.state.tasks.get(self.key)
            if task is None or task.state in ("cancelled", "released"):
                raise TaskCancelledError(f"{self.node}: task {self.key} was cancelled")
        self._emit({"kind": "progress", "fraction": min(1.0, max(0.0, float(fraction)))}, worker)

    def _emit(self, event: dict[str, Any], worker: Any = None) -> None:
        event.update(job_id=self.job_id, node=self.node, key=self.key, time=time.time())
        worker = worker or _current_worker()
        if worker is None:
            # Not inside a Dask worker (a direct call, e.g. from a test or a script).
            level = logging.INFO if "message" in event else logging.DEBUG
            _log.log(level, "%s %s: %s", self.job_id, self.node, event.get("message", event))
            return
        worker.log_event(EVENTS_TOPIC, event)


def cluster_threads(default: int = 1) -> int:
    """How many tasks the cluster runs at once (its worker threads), asked from inside a task; else ``default``."""
    if _current_worker() is None:
        return default
    try:
        from distributed import get_client

        return max(1, sum(get_client().nthreads().values()))
    except (OSError, ValueError, RuntimeError):
        return default


def _current_worker() -> Any:
    """The Dask worker running this thread's task, or None outside one."""
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None
