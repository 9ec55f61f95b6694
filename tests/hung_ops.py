"""A test operator that holds its worker's thread the way a call hung in C code does, and the graph that runs it.

Used by tests/test_hung_tasks.py. Workers import this module by name (the graph's op runs as
``tests.hung_ops:test.hang``); the graph is written into a test's own graphs folder (:func:`add_hung_graph`),
not into tests/graphs, so other tests' apps never need this module imported.
"""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from operators.registry import operator

__all__ = ["HUNG_GRAPH", "add_hung_graph", "hang"]

HUNG_GRAPH = """\
name: hung
description: One task that blocks its thread, with no progress reports, past its node's 1 s timeout.
inputs:
  seconds: {type: number, default: 60, minimum: 0, maximum: 600}
nodes:
  stuck:
    op: test.hang
    params: {seconds: $payload.seconds}
    timeout: 1
outputs:
  slept: $stuck
"""


def add_hung_graph(folder: Path) -> Path:
    path = folder / "hung.yaml"
    path.write_text(HUNG_GRAPH)
    return path


class HangParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(60.0, ge=0, le=600)


@operator("test.hang")
def hang(*, params: HangParams) -> float:
    """Block for ``seconds`` in one call that nothing can interrupt, as C code does: no progress, no log, no ctx.

    Dask never interrupts a running task, so a cancelled one keeps its worker's thread until the call returns."""
    time.sleep(params.seconds)
    return params.seconds
