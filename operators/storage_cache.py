"""A machine-wide cache of remote media, so a source is fetched from the store once, not once per task.

An ingest reads its source in a dozen tasks (probe, split, every chunk, audio, poster) and a
transcribe reads its audio in every window. Through this cache the first task on a machine
downloads the object and every later task there, in any worker process, opens the local copy.

- **Keyed by content:** an entry is named by the store, the object's path, its size and its
  version (the ETag on S3), so an object that was overwritten is a new entry and a stale copy
  is never used. An object whose store reports no version is not cached (fetched per use).
- **Shared between processes** through ``flock``: one process downloads while the others wait
  for it; a reader holds a shared lock on its entry for as long as it uses the file, and the
  evictor only removes entries it can lock exclusively, so a file is never removed under a task.
- **Bounded (LRU):** past ``max_bytes`` the least recently used entries not in use are removed.
  An object larger than the whole bound is still cached while it is used (a per-task temp copy
  would take as much disk per task) and is the first to go afterwards.
- Files a worker writes are adopted into the cache after their upload (the chunks a join reads,
  the audio a chained transcribe reads), so they are not fetched back either.

Workers read ``AVE_MEDIA_CACHE_DIR`` (default ``<tmp>/ave-media-cache-<uid>``) and
``AVE_MEDIA_CACHE_BYTES`` (default 10 GiB) from their environment.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CACHE_BYTES_ENV", "CACHE_DIR_ENV", "DEFAULT_CACHE_BYTES", "MediaCache", "object_version"]

CACHE_DIR_ENV = "AVE_MEDIA_CACHE_DIR"
CACHE_BYTES_ENV = "AVE_MEDIA_CACHE_BYTES"
DEFAULT_CACHE_BYTES = 10 * 1024**3
# What says which content an object holds, by fsspec backend: S3 and HTTP (ETag, VersionId), GCS
# (generation, md5Hash), Azure (etag), the memory and local filesystems (created, mtime).
_VERSION_KEYS = ("ETag", "etag", "VersionId", "generation", "md5Hash", "last_modified", "LastModified", "mtime",
                 "created")
# Tries to take a shared lock on a fresh entry before giving up and using a private copy: an entry
# is only evicted between its download and its use when the cache is far over its bound.
_ATTEMPTS = 4
# A staging folder this old belongs to no running upload.
_STALE_SECONDS = 24 * 3600


def object_version(info: dict[str, Any]) -> str | None:
    """The parts of an fsspec ``info()`` that change when the object's content does, or None."""
    found = {k: str(info[k]) for k in _VERSION_KEYS if info.get(k) not in (None, "")}
    return json.dumps(found, sort_keys=True) if found else None


@contextmanager
def _locked(path: Path, *, exclusive: bool, blocking: bool = True) -> Iterator[bool]:
    """``flock`` on ``path`` (True), or False when ``blocking`` is off and another holds it.

    The evictor unlinks a lock file while holding it, so a lock taken on a file that is no longer
    at ``path`` protects nothing: then the file is opened again.
    """
    flags = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if blocking else fcntl.LOCK_NB)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, flags)
            except BlockingIOError:
                yield False
                return
            try:
                current = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                yield True
                return
        finally:
            os.close(fd)  # releases the lock


