"""Asset records in Redis: uploaded sources and every file a job produces.

``ave:asset:<id>`` holds the record as JSON; ``ave:project:<project_id>:assets`` lists
a project's assets. The record's ``path`` is relative to the media root.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from redis import asyncio as aioredis
from redis.exceptions import WatchError

from operators.types import StoredFile
from scheduler.records import keys
from scheduler.records.jobs import guard, require_decoding
from scheduler.records.pages import Cursor, Page, ids_after
from scheduler.timefmt import now_ts

__all__ = ["AssetNotFoundError", "AssetStore", "Writer", "public_asset"]


#: Runs a record's Redis writes (``[["SET", key, value], ...]``) atomically, its own way: the dispatcher
#: publishing a job's outputs passes ``JobStore.fenced_write`` bound to its lease.
Writer = Callable[[list[list[str]]], Awaitable[None]]


class AssetNotFoundError(LookupError):
    def __init__(self, asset_id: str) -> None:
        self.asset_id = asset_id
        super().__init__(f"Asset {asset_id} not found")

    def __str__(self) -> str:
        return f"Asset {self.asset_id} not found"


_PROMOTED_META = ("width", "height", "duration")


def public_asset(record: dict[str, Any]) -> dict[str, Any]:
    """The record as the API shows it: no storage path, plus where to download it."""
    shown = {k: v for k, v in record.items() if k != "path"}
    # A client picking a proxy rendition or laying out a timeline reads these first: show
    # them beside the id rather than only inside the operator-specific ``meta``.
    for key in _PROMOTED_META:
        if key in (record.get("meta") or {}):
            shown.setdefault(key, record["meta"][key])
    shown["url"] = f"/assets/{record['id']}/content"
    return shown


class AssetStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = require_decoding(redis)
        #: Projects whose sorted indexes this store has seen built: no check on their every listing.
        self._indexed_projects: set[str] = set()

    @staticmethod
    def new_id() -> str:
        return f"asset_{secrets.token_hex(12)}"

    @staticmethod
    def stable_id(*parts: object) -> str:
        """An id that the same parts always give (a job run's output: job, attempt, path), so writing its
        record again after a lost reply overwrites it rather than adding a second."""
        return f"asset_{hashlib.sha256(chr(0).join(map(str, parts)).encode()).hexdigest()[:24]}"

    async def create(self, *, path: str, kind: str, content_type: str, size: int, project_id: str | None,
                     filename: str | None = None, sha256: str | None = None, job_id: str | None = None,
                     meta: dict[str, Any] | None = None, asset_id: str | None = None,
                     derived_from: list[str] | None = None, write: Writer | None = None) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": asset_id or self.new_id(),
            "project_id": project_id,
            "filename": filename or path.rsplit("/", 1)[-1],
            "content_type": content_type,
            "size": size,
            "sha256": sha256,
            "created_at": now_ts(),
            "kind": kind,
            "job_id": job_id,
            "path": path,
        }
        if meta:
            record["meta"] = meta
        if derived_from:
            # Lineage: the assets this one was made from, nearest first (a transcript of ingest's
            # audio names the audio, then the video it came from).
            record["derived_from"] = derived_from
        await self.save(record, write=write)
        return record

    async def save(self, record: dict[str, Any], *, write: Writer | None = None) -> None:
        """Store the record and index it under its project, in one atomic step (``write``'s, when given)."""
        commands = [["SET", keys.asset(record['id']), json.dumps(record, default=str)], *_index(record, "add")]
        if write is not None:
            await write(commands)
            return
        await self._atomically(commands)

    async def _atomically(self, commands: list[list[Any]]) -> None:
        """Run ``commands`` in one MULTI/EXEC."""

        async def transaction() -> None:
            async with self.redis.pipeline(transaction=True) as pipe:
                for name, *args in commands:
                    pipe.execute_command(name, *args)
                await pipe.execute()

        await guard(transaction())

    async def get(self, asset_id: str) -> dict[str, Any]:
        raw = await guard(self.redis.get(keys.asset(asset_id)))
        if raw is None:
            raise AssetNotFoundError(asset_id)
        return json.loads(raw)

    async def ping(self) -> None:
        """Check that Redis answers; raises :class:`QueueUnavailableError` when it does not."""
        await guard(self.redis.ping())

    async def list(self, project_id: str, *, kind: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The first page of :meth:`page`."""
        return (await self.page(project_id=project_id, kind=kind, limit=limit)).items

    async def page(self, *, project_id: str | None = None, kind: str | None = None, job_id: str | None = None,
                   limit: int = 50, after: Cursor | None = None) -> Page:
        """A project's (or a job's) asset records, newest first, optionally only those of ``kind``: one page of an
        index sorted by creation time, so a page costs its own size however many assets there are."""
        if project_id is None and job_id is None:
            raise ValueError("a listing of assets needs a project_id or a job_id")
        if project_id is not None:
            await self._backfill(project_id)
        index = (keys.job_assets(job_id) if job_id else keys.project_assets_of_kind(project_id, kind) if kind
                 else keys.project_assets_by_time(project_id))  # type: ignore[arg-type]
        found: list[dict[str, Any]] = []
        cursor, more = after, True
        while len(found) < limit and more:
            entries = await ids_after(self.redis, index, cursor, limit)
            more = len(entries) == limit
            if not entries:
                break
            raws = await guard(self.redis.mget([keys.asset(i) for i, _ in entries]))
            for (asset_id, score), raw in zip(entries, raws):
                cursor = Cursor(score, asset_id)
                record = json.loads(raw) if raw is not None else None
                if record is None or (kind and record.get("kind") != kind) or (
                        project_id and record.get("project_id") != project_id):
                    continue
                found.append(record)
                if len(found) >= limit:
                    more = more or asset_id != entries[-1][0]
                    break
        return Page(found, cursor if more and found else None)

    async def _backfill(self, project_id: str) -> None:
        """Index a project saved before the sorted indexes existed (once: its set of ids, read whole)."""
        if project_id in self._indexed_projects:
            return
        by_time = keys.project_assets_by_time(project_id)
        if await guard(self.redis.exists(by_time)) or not await guard(self.redis.scard(keys.project_assets(project_id))):
            if len(self._indexed_projects) < 100_000:  # a bound on what a long-lived store remembers
                self._indexed_projects.add(project_id)
            return
        ids = sorted(await guard(self.redis.smembers(keys.project_assets(project_id))))
        raws = await guard(self.redis.mget([keys.asset(i) for i in ids]))
        await self._atomically([c for raw in raws if raw is not None for c in _index(json.loads(raw), "add")])

    async def forget(self, asset_id: str) -> None:
        """Remove an asset's record (not its file): a stale dispatcher undoing what it published."""
        try:
            record = await self.get(asset_id)
        except AssetNotFoundError:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.asset(asset_id))
            for name, *args in _index(record, "remove"):
                pipe.execute_command(name, *args)
            await guard(pipe.execute())

    async def update(self, asset_id: str, **fields: Any) -> dict[str, Any]:
        """Change fields of a record, atomically: a concurrent update is not lost (WATCH, then MULTI; the
        loser reads again). :class:`AssetNotFoundError` when the asset is gone."""

        async def attempt() -> dict[str, Any]:
            async with self.redis.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        await pipe.watch(keys.asset(asset_id))
                        raw = await pipe.get(keys.asset(asset_id))
                        if raw is None:
                            raise AssetNotFoundError(asset_id)
                        before = json.loads(raw)
                        record = {**before, **fields}
                        pipe.multi()
                        pipe.set(keys.asset(asset_id), json.dumps(record, default=str))
                        if before.get("kind") != record.get("kind"):
                            for name, *args in [*_index(before, "remove"), *_index(record, "add")]:
                                pipe.execute_command(name, *args)
                        await pipe.execute()
                        return record
                    except WatchError:
                        continue

        return await guard(attempt())

    async def register_output(self, stored: StoredFile, *, project_id: str | None, job_id: str,
                              derived_from: list[str] | None = None, write: Writer | None = None,
                              asset_id: str | None = None) -> dict[str, Any]:
        """Register a file a job wrote; return the public record. ``write``: see :meth:`save`."""
        record = await self.create(
            path=stored.path,
            kind=stored.kind,
            content_type=stored.content_type,
            size=stored.size,
            project_id=project_id,
            job_id=job_id,
            meta=dict(stored.meta) or None,
            derived_from=derived_from,
            write=write,
            asset_id=asset_id,
        )
        return public_asset(record)

    async def lineage(self, asset_ids: list[str]) -> list[str]:
        """``asset_ids`` and everything they were made from, without repeats, nearest first."""
        seen: list[str] = []
        for asset_id in asset_ids:
            if asset_id in seen:
                continue
            seen.append(asset_id)
            try:
                record = await self.get(asset_id)
            except AssetNotFoundError:
                continue
            seen += [a for a in record.get("derived_from") or () if a not in seen]
        return seen


def _index(record: dict[str, Any], how: str) -> list[list[Any]]:
    """The commands that add a record to (or remove it from) its project's and its job's indexes."""
    project, asset_id = record.get("project_id"), str(record["id"])
    sets = [keys.project_assets(project)] if project else []
    zsets = [keys.project_assets_by_time(project), keys.project_assets_of_kind(project, str(record.get("kind")))] \
        if project else []
    zsets += [keys.job_assets(record["job_id"])] if record.get("job_id") else []
    if how == "remove":
        return [*(["SREM", s, asset_id] for s in sets), *(["ZREM", z, asset_id] for z in zsets)]
    score = _epoch(str(record.get("created_at") or ""))
    return [*(["SADD", s, asset_id] for s in sets), *(["ZADD", z, score, asset_id] for z in zsets)]


def _epoch(ts: str) -> float:
    try:
        return datetime.fromisoformat(ts).timestamp()
    except ValueError:
        return 0.0
