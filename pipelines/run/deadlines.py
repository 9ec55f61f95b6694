"""Deadlines of a running graph: the job's (``MAX_JOB_SECONDS`` or the graph's ``max_job_seconds``) and each
task's (its node's ``timeout:``).

A task's clock starts when the task starts on its worker (its "started" event), not when it is submitted: a
fan-out of 100 tasks on 2 workers waits its turn without penalty. A task that hangs in C code cannot be stopped
from outside its thread, but the job ends at once, with a message, and its futures are released; the keys of
the tasks that were overdue stay known (:attr:`Deadlines.late`), so that the worker whose thread such a task
keeps can be restarted after a grace period (:mod:`pipelines.run.stuck`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, NamedTuple

from pipelines.run.task import step_name

__all__ = ["Deadlines", "Late", "overdue"]


class Late(NamedTuple):
    """Why the job must fail now, and the keys of the tasks that were running past their deadline."""

    message: str
    keys: tuple[str, ...]


def overdue(elapsed: float, max_seconds: float | None, futures: Mapping[str, Any],
            started: MutableMapping[str, float], nodes_of: Mapping[str, tuple[Any, tuple[int, int] | None]],
            now: float | None = None) -> Late | None:
    """Why the job must fail now (its message and the overdue tasks' keys), or None. ``started`` (key -> monotonic
    start) loses the keys of tasks that are done."""
    if max_seconds is not None and elapsed > max_seconds:
        running = [key for key, f in futures.items() if not f.done()]
        steps = sorted({key.split("-")[0] for key in running})
        return Late(f"The job ran past its {max_seconds:g}s limit (MAX_JOB_SECONDS, or the graph's max_job_seconds) "
                    f"while running {', '.join(steps) or 'its last step'}; its tasks were stopped", tuple(running))
    now = time.monotonic() if now is None else now
    for key, began in list(started.items()):
        future = futures.get(key)
        node, position = nodes_of[key]
        if future is None or future.done():
            started.pop(key, None)
        elif node.timeout is not None and now - began > node.timeout:
            return Late(f"The job's {step_name(node.name, position)} ran past its {node.timeout:g}s timeout (the "
                        f"step's timeout: in the graph) and was stopped (task {key}). A longer or larger file may need "
                        "a longer timeout", (key,))
    return None


class Deadlines:
    """The deadlines of one run of a graph, and what ran past them."""

    def __init__(self, max_seconds: float | None) -> None:
        #: The whole job's deadline: the graph's ``max_job_seconds``, else the caller's (MAX_JOB_SECONDS).
        self.max_seconds = max_seconds
        self.began = time.monotonic()
        #: key -> monotonic start of the started tasks whose node has a ``timeout:``.
        self.started: dict[str, float] = {}
        #: key -> (node, position in its fan-out) of the tasks whose node has a ``timeout:``.
        self.nodes_of: dict[str, tuple[Any, tuple[int, int] | None]] = {}
        #: The keys of the tasks that were running past a deadline when the job failed at it.
        self.late: tuple[str, ...] = ()

    def armed(self, nodes: Any) -> bool:
        """Whether the run needs a watchdog: a deadline for the job, or a ``timeout:`` on one of ``nodes``."""
        return bool(self.max_seconds) or any(node.timeout for node in nodes)

    def track(self, key: str, node: Any, index: int | None, count: int | None) -> None:
        """A task submitted for ``node`` (item ``index`` of ``count`` in a fan-out)."""
        if node.timeout is not None:
            self.nodes_of[key] = (node, (index, count) if index is not None and count is not None else None)

    def start(self, key: str) -> None:
        """A tracked task started on its worker (its "started" event): its clock starts."""
        if key in self.nodes_of:
            self.started[key] = time.monotonic()

    def clear(self) -> None:
        self.started.clear()
        self.nodes_of.clear()

    async def watch(self, futures: Mapping[str, Any], done: Callable[[], bool], finished: asyncio.Event) -> str | None:
        """Wait until the job or one of its tasks runs past its deadline (the job's message; :attr:`late` then
        names the overdue tasks), or until ``done()`` (None). ``finished`` wakes it at once when the last node
        finishes, so a job never ends late for its watchdog."""
        while not done():
            late = overdue(time.monotonic() - self.began, self.max_seconds, futures, self.started, self.nodes_of)
            if late is not None:
                self.late = late.keys
                return late.message
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), timeout=0.1)
        return None
