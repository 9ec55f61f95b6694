"""Deleting a job's intermediates: the files under ``jobs/<job_id>/`` in storage that are not published assets.

Operators write everything of a job under ``jobs/<job_id>/`` (``OpContext.output_path``): its outputs
(proxies, exports, transcripts), which become assets when the job completes, and the files only its own
tasks read (transcode chunks, export chunks and audio parts, temp files of an interrupted write). Both share
the prefix, so what is deleted is the prefix *minus* the storage paths of the assets the job registered,
which the dispatcher knows exactly (``published_paths`` on the job).

The dispatcher deletes them when a job ends, whatever the outcome, and only while it still holds the job: a
dispatcher that lost its job deletes nothing, since the new owner's tasks write the same paths.
``DELETE /jobs/{id}`` deletes them again (what a task still running after a cancel wrote late), through
:func:`purge_intermediates`, which reports a storage that fails as :class:`StorageUnavailableError` (the API's
503). Storage calls block (a disk, or S3 through fsspec), so the async entry points run them in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from operators.storage import Storage, safe_relpath
from scheduler.errors import StorageUnavailableError

__all__ = ["delete_intermediates", "intermediate_paths", "purge_intermediates", "remove_intermediates"]

_log = logging.getLogger("scheduler.dispatch.retention")


def _prefix(job_id: str) -> str:
    # safe_relpath refuses anything that would leave the media root (a job id never holds a slash, but
    # this is the one place that deletes by prefix).
    prefix = safe_relpath(f"jobs/{job_id}")
    if prefix.count("/") != 1:
        raise ValueError(f"not a job id: {job_id!r}")
    return prefix


def intermediate_paths(storage: Storage, job_id: str, keep: Iterable[str] = ()) -> list[str]:
    """The storage paths under ``jobs/<job_id>/`` that are not in ``keep``."""
    prefix = _prefix(job_id)
    kept = {safe_relpath(p) for p in keep}
    return [path for path in storage.files_under(prefix) if path not in kept]


def delete_intermediates(storage: Storage, job_id: str, keep: Iterable[str] = ()) -> int:
    """Delete the job's intermediates (blocking); answer how many files went."""
    doomed = intermediate_paths(storage, job_id, keep)
    for path in doomed:
        storage.delete(path)
    if storage.is_local:
        _prune_empty(storage.local_path(_prefix(job_id)))
    return len(doomed)


def _prune_empty(folder: Path) -> None:
    """Remove the folders the deleted files leave empty, deepest first (the job's folder too)."""
    if not folder.is_dir():
        return
    for current, _dirs, _files in sorted(os.walk(folder), key=lambda item: -len(item[0])):
        try:
            os.rmdir(current)
        except OSError:
            pass  # not empty: it holds a published file (or a task is writing into it right now)


async def remove_intermediates(storage: Storage, job_id: str, keep: Iterable[str] = ()) -> int:
    """:func:`delete_intermediates` off the event loop. A storage error is logged and answered as -1:
    a job's end must not fail because its scratch files could not be removed."""
    kept = list(keep)
    try:
        count = await asyncio.to_thread(delete_intermediates, storage, job_id, kept)
    except Exception as exc:  # noqa: BLE001
        _log.warning("could not delete the intermediates of job %s: %s", job_id, exc)
        return -1
    if count:
        _log.debug("deleted %d intermediate file(s) of job %s", count, job_id)
    return count


async def purge_intermediates(storage: Storage, job_id: str, keep: Iterable[str] = ()) -> int:
    """:func:`delete_intermediates` off the event loop, for a request that must know it happened: whatever the
    storage raises (an OSError from a disk, a client error from S3) becomes :class:`StorageUnavailableError`."""
    kept = list(keep)
    try:
        return await asyncio.to_thread(delete_intermediates, storage, job_id, kept)
    except StorageUnavailableError:
        raise
    except Exception as exc:  # noqa: BLE001  (whatever the store's client raises when it cannot answer)
        raise StorageUnavailableError(
            f"deleting the files of job {job_id} failed: {type(exc).__name__}: {exc}") from exc
