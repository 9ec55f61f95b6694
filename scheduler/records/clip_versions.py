"""Clip versions in Redis: the unit the editor edits, an immutable timeline over a project's assets.

A clip is a series of versions; every save of the editor is a new version with the next
number. A version never changes, except that renders and exports made from it are appended.

Layout (keys from :mod:`scheduler.records.keys`):
- ``clip:<clip_id>``                    hash: ``project_id``, ``created_at``, ``versions`` (the counter)
- ``clip_version:<id>``                 hash: ``body`` (the immutable record as JSON, with the timeline's
                                        ``timeline_schema_version``: see :mod:`.timeline_schema`), ``version``,
                                        ``updated_at``
- ``clip_version:<id>:<field>``         list of ``renders`` / ``exports`` entries (JSON), oldest first
- ``clip_version:<id>:<field>:jobs``    set of the job ids already appended there (a retry appends once)
- ``clip_versions``, ``project:<project_id>:clip_versions``, ``clip:<clip_id>:versions``
                                        sorted sets of version ids in creation order (score: a sequence)

Creating a version runs one Lua script that checks the clip's project, takes the next
number and writes the record and its indexes, so concurrent saves get distinct,
consecutive versions and no number is ever skipped or half-written.
"""

from __future__ import annotations

import json
import secrets
from typing import Any, Literal

from redis import asyncio as aioredis
from redis.exceptions import ResponseError

from scheduler.records import keys
from scheduler.records.jobs import guard, require_decoding
from scheduler.timefmt import now_ts
from scheduler.records.timeline_schema import TIMELINE_SCHEMA_VERSION, migrate_timeline

__all__ = ["OUTPUT_FIELDS", "ClipNotFoundError", "ClipVersionNotFoundError", "ClipVersionStore", "OutputField"]

OutputField = Literal["renders", "exports"]
OUTPUT_FIELDS: tuple[OutputField, ...] = ("renders", "exports")

# KEYS: clip, version, all index, project index, clip index, sequence
# ARGV: project_id, version id, body JSON, now, "1" to make a new clip
_CREATE = """
local owner = redis.call('HGET', KEYS[1], 'project_id')
if ARGV[5] == '1' then
  if owner then return {err = 'CLIPEXISTS'} end
  redis.call('HSET', KEYS[1], 'project_id', ARGV[1], 'created_at', ARGV[4])
elseif not owner then
  return {err = 'NOCLIP'}
elseif owner ~= ARGV[1] then
  return {err = 'OTHERPROJECT'}
end
local version = redis.call('HINCRBY', KEYS[1], 'versions', 1)
local seq = redis.call('INCR', KEYS[6])
redis.call('HSET', KEYS[2], 'body', ARGV[3], 'version', version, 'updated_at', ARGV[4])
redis.call('ZADD', KEYS[3], seq, ARGV[2])
redis.call('ZADD', KEYS[4], seq, ARGV[2])
redis.call('ZADD', KEYS[5], seq, ARGV[2])
return version
"""

