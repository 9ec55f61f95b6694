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
        """Newest first, filtered by status and job type: pages of the index that filters most (every job, by
        status, by type), each page's records read in one round trip, so a listing costs about its own length.

        An id whose record expired is skipped, and dropped from a status or type index that still holds it.
        """
        await self._index_existing_jobs()
        index = keys.jobs_in_status(status) if status else keys.jobs_of_type(job_type) if job_type else keys.JOBS
        found: list[dict[str, Any]] = []
        # With both filters the index filters one: read ahead. With one or none, every entry should match.
        start, page = 0, max(20, 2 * limit) if status and job_type else limit
        while len(found) < limit:
            ids = await guard(self.redis.zrevrange(index, start, start + page - 1))
            if not ids:
                break
            start += page
            gone = []
            for job_id, raw in zip(ids, await guard_read(lambda ids=ids: self._read_many(ids))):
                if not raw:
                    gone.append(job_id)
                    continue
                record = self._parse(raw)[0]
                # A status that moved on since this page was read: skipped (its scripts keep the indexes).
                if (not status or record["status"] == status) and (not job_type or record["job_type"] == job_type):
                    found.append(record)
                    if len(found) >= limit:
                        break
            if gone and index != keys.JOBS:  # the sweep keeps the main index; the others heal as they are met
                await guard(self.redis.zrem(index, *gone))
                start -= len(gone)
        return found

    async def _read_many(self, ids: list[str]) -> list[Any]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                # With a pipeline the script is queued, and the pipeline loads it first if Redis lacks it.
                await self._read(keys=[self._key(job_id), self._log_key(job_id)], client=pipe)
            return await pipe.execute()  # type: ignore[no-any-return]

    async def _index_existing_jobs(self) -> None:
        """Build the status and type indexes once for jobs stored before they existed (an upgrade)."""
        if await guard(self.redis.exists(keys.JOBS_INDEXED)):
            return
        ids = await guard(self.redis.zrange(keys.JOBS, 0, -1, withscores=True))
        for chunk in (ids[i:i + 500] for i in range(0, len(ids), 500)):
            async with self.redis.pipeline(transaction=False) as pipe:
                for job_id, _ in chunk:
                    pipe.hmget(self._key(job_id), ["status", "job_type"])
                fields = await guard(pipe.execute())
            async with self.redis.pipeline(transaction=False) as pipe:
                for (job_id, born), (status, job_type) in zip(chunk, fields):
                    if status:
                        pipe.zadd(keys.jobs_in_status(status), {job_id: born})
                        pipe.zadd(keys.jobs_of_type(job_type), {job_id: born})
                await guard(pipe.execute())
        await guard(self.redis.set(keys.JOBS_INDEXED, "1"))
