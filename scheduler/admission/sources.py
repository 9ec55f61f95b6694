"""Turning a payload's ``source_uri`` / ``source_asset_id`` into a confined storage path."""

from __future__ import annotations

from anyio import to_thread

from operators.errors import PathOutsideRootError
from operators.storage import Storage, safe_relpath
from operators.types import SourceRef
from pipelines.payload import SourceRequest
from scheduler.records.assets import AssetNotFoundError, AssetStore
from scheduler.errors import SourceError, StorageUnavailableError

__all__ = ["resolve_source"]


async def resolve_source(request: SourceRequest, storage: Storage, assets: AssetStore, *,
                         project_id: str | None = None) -> SourceRef:
    """Resolve and check a source; raise :class:`SourceError` naming the payload field.

    An asset must belong to the payload's ``project_id`` (when it names one): another project's asset
    is refused in the same words as a timeline's (``not found in project``), so ids of other projects
    cannot be probed for.
    """
    if request.source_asset_id is not None:
        try:
            record = await assets.get(request.source_asset_id)
        except AssetNotFoundError:
            raise SourceError("source_asset_id", f"Asset {request.source_asset_id} not found") from None
        if project_id is not None and record.get("project_id") != project_id:
            raise SourceError("source_asset_id",
                              f"Asset {request.source_asset_id} not found in project {project_id}")
        return SourceRef(path=record["path"], asset_id=record["id"])
    uri = request.source_uri or ""
    try:
        path = safe_relpath(uri)
        # A HEAD request on S3 (a stat on a network folder): off the loop the API and dispatcher share.
        exists = await to_thread.run_sync(_exists, storage, path)
    except PathOutsideRootError as exc:
        raise SourceError("source_uri", f"{exc}; it must name a file under the media root") from None
    except Exception as exc:  # noqa: BLE001  (whatever the store's client raises when it cannot answer)
        raise StorageUnavailableError(f"checking '{uri}' failed: {type(exc).__name__}: {exc}") from exc
    if not exists:
        raise SourceError("source_uri", f"'{uri}' does not exist under the media root")
    return SourceRef(path=path)


def _exists(storage: Storage, path: str) -> bool:
    if storage.is_local:
        storage.local_path(path)  # refuses symlinks that leave the root
    return storage.exists(path)
