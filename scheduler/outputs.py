"""Turning a graph's outputs into the JSON of ``result_payload.outputs``.

Every :class:`~operators.types.StoredFile` becomes an asset record, so each output is
downloadable through ``GET /assets/{id}/content``; models become plain JSON.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import BaseModel

from operators.types import NewClipVersion, StoredFile
from scheduler.assets import AssetStore
from scheduler.clip_versions import ClipVersionStore

__all__ = ["publish_outputs"]


async def publish_outputs(value: Any, assets: AssetStore, *, project_id: str | None, job_id: str,
                          clip_versions: ClipVersionStore | None = None, derived_from: list[str] | None = None) -> Any:
    """Outputs as JSON: files become asset records, proposed clip versions become their ids.

    ``derived_from`` (the job's source assets and their own lineage) is kept on every new asset.
    """

    async def publish(item: Any) -> Any:
        return await publish_outputs(item, assets, project_id=project_id, job_id=job_id, clip_versions=clip_versions,
                                     derived_from=derived_from)

    if isinstance(value, StoredFile):
        return await assets.register_output(value, project_id=project_id, job_id=job_id, derived_from=derived_from)
    if isinstance(value, NewClipVersion):
        if clip_versions is None or project_id is None:
            raise ValueError("a job that proposes clip versions needs a project_id")
        metadata = {**value.metadata, "job_id": job_id}
        record = await clip_versions.create(project_id=project_id, timeline=value.timeline, name=value.name,
                                            metadata=metadata)
        return record["id"]
    if isinstance(value, BaseModel):
        fields = {name: getattr(value, name) for name in type(value).model_fields}
        if any(_holds_file(v) for v in fields.values()):
            return {k: await publish(v) for k, v in fields.items()}
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return await publish(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): await publish(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [await publish(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


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
