"""Paging a listing index (a sorted set by creation time, newest first) with a cursor, not an offset.

An offset shifts as new records arrive at the head (a client paging through jobs while more are submitted would
see some twice); the cursor names the last record a page held, by its score and id, and the next page starts
right after it. Members with equal scores come in reverse member order (ZREVRANGEBYSCORE), which the cursor
follows too. The cursor travels as an opaque token (``<score>:<id>``, base64url), in the ``Link`` header.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from redis import asyncio as aioredis

from scheduler.records.redis_calls import guard

__all__ = ["Cursor", "CursorError", "Page", "ids_after"]


class CursorError(ValueError):
    """A cursor this server did not make (or made for another listing)."""


@dataclass(frozen=True, slots=True)
class Cursor:
    score: float
    member: str

    def token(self) -> str:
        return base64.urlsafe_b64encode(f"{self.score!r}:{self.member}".encode()).decode().rstrip("=")

    @classmethod
    def parse(cls, token: str) -> Cursor:
        try:
            text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            score, member = text.split(":", 1)
            return cls(float(score), member)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise CursorError("cursor is not one this server gave: use the Link header's next URL") from None


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    #: Where the next page starts; None on the last page.
    next: Cursor | None


async def ids_after(redis: aioredis.Redis, index: str, cursor: Cursor | None,
                    count: int) -> list[tuple[str, float]]:
    """Up to ``count`` (member, score) of ``index``, newest first, after ``cursor`` (from the head: None)."""
    if cursor is None:
        return list(await guard(redis.zrevrange(index, 0, count - 1, withscores=True)))
    if cursor.score == float("-inf"):
        return []  # past everything
    found: list[tuple[str, float]] = []
    offset = 0
    while len(found) < count:
        # Members tied with the cursor's score that come before it are skipped; read a little more for them.
        batch = await guard(redis.zrevrangebyscore(index, cursor.score, "-inf", start=offset, num=count + 8,
                                                   withscores=True))
        if not batch:
            break
        offset += len(batch)
        found += [(m, s) for m, s in batch if s < cursor.score or m < cursor.member]
    return found[:count]
