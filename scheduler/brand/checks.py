"""A brand kit's assets checked when it is posted, and a kit applied to a timeline that names it.

Fonts must be font assets of the kit's project that FreeType loads (the check titles and captions get); the
logo an image asset of the project. A timeline's ``brand_kit`` must name a kit of the job's project: else a
422 on ``…timeline.brand_kit``, at submission, like any other problem of a timeline.
"""

from __future__ import annotations

from typing import Any

from anyio import to_thread

from operators.render.styling.presets import Brand
from operators.storage import Storage
from pipelines.errors import PayloadError
from scheduler.brand.store import BrandKitNotFoundError, BrandKitStore
from scheduler.records.assets import AssetNotFoundError, AssetStore

__all__ = ["apply_brand", "check_kit_assets"]


def _error(loc: list[Any], msg: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": "value_error"}


async def _asset(assets: AssetStore, asset_id: str, project_id: str) -> dict[str, Any] | None:
    try:
        record = await assets.get(asset_id)
    except AssetNotFoundError:
        return None
    return record if record.get("project_id") == project_id else None


def _font_problem(storage: Storage, path: str) -> str | None:
    from operators.render.text import check_font

    try:
        with storage.reading(path) as local:
            return check_font(str(local))
    except FileNotFoundError:
        return "its file is missing from storage"


async def check_kit_assets(*, project_id: str, fonts: list[str], logo: str | None, assets: AssetStore,
                           storage: Storage) -> None:
    """Raise :class:`PayloadError` naming every font that is not a loadable font asset of the project, and a
    logo that is not an image asset of it."""
    problems: list[dict[str, Any]] = []
    for i, font in enumerate(fonts):
        record = await _asset(assets, font, project_id)
        if record is None:
            problems.append(_error(["body", "fonts", i], f"Asset {font} not found in project {project_id}"))
            continue
        problem = await to_thread.run_sync(_font_problem, storage, record["path"])
        if problem:
            problems.append(_error(["body", "fonts", i], f"asset {font} cannot be used as a font: {problem}"))
    if logo is not None:
        record = await _asset(assets, logo, project_id)
        if record is None:
            problems.append(_error(["body", "logo"], f"Asset {logo} not found in project {project_id}"))
        elif not str(record.get("content_type") or "").startswith("image/"):
            problems.append(_error(["body", "logo"], f"asset {logo} is {record.get('content_type')}, not an image"))
    if problems:
        raise PayloadError(problems)


async def apply_brand(value: Any, *, loc: list[Any], project_id: str | None, kits: BrandKitStore | None) -> Any:
    """``value.with_brand(...)`` when it names a brand kit (a timeline's ``brand_kit``); else ``value``."""
    kit_id = getattr(value, "brand_kit", None)
    if not kit_id or kits is None or not hasattr(value, "with_brand"):
        return value
    try:
        record = await kits.get(kit_id)
    except BrandKitNotFoundError:
        record = None
    if record is None or (project_id is not None and record.get("project_id") != project_id):
        where = f" in project {project_id}" if project_id else ""
        raise PayloadError([_error([*loc, "brand_kit"], f"Brand kit {kit_id} not found{where}")])
    colors = record.get("colors") or {}
    fonts = record.get("fonts") or []
    return value.with_brand(Brand(id=record["id"], font=fonts[0] if fonts else None, primary=colors.get("primary"),
                                  accent=colors.get("accent"), text=colors.get("text"),
                                  background=colors.get("background")))
