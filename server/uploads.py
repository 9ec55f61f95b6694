"""Streaming an upload into storage: the raw body or a multipart body's ``file`` part, parsed as it arrives.

Nothing holds the whole file: a raw body is read with ``request.stream()``, a ``multipart/form-data`` body
is parsed by the push parser of the ``multipart`` package (the one Litestar itself uses; its
``request.form()`` buffers every part). The bytes are hashed, counted and written through
``Storage.writing()`` in blocks of at most :data:`BLOCK` bytes, so a half-written or refused upload never
appears in storage.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from anyio import CancelScope, to_thread
from litestar import Request
from litestar.exceptions import HTTPException
from multipart import (  # type: ignore[import-untyped]  (Litestar's own multipart dependency)
    MultipartError,
    MultipartSegment,
    PushMultipartParser,
)

from operators.storage import Storage
from server.errors import unprocessable

__all__ = ["BLOCK", "MULTIPART_SLACK", "Part", "discard", "empty_upload", "multipart_part", "raw_chunks",
           "store_upload", "too_large"]

BLOCK = 1024 * 1024
"""Bytes buffered before a write to storage, and the size of each chunk a download sends."""

MULTIPART_SLACK = 64 * 1024
"""Body bytes allowed beyond the file's limit: boundaries, part headers and small form fields."""


def too_large(limit: int) -> HTTPException:
    return HTTPException(status_code=413, detail=f"Upload exceeds the limit of {limit} bytes (MAX_UPLOAD_BYTES)")


def empty_upload(loc: list[str]) -> HTTPException:
    return unprocessable(loc, "The upload is empty: send the file as the request body or as the multipart field 'file'")


@dataclass(frozen=True, slots=True)
class Part:
    """What the body says about the file: its name and type, and an iterator over its bytes."""

    filename: str | None
    content_type: str | None
    chunks: AsyncIterator[bytes]


async def raw_chunks(request: Request[Any, Any, Any]) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


async def _multipart_events(request: Request[Any, Any, Any], boundary: str,
                            limit: int) -> AsyncIterator[MultipartSegment | bytes | None]:
    """Parser events as the body arrives; more than ``limit`` body bytes in all gives 413."""
    received = 0
    try:
        with PushMultipartParser(boundary, max_header_count=16) as parser:
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:
                    raise too_large(limit - MULTIPART_SLACK)
                for event in parser.parse(chunk):
                    yield event
                if parser.closed:
                    break
            if not parser.closed:
                for event in parser.parse(b""):
                    yield event
    except MultipartError as exc:
        raise HTTPException(status_code=400, detail=f"Malformed multipart body: {exc}") from None


async def multipart_part(request: Request[Any, Any, Any], boundary: str, limit: int) -> Part:
    """Read up to the part named ``file``; its bytes then stream from the returned iterator."""
    events = _multipart_events(request, boundary, limit)
    async for event in events:
        if isinstance(event, MultipartSegment) and event.name == "file":
            segment = event
            break
    else:
        raise unprocessable(["body", "file"], "The multipart body has no part named 'file'")

    async def file_bytes() -> AsyncIterator[bytes]:
        async for item in events:
            if item is None:
                break
            if isinstance(item, bytes):
                yield item
        async for _ in events:  # the closing boundary (and any later parts) must still parse
            pass

    return Part(filename=segment.filename, content_type=segment.header("Content-Type"), chunks=file_bytes())


def _write_block(handle: IO[bytes], digest: Any, block: bytes) -> None:
    digest.update(block)
    handle.write(block)


async def _spool(target: Path, chunks: AsyncIterator[bytes], limit: int) -> tuple[int, str]:
    """Write ``chunks`` to ``target`` in blocks; returns (size, sha256). Past ``limit``: 413."""
    digest = hashlib.sha256()
    size = 0
    pending: list[bytes] = []
    pending_size = 0
    handle: IO[bytes] = await to_thread.run_sync(target.open, "wb")
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            pending.append(chunk)
            pending_size += len(chunk)
            if pending_size >= BLOCK:
                block = b"".join(pending)
                pending.clear()
                pending_size = 0
                await to_thread.run_sync(_write_block, handle, digest, block)
                del block
        if pending:
            await to_thread.run_sync(_write_block, handle, digest, b"".join(pending))
            pending.clear()
    finally:
        handle.close()
    return size, digest.hexdigest()


async def store_upload(storage: Storage, path: str, chunks: AsyncIterator[bytes], limit: int,
                 empty_loc: list[str]) -> tuple[int, str]:
    """Stream into storage at ``path`` atomically; nothing is left behind when it fails."""
    # Every storage step runs in a thread: even the temp file's folder may be on a network mount.
    writing = storage.writing(path)
    tmp = await to_thread.run_sync(writing.__enter__)
    try:
        size, sha256 = await _spool(tmp, chunks, limit)
        if size == 0:
            raise empty_upload(empty_loc)
    except BaseException as exc:
        with CancelScope(shield=True):  # a client that went away still gets its temp file removed
            await to_thread.run_sync(_abandon, writing, exc, storage, path)
        raise
    await to_thread.run_sync(writing.__exit__, None, None, None)  # rename (or upload) into place
    return size, sha256


def _abandon(writing: Any, exc: BaseException, storage: Storage, path: str) -> None:
    writing.__exit__(type(exc), exc, exc.__traceback__)  # removes the temp file
    _remove_empty_dirs(storage, path)


def _remove_empty_dirs(storage: Storage, path: str) -> None:
    """Remove the asset's folder (and the project's, if now empty) after a failed upload."""
    if not storage.is_local:
        return
    folder = storage.local_path(path).parent
    for directory in (folder, folder.parent):
        try:
            directory.rmdir()
        except OSError:
            return


async def discard(storage: Storage, path: str) -> None:
    try:
        await to_thread.run_sync(storage.delete, path)
        await to_thread.run_sync(_remove_empty_dirs, storage, path)
    except OSError:
        pass
