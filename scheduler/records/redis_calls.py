"""Calling Redis from the stores: one guard for every call, a decoding check, scripts read as raw bytes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from redis import asyncio as aioredis
from redis.client import NEVER_DECODE
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError

from scheduler.errors import QueueUnavailableError
from scheduler.records.metrics import note_redis_error

__all__ = ["DELETE_IF_HELD", "EXTEND_IF_HELD", "REDIS_CALL_TIMEOUT", "decode_json", "guard", "guard_read", "raw_script",
           "require_decoding", "to_json"]

T = TypeVar("T")

#: Seconds one guarded Redis call may take before it counts as Redis being unreachable.
REDIS_CALL_TIMEOUT = 10.0

#: Lua for a lock held by a token (KEYS[1] holds ARGV[1]): extend its life to ARGV[2] ms, only while held ...
EXTEND_IF_HELD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
#: ... and give it back, only while held (a lock that lapsed and was taken by another is left to it).
DELETE_IF_HELD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


async def guard(call: Awaitable[T]) -> T:
    """Await a Redis call, turning connection problems (and a call past :data:`REDIS_CALL_TIMEOUT`)
    into :class:`QueueUnavailableError`."""
    try:
        async with asyncio.timeout(REDIS_CALL_TIMEOUT):
            return await call
    except ResponseError:
        raise
    except TimeoutError as exc:  # asyncio's (builtin TimeoutError, an OSError), from the timeout above
        note_redis_error()
        raise QueueUnavailableError(f"Timeout: no answer from Redis in {REDIS_CALL_TIMEOUT:g} s") from exc
    except (RedisError, OSError) as exc:
        note_redis_error()
        raise QueueUnavailableError(str(exc) or type(exc).__name__) from exc


async def guard_read(call: Callable[[], Awaitable[T]]) -> T:
    """:func:`guard` for a read, sent once more when the connection had dropped: a pooled connection to a
    Redis that restarted fails its first command, and a read, unlike a write, is safe to send twice."""
    try:
        return await guard(call())
    except QueueUnavailableError as exc:
        if not isinstance(exc.__cause__, RedisConnectionError):
            raise
        return await guard(call())


decode_json = msgspec.json.decode


def to_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def require_decoding(redis: aioredis.Redis) -> aioredis.Redis:
    """``redis``, when it answers text (``decode_responses=True``, as the Runtime opens it); else a TypeError.

    The stores read every reply as ``str``; a client answering bytes would make keys like ``b'job_…'``.
    """
    if not redis.get_encoder().decode_responses:
        raise TypeError("the scheduler's stores need a Redis client made with decode_responses=True")
    return redis


async def raw_script(redis: aioredis.Redis, script: Any, keys: list[str], args: list[Any]) -> Any:
    """Run a registered script and take its reply as bytes (the cached JSON goes out as it is, undecoded)."""
    try:
        return await redis.execute_command("EVALSHA", script.sha, len(keys), *keys, *args, **{NEVER_DECODE: True})
    except NoScriptError:
        script.sha = await redis.script_load(script.script)
        return await redis.execute_command("EVALSHA", script.sha, len(keys), *keys, *args, **{NEVER_DECODE: True})
