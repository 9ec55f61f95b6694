"""Reading job records: one record (as the reference's JSON, cached while it is unchanged), its holder, a listing.

The read half of :class:`scheduler.records.jobs.JobStore` (which subclasses :class:`JobReads`); every key comes
from :mod:`scheduler.records.keys`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis import asyncio as aioredis
from redis.commands.core import AsyncScript

from scheduler.errors import JobNotFoundError
from scheduler.records import jobs_lua as lua
from scheduler.records import keys
from scheduler.records.job_record import public_record
from scheduler.records.redis_calls import decode_json, guard, guard_read, raw_script

__all__ = ["JSON_CACHE_SECONDS", "JobReads"]

#: Seconds a record's cached JSON is kept (clients poll a job while it runs; then it is only memory).
JSON_CACHE_SECONDS = 60


class JobReads:
    """Job records read back: exactly the reference's fields."""

    redis: aioredis.Redis
    queue_name: str
    _read: AsyncScript
    _read_cached: AsyncScript
    _cache: AsyncScript
    _key = staticmethod(keys.job)
    _log_key = staticmethod(keys.job_log)

    async def get(self, job_id: str) -> dict[str, Any]:
        """The job record with exactly the reference's fields."""
        return (await self.snapshot(job_id))[0]

    async def get_json(self, job_id: str, encode: Callable[[Any], bytes]) -> bytes:
        """``encode(record)``, from the record's cached JSON when it has not changed since (one round trip and
        no decoding: what a polling client asks for again and again); else read, encoded and cached."""
        key = self._key(job_id)
        raw = await guard_read(lambda: raw_script(self.redis, self._read_cached,
                                                  [key, self._log_key(job_id), keys.job_json(job_id)], []))
        if not raw:
            raise JobNotFoundError(job_id)
        if raw[:1] == b"{":
            return raw  # type: ignore[no-any-return]
        record, rev = self._parse(raw.decode())
        body = encode(record)
        await guard(self._cache(keys=[key, keys.job_json(job_id)], args=[str(rev), body, JSON_CACHE_SECONDS]))
        return body

    async def snapshot(self, job_id: str) -> tuple[dict[str, Any], int]:
        """The job record and its ``rev`` (how many changes it has had), read together."""
        raw = await guard_read(lambda: self._read(keys=[self._key(job_id), self._log_key(job_id)]))
        if not raw:
            raise JobNotFoundError(job_id)
        return self._parse(raw)

    def _parse(self, raw: str) -> tuple[dict[str, Any], int]:
        values = raw.split("\0", len(lua.READ_FIELDS))
        fields = dict(zip(lua.READ_FIELDS, values))
        log_text = values[-1]
        log = decode_json(f"[{log_text.replace(chr(10), ',')}]") if log_text else []
        return public_record(fields, log, self.queue_name), int(fields.get("rev") or 0)

    async def status(self, job_id: str) -> str | None:
        return await guard(self.redis.hget(self._key(job_id), "status"))  # type: ignore[no-any-return]

    async def holder(self, job_id: str) -> tuple[str, str, int] | None:
        """``(status, owner, attempt)`` of a job, or None when it does not exist (one cheap read)."""
        status, owner, attempts = await guard(self.redis.hmget(self._key(job_id), ["status", "owner", "attempts"]))
        if status is None:
            return None
        return status, owner or "", int(attempts or 0)

    async def internal(self, job_id: str) -> dict[str, str]:
        """Raw fields, including ``attempts`` and ``owner``."""
        fields = await guard(self.redis.hgetall(self._key(job_id)))
        if not fields:
            raise JobNotFoundError(job_id)
        return fields  # type: ignore[no-any-return]

    async def list(self, *, status: str | None = None, job_type: str | None = None,
                   limit: int = 50) -> list[dict[str, Any]]:
        """Newest first, filtered by status and job type (a job whose record expired is skipped)."""
        found: list[dict[str, Any]] = []
        start, page = 0, max(50, limit * 2)
        while len(found) < limit:
            ids = await guard(self.redis.zrevrange(keys.JOBS, start, start + page - 1))
            if not ids:
                break
            start += page
            for job_id in ids:
                try:
                    record = await self.get(job_id)
                except JobNotFoundError:
                    continue
                if status and record["status"] != status:
                    continue
                if job_type and record["job_type"] != job_type:
                    continue
                found.append(record)
                if len(found) >= limit:
                    break
        return found