# KEYS: version, list, job set ; ARGV: entry JSON, now, job id ('' for none)
_APPEND = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[3] ~= '' and redis.call('SADD', KEYS[3], ARGV[3]) == 0 then return 2 end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], 'updated_at', ARGV[2])
return 1
"""


class ClipVersionNotFoundError(LookupError):
    def __init__(self, cv_id: str) -> None:
        self.cv_id = cv_id
        super().__init__(f"Clip version {cv_id} not found")

    def __str__(self) -> str:
        return f"Clip version {self.cv_id} not found"


class ClipNotFoundError(ValueError):
    """A new version names a clip that does not exist, or that belongs to another project."""

    def __init__(self, clip_id: str, project_id: str, *, other_project: bool = False) -> None:
        self.clip_id, self.project_id, self.other_project = clip_id, project_id, other_project
        reason = f"is not a clip of project {project_id}" if other_project else "not found"
        super().__init__(f"Clip {clip_id} {reason}")


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


class ClipVersionStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = require_decoding(redis)
        self._create = redis.register_script(_CREATE)
        self._append = redis.register_script(_APPEND)

    # -- keys -------------------------------------------------------------------------
    @staticmethod
    def _key(cv_id: str) -> str:
        return keys.clip_version(cv_id)

    @staticmethod
    def _clip_key(clip_id: str) -> str:
        return keys.clip(clip_id)

    @staticmethod
    def _index(*, project_id: str | None = None, clip_id: str | None = None) -> str:
        if clip_id is not None:
            return keys.clip_versions_of_clip(clip_id)
        if project_id is not None:
            return keys.project_clip_versions(project_id)
        return keys.CLIP_VERSIONS

    # -- create and read --------------------------------------------------------------
    async def create(self, *, project_id: str, timeline: dict[str, Any], clip_id: str | None = None,
                     name: str | None = None, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """A new version: of a new clip (version 1), or the next version of ``clip_id``."""
        cv_id = f"cv_{secrets.token_hex(12)}"
        new_clip = clip_id is None
        clip = clip_id or f"clip_{secrets.token_hex(12)}"
        now = now_ts()
        body = {"id": cv_id, "clip_id": clip, "project_id": project_id, "name": name, "timeline": timeline,
                "timeline_schema_version": TIMELINE_SCHEMA_VERSION, "metadata": metadata or {}, "created_at": now}
        names = [self._clip_key(clip), self._key(cv_id), self._index(), self._index(project_id=project_id),
                 self._index(clip_id=clip), keys.CLIP_VERSIONS_SEQ]
        try:
            version = await guard(self._create(keys=names, args=[project_id, cv_id, _json(body), now,
                                                                "1" if new_clip else "0"]))
        except ResponseError as exc:
            if "NOCLIP" in str(exc) or "OTHERPROJECT" in str(exc):
                raise ClipNotFoundError(clip, project_id, other_project="OTHERPROJECT" in str(exc)) from None
            raise
        return _record(body, int(version), now, {"renders": [], "exports": []})

    async def get(self, cv_id: str) -> dict[str, Any]:
        records = await self._read([cv_id])
        if not records:
            raise ClipVersionNotFoundError(cv_id)
        return records[0]

    async def exists(self, cv_id: str) -> bool:
        return bool(await guard(self.redis.exists(self._key(cv_id))))

    async def list(self, *, project_id: str | None = None, clip_id: str | None = None,
                   limit: int = 50) -> list[dict[str, Any]]:
        """Newest first; of one clip, one project, or all of them."""
        ids = await guard(self.redis.zrevrange(self._index(project_id=project_id, clip_id=clip_id), 0, limit - 1))
        records = await self._read(ids)
        if clip_id is not None and project_id is not None:
            records = [r for r in records if r["project_id"] == project_id]
        return records

    async def _read(self, ids: list[str]) -> list[dict[str, Any]]:
        """The records of ``ids`` that exist, in the same order, in one round trip."""
        if not ids:
            return []

        async def read() -> list[Any]:
            async with self.redis.pipeline(transaction=False) as pipe:
                for cv_id in ids:
                    pipe.hgetall(self._key(cv_id))
                    for name in OUTPUT_FIELDS:
                        pipe.lrange(keys.clip_version_outputs(cv_id, name), 0, -1)
                return await pipe.execute()

        replies = await guard(read())
        step = 1 + len(OUTPUT_FIELDS)
        records = []
        for i in range(0, len(replies), step):
            fields = replies[i]
            if not fields:
                continue
            outputs = {name: [json.loads(x) for x in replies[i + 1 + n]] for n, name in enumerate(OUTPUT_FIELDS)}
            records.append(_record(json.loads(fields["body"]), int(fields["version"]), fields["updated_at"], outputs))
        return records

    async def delete(self, cv_id: str) -> None:
        """Remove a version and its renders/exports lists from every index (its assets stay); a clip left with no
        version is removed too. :class:`ClipVersionNotFoundError` when there is none."""
        raw = await guard(self.redis.hget(self._key(cv_id), "body"))
        if raw is None:
            raise ClipVersionNotFoundError(cv_id)
        body = json.loads(raw)
        clip, project = str(body["clip_id"]), str(body["project_id"])
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(cv_id), *(keys.clip_version_outputs(cv_id, f) for f in OUTPUT_FIELDS),
                        *(keys.clip_version_output_jobs(cv_id, f) for f in OUTPUT_FIELDS))
            for index in (self._index(), self._index(project_id=project), self._index(clip_id=clip)):
                pipe.zrem(index, cv_id)
            await guard(pipe.execute())
        if not await guard(self.redis.zcard(self._index(clip_id=clip))):
            await guard(self.redis.delete(self._clip_key(clip)))

    # -- downstream updates -----------------------------------------------------------
    async def append_output(self, cv_id: str, field: OutputField, entry: dict[str, Any]) -> dict[str, Any]:
        """Append ``entry`` to the version's ``renders`` or ``exports``; return the record.

        An entry with a ``job_id`` already in that list is not appended again, so a retried
        or recovered job leaves one entry.
        """
        if field not in OUTPUT_FIELDS:
            raise ValueError(f"field must be one of: {', '.join(OUTPUT_FIELDS)}")
        key = self._key(cv_id)
        done = await guard(self._append(keys=[key, keys.clip_version_outputs(cv_id, field),
                                              keys.clip_version_output_jobs(cv_id, field)],
                                        args=[_json(entry), now_ts(), str(entry.get("job_id") or "")]))
        if not done:
            raise ClipVersionNotFoundError(cv_id)
        return await self.get(cv_id)


def _record(body: dict[str, Any], version: int, updated_at: str, outputs: dict[str, list[Any]]) -> dict[str, Any]:
    """The public record, in a fixed key order."""
    return {
        "id": body["id"],
        "clip_id": body["clip_id"],
        "version": version,
        "project_id": body["project_id"],
        "name": body.get("name"),
        "timeline": migrate_timeline(body["timeline"], body.get("timeline_schema_version")),
        "metadata": body.get("metadata") or {},
        "renders": outputs["renders"],
        "exports": outputs["exports"],
        "created_at": body["created_at"],
        "updated_at": updated_at,
    }
