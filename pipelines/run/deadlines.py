"""Deadlines of a running graph: the job's (``MAX_JOB_SECONDS`` or the graph's ``max_job_seconds``) and each
task's (its node's ``timeout:``).

A task's clock starts when the task starts on its worker (its "started" event), not when it is submitted: a
fan-out of 100 tasks on 2 workers waits its turn without penalty. A task that hangs in C code cannot be stopped
from outside its thread, but the job ends at once, with a message, and its futures are released.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, MutableMapping
from typing import Any

__all__ = ["overdue"]


def overdue(elapsed: float, max_seconds: float | None, futures: Mapping[str, Any],
            started: MutableMapping[str, float], nodes_of: Mapping[str, tuple[Any, tuple[int, int] | None]],
            now: float | None = None) -> str | None:
    """Why the job must fail now (its message), or None. ``started`` (key -> monotonic start) loses the keys
    of tasks that are done."""
    if max_seconds is not None and elapsed > max_seconds:
        running = sorted({key.split("-")[0] for key, f in futures.items() if not f.done()})
        return (f"The job ran past its {max_seconds:g}s limit (MAX_JOB_SECONDS, or the graph's max_job_seconds) "
                f"while running {', '.join(running) or 'its last step'}; its tasks were stopped")
    now = time.monotonic() if now is None else now
    for key, began in list(started.items()):
        future = futures.get(key)
        node, position = nodes_of[key]
        if future is None or future.done():
            started.pop(key, None)
        elif node.timeout is not None and now - began > node.timeout:
            where = node.name if position is None else f"{node.name} {position[0] + 1}/{position[1]}"
            return (f"{where}: task {key} ran past its {node.timeout:g}s timeout (the node's timeout: in the graph) "
                    "and was stopped")
    return None
