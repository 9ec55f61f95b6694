"""What runs on a Dask worker: fill a node's inputs in, call its operator.

The task function and everything it is given pickle cheaply: the operator travels by
name and the worker looks it up in its own registry.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from operators.context import OpContext
from operators.errors import OperatorError
from pipelines.refs import map_tree

__all__ = ["Each", "Slot", "TaskFailed", "access", "describe_failure", "fill", "run_task", "step_name"]

_log = logging.getLogger("pipelines.run.task")


@dataclass(frozen=True, slots=True)
class Slot:
    """Positional argument ``index`` of the task (a resolved future), then ``path`` inside it."""

    index: int
    path: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Each:
    """Positional argument ``index`` is a list; apply ``path`` to each element."""

    index: int
    path: tuple[str, ...] = ()


def access(value: Any, path: tuple[str, ...]) -> Any:
    """Follow ``path`` into a model, mapping or list: ``("video", "width")``."""
    for part in path:
        if value is None:  # a field of "nothing" is nothing: optional outputs flow through
            return None
        if isinstance(value, dict):
            value = value[part]
        elif isinstance(value, list | tuple) and part.lstrip("-").isdigit():
            value = value[int(part)]
        elif isinstance(value, BaseModel) or hasattr(value, part):
            value = getattr(value, part)
        else:
            raise KeyError(f"no field '{part}' in {type(value).__name__}")
    return value


def fill(template: Any, args: tuple[Any, ...]) -> Any:
    """Replace every :class:`Slot` and :class:`Each` in ``template`` with its value."""

    def leaf(value: Any) -> Any:
        if isinstance(value, Slot):
            return access(args[value.index], value.path)
        if isinstance(value, Each):
            return [access(v, value.path) for v in args[value.index]]
        return value

    return map_tree(template, leaf)


def run_task(op_name: str, params: BaseModel, ctx: OpContext, template: dict[str, Any], *args: Any) -> Any:
    """Run one operator call on a worker.

    ``op_name`` is ``module:name``: the worker imports the module that registered the
    operator, so operators outside the built-in packages (plugins) work on any worker.
    """
    import dataclasses
    import importlib
    import time

    from operators.registry import get_operator

    module, _, op_name = op_name.rpartition(":")
    if module:
        importlib.import_module(module)
    spec = get_operator(op_name)
    if ctx.timeout is not None or ctx.report_start:
        # The dispatcher's watchdog counts the timeout from this event (the cache, a stored task's seconds); the
        # operator's own progress calls stop it cooperatively at the same limit.
        ctx = dataclasses.replace(ctx, started=time.time())
        ctx._emit({"kind": "started"})
    kwargs = fill(template, args)
    if spec.wants_params:
        kwargs["params"] = params
    if spec.wants_ctx:
        kwargs["ctx"] = ctx
    try:
        return spec.func(**kwargs)
    except Exception as exc:
        # Dependents of a failed task report the same exception, so the message names
        # the task where it started; the job's error_message then points at the cause.
        position = (ctx.index, ctx.count) if ctx.index is not None and ctx.count is not None else None
        message = describe_failure(ctx.node, ctx.key, exc, position)
        details = traceback.format_exc()
        # The worker's own log keeps the traceback with the job id; it also travels with the failure (below),
        # so the dispatcher logs it too. The job's error_message stays the short message.
        _log.error("job %s: task %s failed: %s\n%s", ctx.job_id, ctx.key, message, details)
        raise TaskFailed(message, details) from None


class TaskFailed(Exception):
    """A task's failure, already worded for a person; ``details`` is the traceback, for logs."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message, details)  # both in args: the exception pickles whole to the dispatcher
        self.message, self.details = message, details

    def __str__(self) -> str:
        return self.message


def step_name(node: str, position: tuple[int, int] | None = None) -> str:
    """How a message names a step of the job: ``step 'transcode'``, ``step 'transcode', part 4 of 12``."""
    return f"step '{node}'" if position is None else f"step '{node}', part {position[0] + 1} of {position[1]}"


def describe_failure(node: str, key: str, exc: BaseException, position: tuple[int, int] | None) -> str:
    """A message a person can act on: what is wrong with the file or the request first, then the step it came
    from (in parentheses, for whoever reads the graph), never a traceback."""
    step = step_name(node, position)
    name = type(exc).__name__
    if isinstance(exc, TaskFailed):
        return str(exc)
    if name == "KilledWorker":
        return (f"The worker running this job's {step} died repeatedly: the input may exhaust a worker's memory or "
                f"crash the decoder. Try a shorter or smaller file; if it keeps failing, report it (task {key})")
    from operators.context import TaskTimeoutError

    if isinstance(exc, OperatorError | FileNotFoundError | TaskTimeoutError):
        text = str(exc)
        return f"{text[:1].upper()}{text[1:]} ({step})"
    return (f"Internal error in {step}: {name}: {exc or 'no details'}. The job can be submitted again; if it fails "
            "the same way, please report it")
