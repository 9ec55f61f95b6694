"""A test operator that moves only when the test says so, and the test's side of it (:class:`Gate`).

``test.steps`` waits on files the test creates, one per step: it reports each of its ``fractions`` as its
progress once the test opens that step's gate, and returns once the test opens the last one. A test can
then observe every step (nothing moves until it lets it), instead of hoping a sleeping operator is seen
in between. The operator also writes down each run (``runs``) and how it ended (``exit``), so a test can
tell a task that finished from one that was stopped or never ran twice.

Workers import this module by name (as they do tests/ops_testing.py); tests/conftest.py imports it for
the in-process apps, and the subprocess servers of tests/test_live.py import it before they start.

The files live under ``<media root>/gates/<job id>/<gate>``, where ``<gate>`` is the node's name, or
``<node>-<index>`` for a task of a fan-out (``each-0``, ``each-1``, ...).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from operators.context import OpContext
from operators.errors import OperatorError
from operators.registry import operator

__all__ = ["Gate", "StepsParams", "steps"]

#: The file that opens every step at once (what a test does when it is done with a task, in ``finally``).
ALL = "go-all"
_POLL = 0.01
_HEARTBEAT = 0.05


def gate_dir(media_root: Path | str, job_id: str, gate: str) -> Path:
    return Path(media_root) / "gates" / job_id / gate


class StepsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: The progress to report at each step, in order; the step after the last one returns.
    fractions: list[float] = Field(default_factory=list, max_length=20)
    #: Report the current progress again while waiting (every 50 ms), as a long operator does: that is
    #: where a task past its node's ``timeout:``, or of a cancelled job, stops itself.
    heartbeat: bool = False
    #: A gate never opened fails the task after this long, so a test that dies leaves no worker stuck.
    max_wait: float = Field(120.0, gt=0, le=600)


@operator("test.steps")
def steps(value: Any = None, *, params: StepsParams, ctx: OpContext) -> Any:
    """Report ``fractions`` one gate at a time, then return ``value`` (see the module's docstring)."""
    name = ctx.node if ctx.index is None else f"{ctx.node}-{ctx.index}"
    folder = gate_dir(ctx.storage.local_root, ctx.job_id, name)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "runs", "a", encoding="utf-8") as runs:
        runs.write(f"{os.getpid()} {ctx.attempt}\n")
    outcome = "finished"
    try:
        reported = 0.0
        for step, fraction in enumerate([*params.fractions, None], start=1):
            _wait(folder, step, params, ctx, reported)
            if fraction is not None:
                ctx.progress(fraction)
                reported = fraction
        return value
    except BaseException as exc:
        outcome = type(exc).__name__
        raise
    finally:
        partial = folder / "exit.tmp"
        partial.write_text(outcome, encoding="utf-8")
        partial.replace(folder / "exit")  # whole or absent, never half-written, for the test reading it


def _wait(folder: Path, step: int, params: StepsParams, ctx: OpContext, reported: float) -> None:
    deadline = time.monotonic() + params.max_wait
    beat = time.monotonic() + _HEARTBEAT
    while not ((folder / f"go-{step}").exists() or (folder / ALL).exists()):
        now = time.monotonic()
        if now > deadline:
            raise OperatorError(f"gate {folder.name} step {step} was not opened in {params.max_wait:g}s")
        if params.heartbeat and now >= beat:
            ctx.progress(reported)
            beat = now + _HEARTBEAT
        time.sleep(_POLL)


class Gate:
    """The test's side of one ``test.steps`` task: open its steps, see whether it started and how it ended."""

    def __init__(self, media_root: Path | str, job_id: str, gate: str) -> None:
        self.folder = gate_dir(media_root, job_id, gate)

    def open(self, step: int) -> None:
        self._touch(f"go-{step}")

    def open_all(self) -> None:
        """Let the task run to its end (whatever step it is at): call it in ``finally``."""
        self._touch(ALL)

    @property
    def runs(self) -> int:
        """How many times the task has started (a retry or a re-run after recovery starts it again)."""
        try:
            return len((self.folder / "runs").read_text(encoding="utf-8").splitlines())
        except FileNotFoundError:
            return 0

    @property
    def exit(self) -> str | None:
        """``"finished"``, the name of the exception that ended the task, or None while it has not ended."""
        try:
            return (self.folder / "exit").read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def _touch(self, name: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / name).touch()
