"""``/assets/{id}/content``: an asset's bytes; ``/assets/{id}/{uri}``: the files of an HLS package.

Downloads honour single ``Range`` requests (and ``If-Range``) and read only the requested bytes
(:mod:`server.downloads`). An HLS master playlist names its variants by relative URI
(``720p/index.m3u8``), which a player resolves against the master's URL: ``/assets/{id}/720p/index.m3u8``.
That route serves every file of the master's package (listed in its ``meta.files`` when it was
exported), from the master's folder, so the package plays from its URL in any player, native ones
included. The same routes answer under ``/v1/signed/{grant}/`` (:mod:`server.signing`), where the
grant in the path stands for the bearer token and relative URIs stay signed.
"""

from __future__ import annotations

import posixpath
from typing import Annotated, Any

from anyio import to_thread
from litestar import Controller, Response, get, head
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.openapi import ResponseSpec
from litestar.params import Parameter
from litestar.response import Stream

from operators.storage import Storage
from scheduler.records.assets import AssetStore
from server.deps import provide_assets, provide_storage
from server.downloads import RangeNotSatisfiableError, content_disposition, parse_range, read_range
from server.openapi import responses

__all__ = ["AssetContentController", "package_file"]

#: What each file of an HLS package is served as.
_PACKAGE_TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".mp4": "video/mp4", ".m4s": "video/iso.segment"}
_BINARY = {
    # Declared as binary octets (the answer carries the file's own Content-Type): generated clients then keep
    # the 200 and 206 and read the body as bytes, not as JSON or text.
    200: ResponseSpec(bytes, description="The bytes, with the file's own Content-Type",
                      media_type="application/octet-stream", generate_examples=False),
    206: ResponseSpec(bytes, description="The requested range (Content-Range says which)",
                      media_type="application/octet-stream", generate_examples=False),
}
RANGE = Parameter(header="Range", description="One byte range, RFC 9110: bytes=0-1023, bytes=1024- or bytes=-500; "
                                              "an unsatisfiable one is 416")
IF_RANGE = Parameter(header="If-Range", description="The ETag the client's copy has: a Range is served only while "
                                                    "it matches, else the whole file")


def package_file(record: dict[str, Any], uri: str) -> tuple[str, str] | None:
    """The storage path and content type of the file ``uri`` of the HLS package whose master is ``record``
    (None: not one of its files). Only the URIs the export listed are served: never a path built from
    what the client sent alone."""
    files = (record.get("meta") or {}).get("files")
    if record.get("kind") != "hls" or not isinstance(files, list) or uri not in files:
        return None
    path = posixpath.join(posixpath.dirname(record["path"]), uri)
    return path, _PACKAGE_TYPES.get(posixpath.splitext(uri)[1], "application/octet-stream")


class AssetContentController(Controller):
    path = "/assets"
    tags = ["assets"]
    dependencies = {
        "assets": Provide(provide_assets, sync_to_thread=False),
        "storage": Provide(provide_storage, sync_to_thread=False),
    }

    @get("/{asset_id:str}/content", summary="An asset's bytes (Range requests supported)",
         operation_id="getAssetContent", responses={**responses(None, None, 404, 416, 503), **_BINARY})
    async def get_content(
        self, assets: AssetStore, storage: Storage, asset_id: str,
        range_: Annotated[str | None, RANGE] = None, if_range: Annotated[str | None, IF_RANGE] = None,
    ) -> Stream:
        record = await assets.get(asset_id)
        name = record.get("filename") or record["path"].rsplit("/", 1)[-1]
        etag = f'"{record["sha256"]}"' if record.get("sha256") else None
        return await _serve(storage, record["path"], record.get("content_type"), name, etag, asset_id,
                            range_, if_range)

    @head("/{asset_id:str}/content", summary="An asset's content headers", include_in_schema=False)
    async def head_content(self, assets: AssetStore, storage: Storage, asset_id: str) -> Response[None]:
        record = await assets.get(asset_id)
        name = record.get("filename") or record["path"].rsplit("/", 1)[-1]
        etag = f'"{record["sha256"]}"' if record.get("sha256") else None
        total, headers = await _headers(storage, record["path"], name, etag, asset_id)
        headers["Content-Length"] = str(total)
        return Response(content=b"", headers=headers,
                        media_type=record.get("content_type") or "application/octet-stream")

    @get("/{asset_id:str}/{uri:path}", summary="A file of an HLS package, by its URI in the master playlist",
         operation_id="getPackageFile", responses={**responses(None, None, 404, 416, 503), **_BINARY},
         description="The master playlist (an `hls` asset's content) names its variants, segments and audio by "
                     "relative URI; a player resolves them to this route, so the package plays from the master's "
                     "URL. 404 for anything the package does not list.")
    async def get_package_file(
        self, assets: AssetStore, storage: Storage, asset_id: str, uri: str,
        range_: Annotated[str | None, RANGE] = None, if_range: Annotated[str | None, IF_RANGE] = None,
    ) -> Stream:
        found = package_file(await assets.get(asset_id), uri.lstrip("/"))
        if found is None:
            raise HTTPException(status_code=404, detail=f"Asset {asset_id} has no file {uri.lstrip('/')}")
        path, content_type = found
        return await _serve(storage, path, content_type, posixpath.basename(path), None, asset_id, range_, if_range)


async def _headers(storage: Storage, path: str, name: str, etag: str | None,
                   asset_id: str) -> tuple[int, dict[str, str]]:
    try:
        total = await to_thread.run_sync(storage.size, path)
    except FileNotFoundError:
        raise HTTPException(status_code=404, detail=f"Content of asset {asset_id} is missing from storage") from None
    headers = {"Accept-Ranges": "bytes", "Content-Disposition": content_disposition(name)}
    if etag:
        headers["ETag"] = etag
    return total, headers


async def _serve(storage: Storage, path: str, content_type: str | None, name: str, etag: str | None,
                 asset_id: str, range_: str | None, if_range: str | None) -> Stream:
    total, headers = await _headers(storage, path, name, etag, asset_id)
    wanted = range_
    if wanted and if_range is not None and if_range.strip() != headers.get("ETag"):
        wanted = None  # the client's copy is stale: send the whole file
    try:
        byte_range = parse_range(wanted, total)
    except RangeNotSatisfiableError:
        raise HTTPException(
            status_code=416, detail=f"Range {wanted} not satisfiable: the asset has {total} bytes",
            headers={"Content-Range": f"bytes */{total}", "Accept-Ranges": "bytes"},
        ) from None
    status, start, length = 200, 0, total
    if byte_range is not None:
        status, start, length = 206, byte_range.start, byte_range.length
        headers["Content-Range"] = byte_range.content_range(total)
    headers["Content-Length"] = str(length)
    return Stream(read_range(storage, path, start, length), status_code=status,
                  media_type=content_type or "application/octet-stream", headers=headers)
