"""Resolving every asset a structured payload names (a timeline's clips, fonts, transcripts).

A payload model that names assets has ``asset_uses()`` (where and as what each is named) and
``with_assets(assets, **limits)`` (the value the graph sees, after its own checks). Here each
named asset is looked up, confined to the job's project, described (probed once, then cached
on the asset record as ``media_info``) and handed to the model. Every problem comes back at
once as a 422 naming its path, e.g. ``["body", "timeline", "tracks", 0, "clips", 2, "asset"]``.
"""

from __future__ import annotations

import functools
from typing import Any

from anyio import to_thread

from operators.asset_uses import NamesAssets
from operators.context import OpContext
from operators.errors import AssetCheckError, OperatorError
from operators.media.info import AssetMedia, MediaInfo
from operators.storage import Storage
from operators.types import SourceRef
from pipelines.errors import PayloadError
from scheduler.records.assets import AssetNotFoundError, AssetStore

__all__ = ["names_assets", "resolve_payload_assets"]

_MEDIA_KINDS_WITHOUT_PROBE = ("transcript", "srt", "vtt", "text", "waveform", "timeline")


def names_assets(value: Any) -> bool:
    return isinstance(value, NamesAssets)


async def resolve_payload_assets(value: Any, *, loc: list[Any], project_id: str | None, storage: Storage,
                                 assets: AssetStore, limits: dict[str, Any]) -> Any:
    """``value.with_assets(...)`` with every asset it names found, checked and described."""
    problems: list[dict[str, Any]] = []
    found: dict[str, AssetMedia] = {}
    for use in value.asset_uses():
        where = [*loc, *use.loc]
        if use.asset_id in found:
            media = found[use.asset_id]
        else:
            media = await _describe(use.asset_id, use.role, project_id, storage, assets, where, problems)
            if media is None:
                continue
            found[use.asset_id] = media
        if use.role == "font":
            problem = await to_thread.run_sync(_font_problem, storage, media)
            if problem:
                problems.append(_error(where, f"asset {use.asset_id} cannot be used as a font: {problem}"))
    if problems:
        raise PayloadError(problems)
    try:
        # In a thread: a model may read what it names (a transcript's words to check word indices against, the
        # timeline's transcripts and fonts).
        return await to_thread.run_sync(functools.partial(value.with_assets, found, **limits))
    except AssetCheckError as exc:
        raise PayloadError([_error([*loc, *where], msg) for where, msg in exc.problems]) from None


def _error(loc: list[Any], msg: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": "value_error"}


async def _describe(asset_id: str, role: str, project_id: str | None, storage: Storage, assets: AssetStore,
                    where: list[Any], problems: list[dict[str, Any]]) -> AssetMedia | None:
    try:
        record = await assets.get(asset_id)
    except AssetNotFoundError:
        problems.append(_error(where, f"Asset {asset_id} not found"))
        return None
    if project_id is not None and record.get("project_id") != project_id:
        # Said the same way as a missing one: another project's ids are not to be probed for.
        problems.append(_error(where, f"Asset {asset_id} not found in project {project_id}"))
        return None
    info = None
    if role in ("visual", "audio") and record.get("kind") not in _MEDIA_KINDS_WITHOUT_PROBE:
        try:
            info = await _media_info(record, storage, assets)
        except OperatorError as exc:
            problems.append(_error(where, f"asset {asset_id} is not usable media: {exc}"))
            return None
    return AssetMedia(id=record["id"], path=record["path"], kind=str(record.get("kind") or "source"),
                      content_type=str(record.get("content_type") or "application/octet-stream"),
                      project_id=record.get("project_id"), info=info,
                      derived_from=tuple(record.get("derived_from") or ()))


async def _media_info(record: dict[str, Any], storage: Storage, assets: AssetStore) -> MediaInfo:
    cached = record.get("media_info")
    if isinstance(cached, dict):
        try:
            return MediaInfo.model_validate(cached)
        except ValueError:
            pass  # written by an older version: probe again
    from operators.media.probe import probe

    ctx = OpContext(job_id="submission", node="probe", storage=storage)
    # Probing reads the file (demux only); off the event loop, and once per asset.
    info = await to_thread.run_sync(lambda: probe(SourceRef(path=record["path"], asset_id=record["id"]), ctx=ctx))
    await assets.update(record["id"], media_info=info.model_dump(mode="json"))
    return info


def _font_problem(storage: Storage, media: AssetMedia) -> str | None:
    from operators.render.text import check_font

    try:
        with storage.reading(media.path) as local:
            return check_font(str(local))
    except FileNotFoundError:
        return "its file is missing from storage"
