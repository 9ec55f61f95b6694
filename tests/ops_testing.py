"""Operators that exist only for tests of failure handling (workers import this module by name)."""

from __future__ import annotations

import os
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from operators.context import OpContext
from operators.registry import operator
from operators.types import NewClipVersion, StoredFile

__all__ = ["Traced", "chunks", "crash_once", "divide", "propose_clips", "size", "traced", "write_text"]


class CrashParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    marker: str = "crashed"


@operator("test.crash_once")
def crash_once(value: Any = None, *, params: CrashParams, ctx: OpContext) -> Any:
    """Kill the worker process the first time it runs for a job, then succeed."""
    marker = ctx.storage.local_root / f"{ctx.job_id}-{params.marker}"
    if not marker.exists():
        marker.write_text("1")
        os._exit(1)  # a hard crash, as an out-of-memory kill would be
    ctx.log("Survived a worker crash")
    return value


class WriteTextParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = "hello"
    delay: float = Field(0.0, ge=0, le=10)


@operator("test.write_text")
def write_text(*, params: WriteTextParams, ctx: OpContext) -> StoredFile:
    """Write a small text file as the job's output (for tests of what happens to output assets)."""
    if params.delay:
        ctx.log(f"Writing in {params.delay:g}s")
        time.sleep(params.delay)
    path = ctx.output_path("x.txt")
    data = params.text.encode()
    with ctx.storage.writing(path) as tmp:
        tmp.write_bytes(data)
    return StoredFile(path=path, kind="text", content_type="text/plain", size=len(data))


class ProposeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    asset: str
    count: int = Field(2, ge=0, le=10)


class Proposal(BaseModel):
    """What a clip finder returns: the clip version it proposes and why."""

    model_config = ConfigDict(frozen=True)
    clip_version_id: NewClipVersion
    start: float
    score: float


@operator("test.propose_clips")
def propose_clips(*, params: ProposeParams) -> list[Proposal]:
    """Propose ``count`` one-second clips of an asset, each as a new clip version."""
    out = []
    for i in range(params.count):
        timeline = {"canvas": {"width": 320, "height": 240, "fps": 30},
                    "tracks": [{"type": "video", "clips": [{"asset": params.asset, "in": i * 0.5, "out": i * 0.5 + 0.5}]}]}
        out.append(Proposal(clip_version_id=NewClipVersion(timeline=timeline, name=f"Clip {i + 1}",
                                                           metadata={"score": 90 - i}), start=i * 0.5, score=90 - i))
    return out


class ChunksParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    duration: float = Field(gt=0)
    chunk_seconds: float = Field(gt=0)


@operator("test.chunks")
def chunks(*, params: ChunksParams) -> list[dict[str, float]]:
    """What splitting a ``duration``-second source into ``chunk_seconds`` chunks gives, without the media:
    a 2-hour source in 1 s chunks is 7200 chunks (a probe result this machine need not encode)."""
    count = max(1, round(params.duration / params.chunk_seconds))
    step = params.duration / count
    return [{"index": i, "start": i * step, "end": (i + 1) * step} for i in range(count)]


def _arrive(data: bytes, node: str, log: str) -> Traced:
    """Unpickling a :class:`Traced` value: note which process received it, then rebuild it."""
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"{os.getpid()} {node} {len(data)}\n")
    return Traced(data, node, log)


class Traced:
    """Bytes that write down, in ``log``, the pid of every process that unpickles them.

    Dask pickles a task's result to send it anywhere: to the worker of a consumer, or to the
    dispatcher when it fetches the result. The log shows which processes received it.
    """

    def __init__(self, data: bytes, node: str, log: str) -> None:
        self.data, self.node, self.log = data, node, log

    def __reduce__(self) -> tuple[Any, tuple[bytes, str, str]]:
        return _arrive, (self.data, self.node, self.log)


class TracedParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    megabytes: float = Field(1.0, ge=0, le=64)
    items: int = Field(0, ge=0, le=100)


@operator("test.traced")
def traced(*, params: TracedParams, ctx: OpContext) -> Traced | list[Traced]:
    """``megabytes`` of bytes as a :class:`Traced` value, or a list of ``items`` of them (a list to map over).

    The log is ``<media root>/<job id>-arrivals``: one ``pid node bytes`` line per unpickling."""
    log = str(ctx.storage.local_root / f"{ctx.job_id}-arrivals")
    data = os.urandom(int(params.megabytes * 1024 * 1024))
    if params.items:
        return [Traced(data, ctx.node, log) for _ in range(params.items)]
    return Traced(data, ctx.node, log)


@operator("test.size")
def size(value: Traced) -> int:
    """The size of a :class:`Traced` value: a small result in place of a big one."""
    return len(value.data)


@operator("test.divide")
def divide(value: Any = None) -> Any:
    """Fail the way a bug does: an exception no operator expects (a traceback's worth of it)."""
    return _ratio(1, 0)


def _ratio(a: int, b: int) -> float:
    return a / b
