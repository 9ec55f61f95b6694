"""``/assets/``: upload sources (streamed to storage), list, read and delete their records.

Uploads are streamed into storage as they arrive (:mod:`server.uploads`), never held whole in memory, and
a half-written or refused upload never appears in storage. Their bytes are served by
:mod:`server.controllers.content`.
"""

from __future__ import annotations

import contextlib
import mimetypes
import re
import unicodedata
from typing import Annotated, Any

from anyio import to_thread
from litestar import Controller, MediaType, Request, Response, delete, get, post
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.params import Parameter
from litestar.serialization import encode_json
from multipart import (  # type: ignore[import-untyped]  (Litestar's own multipart dependency)
    parse_options_header,
)

from operators.storage import Storage
from scheduler.records.assets import AssetStore, public_asset
from scheduler.errors import QueueUnavailableError, StorageUnavailableError
from scheduler.records.idempotency import IdempotencyStore, StoredResponse
from scheduler.records.jobs import JobStore
from scheduler.settings import Settings
from server.auth import TOKEN_SCOPE_KEY
from server.controllers.jobs import IDEMPOTENCY_KEY, replayed
from server.deps import provide_assets, provide_idempotency, provide_settings, provide_storage, provide_store
from server.paging import CURSOR, page_response, parse_cursor
from server.errors import refuse_while_used, unprocessable
from server.openapi import responses
from server.schemas import Asset, UploadedAsset
from server.uploads import MULTIPART_SLACK, Part, discard, empty_upload, multipart_part, raw_chunks
from server.uploads import store_upload, too_large

__all__ = ["UPLOAD_FIELDS", "AssetController", "safe_filename"]

UPLOAD_FIELDS = ("id", "project_id", "filename", "content_type", "size", "sha256", "created_at", "kind")
"""The keys of the upload response, in order."""

_FILENAME_MAX_BYTES = 200
_UNSAFE_FILENAME = re.compile(r"[^\w.+()\- ]")
_MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")
_UNSPECIFIED_TYPES = frozenset({"", "application/octet-stream", "application/x-www-form-urlencoded"})
#: For the OpenAPI document only (the handler checks it itself, with its own message): what
#: _check_project_id accepts.
PROJECT_ID = Parameter(
    description="The project: 1-200 characters, not only spaces, not '.' or '..', no '/', '\\' or control "
                "characters",
    schema_extra={"pattern": r"^(?!\.{1,2}$)(?=.*\S)[^/\\\x00-\x1f\x7f]{1,200}$", "maxLength": 200, "minLength": 1},
)


# --------------------------------------------------------------------------- helpers


def safe_filename(name: str | None, content_type: str = "application/octet-stream") -> str:
    """A file name safe as one storage path segment: no folders, no ``..``, no control characters.

    ``"../../etc/pass wd"`` becomes ``"pass wd"``; an empty result becomes ``upload`` plus
    the extension of ``content_type`` (``upload.mp4``, ``upload.bin``). Leading dots go, so
    nothing uploaded is hidden.
    """
    text = unicodedata.normalize("NFC", name or "")
    text = re.split(r"[/\\]", text)[-1]
    text = _UNSAFE_FILENAME.sub("_", text)
    text = re.sub(r"\.{2,}", ".", text).strip(" .")
    if len(text.encode()) > _FILENAME_MAX_BYTES:
        stem, dot, ext = text.rpartition(".")
        ext = f".{ext}" if dot and stem and len(ext) <= 16 else ""
        stem = text[: len(text) - len(ext)] if ext else text
        while len((stem + ext).encode()) > _FILENAME_MAX_BYTES:
            stem = stem[:-1]
        text = stem.rstrip(" .") + ext
    if not text:
        text = "upload" + (mimetypes.guess_extension(content_type) or ".bin")
    return text


def _media_type(header: str | None) -> str:
    """The lower-cased media type of a Content-Type value, or ``""`` when absent or malformed."""
    value, _ = parse_options_header(header or "")
    return value if _MEDIA_TYPE.match(value) else ""


def _content_type(declared: str | None, filename: str | None) -> str:
    """The declared media type, else a guess from the file name, else ``application/octet-stream``."""
    media = _media_type(declared)
    if media not in _UNSPECIFIED_TYPES:
        return media
    guessed = mimetypes.guess_type(filename or "", strict=False)[0] if filename else None
    return guessed or "application/octet-stream"


def _check_project_id(project_id: str) -> str:
    """A project id usable as one storage path segment, or a 422 naming ``project_id``."""
    if (not project_id.strip() or project_id in (".", "..") or len(project_id) > 200
            or re.search(r"[/\\\x00-\x1f\x7f]", project_id)):
        raise unprocessable(["query", "project_id"],
                            "project_id must be a non-empty id of at most 200 characters, without '/', '\\' or "
                            "control characters")
    return project_id


# --------------------------------------------------------------------------- controller


