"""Operators that exist only for tests of failure handling (workers import this module by name)."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict

from operators.context import OpContext
from operators.registry import operator

__all__ = ["crash_once"]


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
