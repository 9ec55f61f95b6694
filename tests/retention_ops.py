"""A test operator that writes intermediates and one published output, and the graph that runs it.

Used by tests/test_fencing.py and tests/test_retention.py (workers import this module by name, as they do
tests/ops_testing.py). The graph is written into a test's own graphs folder (:func:`add_parts_graph`), not
into tests/graphs, so other tests' apps never need this module imported.
"""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from operators.context import OpContext
from operators.errors import OperatorError
from operators.registry import operator
from operators.types import StoredFile

__all__ = ["PARTS_GRAPH", "add_parts_graph", "write_parts"]

PARTS_GRAPH = """\
name: parts
description: Writes intermediate files and one output file (tests of fencing and retention).
inputs:
  project_id: {type: string, default: ""}
  text: {type: string, default: "hello"}
  seconds: {type: number, default: 0, minimum: 0, maximum: 60}
  fail: {type: boolean, default: false}
nodes:
  write:
    op: test.write_parts
    params: {text: $payload.text, seconds: $payload.seconds, fail: $payload.fail}
outputs:
  file: $write
clip_version: {append: renders, outputs: [file]}
"""


def add_parts_graph(folder: Path) -> Path:
    path = folder / "parts.yaml"
    path.write_text(PARTS_GRAPH)
    return path


class PartsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = "hello"
    seconds: float = Field(0.0, ge=0, le=60)
    fail: bool = False


@operator("test.write_parts")
def write_parts(*, params: PartsParams, ctx: OpContext) -> StoredFile:
    """Write two scratch chunks, wait ``seconds`` (reporting progress, so a cancel stops it), then the output."""
    for i in range(2):
        with ctx.storage.writing(ctx.output_path(f"chunks/part-{i}.bin")) as tmp:
            tmp.write_bytes(b"\0" * 64)
    steps = max(1, int(params.seconds / 0.05))
    for i in range(steps):
        time.sleep(params.seconds / steps)
        ctx.progress((i + 1) / steps)
    if params.fail:
        raise OperatorError("failed after writing its chunks")
    data = f"{params.text} (attempt {ctx.attempt})".encode()
    path = ctx.output_path("out/result.txt")
    with ctx.storage.writing(path) as tmp:
        tmp.write_bytes(data)
    return StoredFile(path=path, kind="text", content_type="text/plain", size=len(data))