class AssetController(Controller):
    path = "/assets"
    tags = ["assets"]
    dependencies = {
        "settings": Provide(provide_settings, sync_to_thread=False),
        "assets": Provide(provide_assets, sync_to_thread=False),
        "idempotency": Provide(provide_idempotency, sync_to_thread=False),
        "storage": Provide(provide_storage, sync_to_thread=False),
        "store": Provide(provide_store, sync_to_thread=False),
    }

    @post("/", status_code=201, summary="Upload a source file (raw body or multipart field 'file')",
          operation_id="uploadAsset", request_max_body_size=None,
          responses=responses(201, UploadedAsset, 400, 409, 413, 422, 503, description="The asset"))
    async def upload(
        self,
        request: Request[Any, Any, Any],
        assets: AssetStore,
        storage: Storage,
        idempotency: IdempotencyStore,
        settings: Settings,
        project_id: Annotated[str, PROJECT_ID],
        filename: Annotated[str | None, Parameter(max_length=1000)] = None,
        idempotency_key: Annotated[str | None, IDEMPOTENCY_KEY] = None,
    ) -> Any:
        """Stream the body to ``uploads/<project_id>/<asset_id>/<filename>``; hash and count it on the way.

        The body is either the file itself (``Content-Type`` gives its type) or
        ``multipart/form-data`` with the file in the field ``file``. Past
        ``MAX_UPLOAD_BYTES`` the upload is refused with 413 and nothing is kept.
        With an ``Idempotency-Key``, a repeat of the same upload (same parameters, same bytes) answers
        the first one's asset, and its own copy is discarded.
        """
        _check_project_id(project_id)
        limit = settings.max_upload_bytes
        declared_type = request.headers.get("content-type")
        options = parse_options_header(declared_type or "")[1]
        is_multipart = _media_type(declared_type) == "multipart/form-data"
        allowance = limit + MULTIPART_SLACK if is_multipart else limit
        declared_length = request.content_length
        if declared_length is not None and declared_length > allowance:
            raise too_large(limit)
        empty_loc = ["body", "file"] if is_multipart else ["body"]
        if declared_length == 0:
            raise empty_upload(empty_loc)
        await assets.ping()  # 503 before a single byte is taken when Redis is down

        if is_multipart:
            boundary = options.get("boundary")
            if not boundary:
                raise HTTPException(status_code=400, detail="Malformed multipart body: no boundary in Content-Type")
            part = await multipart_part(request, boundary, allowance)
        else:
            part = Part(filename=None, content_type=declared_type, chunks=raw_chunks(request))

        original = filename if filename is not None else part.filename
        content_type = _content_type(part.content_type, safe_filename(original))
        name = safe_filename(original, content_type)
        asset_id = assets.new_id()
        path = f"uploads/{project_id}/{asset_id}/{name}"
        size, sha256 = await store_upload(storage, path, part.chunks, limit, empty_loc)
        held = None
        if idempotency_key is not None:
            # Known only now that the bytes are in: the request's fingerprint includes their hash.
            fingerprint = idempotency.fingerprint(project_id, name, content_type, str(size), sha256)
            try:
                held = await idempotency.begin(request.scope.get(TOKEN_SCOPE_KEY) or "-", "assets", idempotency_key,
                                               fingerprint)
            except BaseException:
                await discard(storage, path)
                raise
            if isinstance(held, StoredResponse):
                await discard(storage, path)
                return replayed(held)
        try:
            record = await assets.create(path=path, kind="source", content_type=content_type, size=size,
                                         project_id=project_id, filename=name, sha256=sha256, asset_id=asset_id)
        except BaseException:
            await discard(storage, path)
            if held is not None:
                with contextlib.suppress(Exception):
                    await idempotency.release(held)
            raise
        answer = {key: record[key] for key in UPLOAD_FIELDS}
        if held is None:
            return answer
        body = encode_json(answer)
        with contextlib.suppress(QueueUnavailableError):
            await idempotency.finish(held, 201, body)
        return Response(content=body, status_code=201, media_type=MediaType.JSON)

    @get("/", summary="A project's assets, newest first", operation_id="listAssets",
         responses=responses(200, list[Asset], 422, 503, description="Assets, newest first"))
    async def list_assets(
        self,
        request: Request[Any, Any, Any],
        assets: AssetStore,
        project_id: Annotated[str, PROJECT_ID],
        job_id: Annotated[str | None, Parameter(description="Only the assets this job made", max_length=200)] = None,
        kind: str | None = None,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, CURSOR] = None,
    ) -> Response[bytes]:
        """A project's assets (or those one of its jobs made), newest first; the next page's URL is in ``Link``
        (``rel="next"``)."""
        _check_project_id(project_id)
        page = await assets.page(project_id=project_id, job_id=job_id, kind=kind, limit=limit,
                                 after=parse_cursor(cursor))
        return page_response(request, page, [public_asset(record) for record in page.items])

    @delete("/{asset_id:str}", status_code=204, summary="Delete an asset: its record and its file",
            operation_id="deleteAsset", responses=responses(None, None, 404, 409, 503))
    async def delete_asset(self, assets: AssetStore, store: JobStore, storage: Storage, asset_id: str) -> None:
        """409 while a job that has not finished uses it. Clip versions that name it keep their timelines: a render
        of one then fails at submission, naming the missing asset."""
        record = await assets.get(asset_id)
        await refuse_while_used(store, asset_id, f"Asset {asset_id}")
        await assets.forget(asset_id)
        try:
            await to_thread.run_sync(storage.delete, record["path"])
        except FileNotFoundError:
            pass  # its file was gone already: the record was what remained
        except OSError as exc:
            raise StorageUnavailableError(f"the asset's record is gone but its file could not be deleted: {exc}") \
                from None

    @get("/{asset_id:str}", summary="An asset's metadata", operation_id="getAsset",
         responses=responses(200, Asset, 404, 503, description="The asset"))
    async def get_asset(self, assets: AssetStore, asset_id: str) -> dict[str, Any]:
        return public_asset(await assets.get(asset_id))