@dataclass(frozen=True, slots=True)
class MediaCache:
    root: Path
    max_bytes: int = DEFAULT_CACHE_BYTES

    @classmethod
    def from_env(cls) -> MediaCache:
        folder = os.environ.get(CACHE_DIR_ENV) or str(Path(tempfile.gettempdir()) / f"ave-media-cache-{os.getuid()}")
        try:
            limit = int(os.environ.get(CACHE_BYTES_ENV) or DEFAULT_CACHE_BYTES)
        except ValueError:
            limit = DEFAULT_CACHE_BYTES
        return cls(Path(folder), max(0, limit))

    def _dirs(self) -> bool:
        try:
            for name in ("data", "locks", "staging"):
                (self.root / name).mkdir(parents=True, exist_ok=True)
        except OSError:
            return False  # an unusable cache folder only costs downloads
        return True

    @staticmethod
    def _key(scope: str, remote: str, size: int, version: str) -> str:
        return hashlib.sha256(json.dumps([scope, remote, size, version]).encode()).hexdigest()[:40]

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A temporary folder on the cache's file system, so a written file can be renamed into it."""
        base = self.root / "staging" if self._dirs() else None
        with tempfile.TemporaryDirectory(prefix="ave-out-", dir=base) as tmp:
            yield Path(tmp)

    @contextmanager
    def reading(self, fs: Any, remote: str, *, name: str, scope: str) -> Iterator[Path]:
        """A local copy of ``remote`` (named ``name``), valid inside the block."""
        info = fs.info(remote)
        if info.get("type") == "directory":
            raise FileNotFoundError(f"media file '{name}' does not exist in storage")
        size, version = int(info["size"]), object_version(info)
        if version is None or not self._dirs():
            with _private_copy(fs, remote, name, size) as local:
                yield local
            return
        key = self._key(scope, remote, size, version)
        entry, lock = self.root / "data" / key / name, self.root / "locks" / key
        over = False  # fetched while the entries in use already filled the bound
        try:
            for _ in range(_ATTEMPTS):
                with _locked(lock, exclusive=False):
                    if _complete(entry, size):
                        _touch(entry)
                        yield entry
                        return
                with _locked(lock, exclusive=True):
                    if not _complete(entry, size):
                        over = not self.evict(reserve=size)
                        _download(fs, remote, entry, size)
            with _private_copy(fs, remote, name, size) as local:
                yield local
        finally:
            if over:
                self.evict()  # released now: back under the bound

    def adopt(self, fs: Any, remote: str, local: Path, *, name: str, scope: str) -> None:
        """Move ``local``, just uploaded to ``remote``, into the cache (best effort: a miss costs a download)."""
        try:
            info = fs.info(remote)
            size, version = int(info["size"]), object_version(info)
            if version is None or size != local.stat().st_size or not self._dirs():
                return
            key = self._key(scope, remote, size, version)
            entry = self.root / "data" / key / name
            with _locked(self.root / "locks" / key, exclusive=True):
                if not _complete(entry, size) and self.evict(reserve=size):  # never past the bound for a guess
                    entry.parent.mkdir(parents=True, exist_ok=True)
                    _place(local, entry)
        except OSError:
            return

    def evict(self, reserve: int = 0) -> bool:
        """Remove least recently used entries not in use until ``reserve`` more bytes fit in the bound.

        False when they do not fit even so (the entries in use fill it).
        """
        for stale in _listdir(self.root / "staging"):  # left by a process killed while it wrote
            with contextlib.suppress(OSError):
                if time.time() - stale.stat().st_mtime > _STALE_SECONDS:
                    shutil.rmtree(stale, ignore_errors=True)
        entries: list[tuple[int, Path, int]] = []
        for folder in _listdir(self.root / "data"):
            files = [f for f in _listdir(folder) if f.is_file()]
            try:
                stats = [f.stat() for f in files]
            except FileNotFoundError:
                continue  # evicted by another process meanwhile
            entries.append((max((s.st_mtime_ns for s in stats), default=0), folder, sum(s.st_size for s in stats)))
        total = sum(size for _, _, size in entries)
        for _, folder, size in sorted(entries, key=lambda e: e[0]):
            if total + reserve <= self.max_bytes:
                break
            lock = self.root / "locks" / folder.name
            with _locked(lock, exclusive=True, blocking=False) as free:
                if free:
                    shutil.rmtree(folder, ignore_errors=True)
                    lock.unlink(missing_ok=True)
                    total -= size
        return total + reserve <= self.max_bytes


def _listdir(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except FileNotFoundError:
        return []


def _place(source: Path, entry: Path) -> None:
    # Read-only: every task on the machine shares the file, so one that tried to change it would
    # corrupt the others' input; this way it fails at once instead.
    os.chmod(source, 0o444)
    os.replace(source, entry)
    _touch(entry)


def _touch(entry: Path) -> None:
    """Mark ``entry`` most recently used. With explicit times: a bare ``utime`` takes the kernel's
    coarse clock (a few ms), too coarse to order entries read one after the other."""
    now = time.time_ns()
    os.utime(entry, ns=(now, now))


def _complete(entry: Path, size: int) -> bool:
    try:
        return entry.stat().st_size == size
    except FileNotFoundError:
        return False


def _download(fs: Any, remote: str, entry: Path, size: int) -> None:
    """Fetch into a part file beside the entry, then rename: an entry is always whole."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    for stale in entry.parent.glob(".part-*"):  # left by a process killed mid-download
        stale.unlink(missing_ok=True)
    part = entry.parent / f".part-{uuid.uuid4().hex}"
    try:
        fs.get_file(remote, str(part))
        if part.stat().st_size != size:
            raise OSError(errno.EIO, f"'{remote}' changed while it was being fetched")
        _place(part, entry)
    finally:
        part.unlink(missing_ok=True)


@contextmanager
def _private_copy(fs: Any, remote: str, name: str, size: int) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ave-in-") as tmp:
        local = Path(tmp) / name
        fs.get_file(remote, str(local))
        if local.stat().st_size != size:
            raise OSError(errno.EIO, f"'{remote}' changed while it was being fetched")
        yield local
