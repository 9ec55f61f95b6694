"""Small operators for wiring graphs together and for tests of the engine itself."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from operators.context import OpContext
from operators.registry import operator

__all__ = ["echo", "fail", "pick", "sleep"]


class SleepParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(0.1, ge=0, le=3600)


@operator("util.echo", weight=0.1)
def echo(value: Any = None) -> Any:
    """Return the input unchanged."""
    return value


@operator("util.sleep")
def sleep(value: Any = None, *, params: SleepParams, ctx: OpContext) -> Any:
    """Wait, reporting progress, then return the input (for tests and smoke checks)."""
    steps = max(1, int(params.seconds / 0.05))
    for i in range(steps):
        time.sleep(params.seconds / steps)
        ctx.progress((i + 1) / steps)
    ctx.log(f"Slept {params.seconds:g}s")
    return value


class FailParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str = "failed on purpose"


@operator("util.fail", weight=0.1)
def fail(value: Any = None, *, params: FailParams) -> Any:
    """Raise an error with the given message (for tests of failure handling)."""
    from operators.errors import OperatorError

    raise OperatorError(params.message)


class PickParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: str


@operator("util.pick", weight=0.1)
def pick(value: Any, *, params: PickParams) -> Any:
    """Return one field of a mapping or model."""
    if isinstance(value, dict):
        return value[params.field]
    return getattr(value, params.field)
