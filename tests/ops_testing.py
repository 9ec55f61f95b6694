"""Operators that exist only for tests of failure handling (workers import this module by name)."""

from __future__ import annotations

import os
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from operators.context import OpContext
from operators.registry import operator
from operators.types import NewClipVersion, StoredFile

__all__ = ["crash_once", "write_text"]


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
