"""Turning a graph's outputs into the JSON of ``result_payload.outputs``.

Every :class:`~operators.types.StoredFile` becomes an asset record, so each output is
downloadable through ``GET /assets/{id}/content``; models become plain JSON.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel

from operators.types import NewClipVersion, StoredFile
from scheduler.records.assets import AssetStore, Writer
from scheduler.records.clip_versions import ClipVersionStore

__all__ = ["publish_outputs"]


async def publish_outputs(value: Any, assets: AssetStore, *, project_id: str | None, job_id: str,
                          clip_versions: ClipVersionStore | None = None, derived_from: list[str] | None = None,
                          before_write: Callable[[], Awaitable[None]] | None = None,
                          registered: dict[str, dict[str, Any]] | None = None, write: Writer | None = None,
                          id_seed: str | None = None) -> Any:
    """Outputs as JSON: files become asset records, proposed clip versions become their ids.

    ``derived_from`` (the job's source assets and their own lineage) is kept on every new asset.
    A file named twice (an output, and inside a proposed clip version's timeline) is one asset.
    ``before_write`` is awaited before each record is written (the dispatcher's lease check: it raises to
    stop publishing); ``registered`` (storage path -> public asset record) is filled as assets are written,
    so a caller knows them even when publishing stops half-way. ``write`` runs each asset record's writes
    (the dispatcher's fenced write: a record is stored only while its lease holds, checked by Redis).
    ``id_seed`` (the run: job and attempt) makes each file's asset id stable, so publishing again after a
    write whose reply was lost (Redis went away) overwrites the record instead of adding one.
    """
    publisher = _Publisher(assets, clip_versions, project_id, job_id, derived_from, before_write,
                           registered if registered is not None else {}, write, id_seed)
    return await publisher.publish(value)


@dataclasses.dataclass
class _Publisher:
    assets: AssetStore
    clip_versions: ClipVersionStore | None
    project_id: str | None
    job_id: str
    derived_from: list[str] | None
    before_write: Callable[[], Awaitable[None]] | None
    registered: dict[str, dict[str, Any]]
    write: Writer | None = None
    id_seed: str | None = None

    async def _check(self) -> None:
        if self.before_write is not None:
            await self.before_write()

    async def publish(self, value: Any) -> Any:
        if isinstance(value, StoredFile):
            return await self._file(value)
        if isinstance(value, NewClipVersion):
            return await self._clip_version(value)
        if isinstance(value, BaseModel):
            fields = {name: getattr(value, name) for name in type(value).model_fields}
            if any(_holds_file(v) for v in fields.values()):
                return {k: await self.publish(v) for k, v in fields.items()}
            return value.model_dump(mode="json")
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return await self.publish(dataclasses.asdict(value))
        if isinstance(value, dict):
            return {str(k): await self.publish(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [await self.publish(v) for v in value]
        if value is None or isinstance(value, str | int | float | bool):
            return value
        return str(value)

    async def _file(self, stored: StoredFile) -> dict[str, Any]:
        if stored.path not in self.registered:
            await self._check()
            self.registered[stored.path] = await self.assets.register_output(
                stored, project_id=self.project_id, job_id=self.job_id, derived_from=self.derived_from,
                write=self.write,
                asset_id=None if self.id_seed is None else self.assets.stable_id(self.id_seed, stored.path))
        return self.registered[stored.path]

    async def _clip_version(self, proposed: NewClipVersion) -> str:
        if self.clip_versions is None or self.project_id is None:
            raise ValueError("a job that proposes clip versions needs a project_id")
        # A file the job made, named in the timeline (a transcript for its captions), becomes its asset id.
        timeline = await self._ids(proposed.timeline)
        await self._check()
        record = await self.clip_versions.create(project_id=self.project_id, timeline=timeline, name=proposed.name,
                                                 clip_id=proposed.clip_id,
                                                 metadata={**proposed.metadata, "job_id": self.job_id})
        return str(record["id"])

    async def _ids(self, value: Any) -> Any:
        if isinstance(value, StoredFile):
            return (await self._file(value))["id"]
        if isinstance(value, dict):
            return {k: await self._ids(v) for k, v in value.items()}
        if isinstance(value, list):
            return [await self._ids(v) for v in value]
        return value


def _holds_file(value: Any) -> bool:
    if isinstance(value, StoredFile | NewClipVersion):
        return True
    if isinstance(value, BaseModel):
        return any(_holds_file(getattr(value, n)) for n in type(value).model_fields)
    if isinstance(value, dict):
        return any(_holds_file(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_holds_file(v) for v in value)
    return False
