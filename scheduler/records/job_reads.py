"""Reading job records: the public record (exactly the reference's fields), one record (as JSON, cached while it is
unchanged), its holder, and listings paged with a cursor.

The read half of :class:`scheduler.records.jobs.JobStore` (which subclasses :class:`JobReads`); every key comes
from :mod:`scheduler.records.keys`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from redis import asyncio as aioredis
from redis.commands.core import AsyncScript

from scheduler.errors import JobNotFoundError
from scheduler.records import jobs_lua as lua
from scheduler.records import keys
from scheduler.records.pages import Cursor, Page, ids_after
from scheduler.records.redis_calls import decode_json, guard, guard_read, raw_script

__all__ = ["JSON_CACHE_SECONDS", "JobReads", "public_record"]

_decode_json = msgspec.json.decode


def _eta(fields: dict[str, str]) -> float | None:
    """Seconds left, estimated by the dispatcher from the progress rate; 0 once completed, else null."""
    status = fields.get("status")
    if status == "completed":
        return 0.0
    raw = fields.get("eta") or "null"
    if status != "in_progress" or raw == "null":
        return None
    return float(raw)


def public_record(fields: dict[str, str], log: list[dict[str, Any]], queue_name: str) -> dict[str, Any]:
    """Assemble the public record: exactly the reference's fields, in its order."""
    status = fields["status"]
    result_payload: dict[str, Any] | None = None
    if fields.get("started_at") or fields.get("result") or log:
        result_payload = {"progress": float(fields.get("progress") or 0), "eta_seconds": _eta(fields), "log": log}
        if fields.get("result"):
            extra = _decode_json(fields["result"])
            for key in ("progress", "eta_seconds", "log"):
                extra.pop(key, None)
            result_payload.update(extra)
    return {
        "id": fields["id"],
        "created_at": fields["created_at"],
        "updated_at": fields["updated_at"],
        "clip_version_id": _decode_json(fields.get("clip_version_id") or "null"),
        "job_type": fields["job_type"],
        "status": status,
        "queue_name": queue_name,
        "priority": int(fields.get("priority") or 0),
        "payload": _decode_json(fields.get("payload") or "{}"),
        "result_payload": result_payload,
        "error_message": fields.get("error_message") or None,
        "started_at": fields.get("started_at") or None,
        "completed_at": fields.get("completed_at") or None,
    }


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
    #: The indexes hold every job (``ave:jobs:indexed`` was seen): this instance stops checking.
    _jobs_indexed = False

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

    async def list(self, *, status: str | None = None, job_type: str | None = None, project_id: str | None = None,
                   limit: int = 50) -> list[dict[str, Any]]:
        """The first page of :meth:`page`."""
        return (await self.page(status=status, job_type=job_type, project_id=project_id, limit=limit)).items

    async def page(self, *, status: str | None = None, job_type: str | None = None, project_id: str | None = None,
                   limit: int = 50, after: Cursor | None = None) -> Page:
        """Newest first, filtered by status, job type and project, after ``after``: pages of the index that filters
        (a project, a status, a type, else every job), each batch's records read in one round trip, so a page
        costs about its own length. An id whose record expired is skipped, and dropped from an index that is not
        the main one (the sweep keeps that)."""
        await self._index_existing_jobs()
        index = (keys.jobs_of_project(project_id) if project_id else keys.jobs_in_status(status) if status
                 else keys.jobs_of_type(job_type) if job_type else keys.JOBS)
        found: list[dict[str, Any]] = []
        cursor, more = after, True
        # With more than one filter the index filters one: read ahead.
        batch = limit if sum(map(bool, (status, job_type, project_id))) <= 1 else max(20, 2 * limit)
        while len(found) < limit and more:
            entries = await ids_after(self.redis, index, cursor, batch)
            more = len(entries) == batch
            ids = [job_id for job_id, _ in entries]
            gone = []
            for (job_id, score), raw in zip(entries, await guard_read(lambda ids=ids: self._read_many(ids))):
                cursor = Cursor(score, job_id)
                if not raw:
                    gone.append(job_id)
                    continue
                record = self._parse(raw)[0]
                # A status that moved on since this batch was read: skipped (its scripts keep the indexes).
                if ((not status or record["status"] == status) and (not job_type or record["job_type"] == job_type)
                        and (not project_id or record["payload"].get("project_id") == project_id)):
                    found.append(record)
                    if len(found) >= limit:
                        more = more or job_id != ids[-1]
                        break
            if gone and index != keys.JOBS:
                await guard(self.redis.zrem(index, *gone))
        return Page(found, cursor if more and found else None)

    async def unfinished_naming(self, record_id: str) -> list[str]:
        """The ids of jobs not finished (pending, queued, in progress) whose payload or clip version names
        ``record_id`` (an asset or a clip version id): what deleting that record would pull from under them."""
        ids = [i for status in ("pending", "queued", "in_progress")
               for i in await guard(self.redis.zrange(keys.jobs_in_status(status), 0, -1))]
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(self._key(job_id), ["payload", "clip_version_id", "status"])
            fields = await guard(pipe.execute())
        quoted = f'"{record_id}"'  # ids are random tokens: as a JSON string they name nothing else
        return [job_id for job_id, (payload, cv, status) in zip(ids, fields)
                if status in ("pending", "queued", "in_progress") and (quoted in (payload or "") or quoted == cv)]

    async def _read_many(self, ids: list[str]) -> list[Any]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                # With a pipeline the script is queued, and the pipeline loads it first if Redis lacks it.
                await self._read(keys=[self._key(job_id), self._log_key(job_id)], client=pipe)
            return await pipe.execute()  # type: ignore[no-any-return]

    async def _index_existing_jobs(self) -> None:
        """Build the status, type and project indexes once for jobs stored before they existed (an upgrade).
        Once seen built, this store does not ask again: no extra round trip on every listing."""
        if self._jobs_indexed:
            return
        if await guard(self.redis.exists(keys.JOBS_INDEXED)):
            self._jobs_indexed = True
            return
        ids = await guard(self.redis.zrange(keys.JOBS, 0, -1, withscores=True))
        for chunk in (ids[i:i + 500] for i in range(0, len(ids), 500)):
            async with self.redis.pipeline(transaction=False) as pipe:
                for job_id, _ in chunk:
                    pipe.hmget(self._key(job_id), ["status", "job_type", "payload"])
                fields = await guard(pipe.execute())
            async with self.redis.pipeline(transaction=False) as pipe:
                for (job_id, born), (status, job_type, payload) in zip(chunk, fields):
                    if status:
                        pipe.zadd(keys.jobs_in_status(status), {job_id: born})
                        pipe.zadd(keys.jobs_of_type(job_type), {job_id: born})
                        project = decode_json(payload or "{}").get("project_id")
                        if isinstance(project, str) and project:
                            pipe.zadd(keys.jobs_of_project(project), {job_id: born})
                await guard(pipe.execute())
        await guard(self.redis.set(keys.JOBS_INDEXED, "1"))
        self._jobs_indexed = True
