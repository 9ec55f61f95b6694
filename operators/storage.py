"""Media storage: a local folder by default, or any fsspec URL (``s3://bucket/prefix``).

A :class:`Storage` is a small frozen value, so it pickles to workers; a worker needs only
this and its task's arguments. Every path that reaches storage is relative to the root
and checked by :func:`safe_relpath`, so nothing outside the media root is ever touched.

On a remote store, :meth:`Storage.reading` goes through the machine's
:class:`~operators.storage_cache.MediaCache`: a source that a dozen tasks read is fetched once
per machine, and a file a task writes is kept there for the tasks that read it next.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from operators.errors import PathOutsideRootError
from operators.storage_cache import MediaCache

__all__ = ["Storage", "safe_relpath"]


def safe_relpath(path: str) -> str:
    """Normalise a storage path, refusing absolute paths and ``..``.

    Returns the posix form, e.g. ``"uploads/a.mp4"``.
    """
    if not isinstance(path, str) or not path.strip():
        raise PathOutsideRootError("media path must be a non-empty relative path")
    if "\x00" in path:
        raise PathOutsideRootError("media path contains a NUL byte")
    raw = path.replace("\\", "/")
    if raw.startswith("/") or PurePosixPath(raw).is_absolute() or (len(raw) > 1 and raw[1] == ":"):
        raise PathOutsideRootError(f"media path '{path}' must be relative to the media root, not absolute")
    parts = [p for p in PurePosixPath(raw).parts if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise PathOutsideRootError(f"media path '{path}' must not contain '..'")
    if not parts:
        raise PathOutsideRootError(f"media path '{path}' names the media root itself, not a file")
    return "/".join(parts)


@dataclass(frozen=True, slots=True)
class Storage:
    """The media root: ``url`` is a local directory or an fsspec URL.

    ``options`` are the fsspec filesystem's keyword arguments (``MEDIA_STORAGE_OPTIONS``), e.g.
    ``{"endpoint_url": "http://minio:9000"}`` for an S3-compatible store. They travel with the
    value to the workers; they are left out of its ``repr`` as they may hold credentials.
    """

    url: str
    options: dict[str, Any] = field(default_factory=dict, hash=False, repr=False)

    @property
    def is_local(self) -> bool:
        return "://" not in self.url or self.url.startswith("file://")

    @property
    def local_root(self) -> Path:
        root = self.url[len("file://") :] if self.url.startswith("file://") else self.url
        return Path(root).resolve()

    def _fs(self) -> tuple[Any, str]:
        import fsspec

        fs, root = fsspec.core.url_to_fs(self.url, **self.options)
        return fs, root.rstrip("/")

    def _scope(self) -> str:
        """Which store this is, for the cache's keys: the URL and where it points (never credentials)."""
        client = self.options.get("client_kwargs") or {}
        endpoint = self.options.get("endpoint_url") or client.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL")
        return json.dumps([self.url, endpoint])

    def local_path(self, path: str) -> Path:
        """The local file for ``path``; symlinks that leave the root are refused."""
        rel = safe_relpath(path)
        root = self.local_root
        full = (root / rel).resolve()
        if full != root and root not in full.parents:
            raise PathOutsideRootError(f"media path '{path}' leaves the media root")
        return full

    def _remote(self, path: str) -> str:
        _, root = self._fs()
        return f"{root}/{safe_relpath(path)}"

    def exists(self, path: str) -> bool:
        if self.is_local:
            return self.local_path(path).is_file()
        fs, _ = self._fs()
        # Not fs.isfile: it answers False for any error, so an unreachable store would read as a missing file.
        try:
            return fs.info(self._remote(path)).get("type") == "file"
        except FileNotFoundError:
            return False

    def size(self, path: str) -> int:
        if self.is_local:
            return self.local_path(path).stat().st_size
        fs, _ = self._fs()
        return int(fs.size(self._remote(path)))

    def open(self, path: str, mode: str = "rb") -> IO[bytes]:
        """A binary file object; writes create parent folders."""
        if self.is_local:
            full = self.local_path(path)
            if "w" in mode or "a" in mode:
                full.parent.mkdir(parents=True, exist_ok=True)
            return open(full, mode)  # noqa: SIM115  (the caller closes it)
        fs, _ = self._fs()
        return fs.open(self._remote(path), mode)

    def files_under(self, prefix: str) -> list[str]:
        """The storage paths of every file under the folder ``prefix``, sorted (none if it does not exist)."""
        rel = safe_relpath(prefix)
        if self.is_local:
            root, folder = self.local_root, self.local_path(rel)
            if not folder.is_dir():
                return []
            return sorted(p.relative_to(root).as_posix() for p in folder.rglob("*") if not p.is_dir())
        fs, root = self._fs()
        base = f"{root}/{rel}"
        found = fs.find(base) if fs.exists(base) else []
        return sorted(str(p)[len(root) + 1 :] for p in found)

    def delete(self, path: str) -> None:
        if self.is_local:
            self.local_path(path).unlink(missing_ok=True)
        else:
            fs, _ = self._fs()
            fs.rm(self._remote(path))

    @contextmanager
    def reading(self, path: str) -> Iterator[Path]:
        """A local file to read ``path`` from, valid inside the block.

        A remote object is fetched into the machine's cache once and shared by every task there
        (see :mod:`operators.storage_cache`); the file must be treated as read-only.
        """
        if self.is_local:
            full = self.local_path(path)
            if not full.is_file():
                raise FileNotFoundError(f"media file '{path}' does not exist in storage")
            yield full
            return
        fs, _ = self._fs()
        with MediaCache.from_env().reading(fs, self._remote(path), name=PurePosixPath(path).name,
                                           scope=self._scope()) as local:
            yield local

    @contextmanager
    def writing(self, path: str) -> Iterator[Path]:
        """A local temp file to write; it appears at ``path`` only if the block succeeds.

        Writing beside the target and renaming means a reader never sees half a file,
        and a retried task simply overwrites what an earlier try left.
        """
        rel = safe_relpath(path)
        if self.is_local:
            final = self.local_path(rel)
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=final.suffix, dir=final.parent)
            os.close(fd)
            tmp = Path(tmp_name)
            try:
                yield tmp
                os.replace(tmp, final)
            finally:
                tmp.unlink(missing_ok=True)
            return
        fs, _ = self._fs()
        cache, remote, name = MediaCache.from_env(), self._remote(rel), PurePosixPath(rel).name
        with cache.staging() as tmpdir:
            tmp = tmpdir / name
            yield tmp
            fs.put_file(str(tmp), remote)
            # The next reader of this file is likely a task on this machine (a join, a chained job).
            cache.adopt(fs, remote, tmp, name=name, scope=self._scope())

    def version(self, path: str) -> str:
        """What changes when the file at ``path`` changes: its size and mtime here, its size and ETag (or the
        store's own version) on a remote store. Raises FileNotFoundError for a missing file."""
        if self.is_local:
            stat = self.local_path(path).stat()
            return f"{stat.st_size}:{stat.st_mtime_ns}"
        from operators.storage_cache import object_version

        fs, _ = self._fs()
        info = fs.info(self._remote(path))
        return f"{info.get('size')}:{object_version(info)}"

    def copy(self, source: str, target: str) -> None:
        """Put the content of ``source`` at ``target`` (replaced whole, never half written). A local store links
        the file (no bytes copied: files here are only ever replaced, never written in place); a remote store
        copies it on the server side."""
        if not self.is_local:
            fs, _ = self._fs()
            fs.copy(self._remote(source), self._remote(target))
            return
        src, final = self.local_path(source), self.local_path(target)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".tmp-{uuid.uuid4().hex[:12]}-{final.name}"
        try:
            try:
                os.link(src, tmp)
            except OSError:  # another filesystem, or one without hard links
                shutil.copyfile(src, tmp)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    def put_file(self, local: Path, path: str) -> None:
        """Copy a local file into storage at ``path``."""
        with self.writing(path) as tmp:
            shutil.copyfile(local, tmp)
