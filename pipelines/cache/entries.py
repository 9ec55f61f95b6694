"""Cache entries in the media store: a result and copies of the files it names, under ``cache/``.

An entry of key ``K`` lives in ``cache/<K[:2]>/<K>/<nonce>/``: ``result.pkl`` (the operator's return value,
pickled) and ``files/<path>`` for each file of the job that made it which the value names (``jobs/<job>/<path>``).
Each writer has its own nonce folder, so two jobs storing one key at once never write the same file, and nothing
is an entry until its :class:`Manifest` is committed to the index (:mod:`pipelines.cache.index`), after every
file is in place: a reader never sees half an entry.

A hit checks every file's size and SHA-256 against the manifest before anything is used (a corrupt or half-evicted
entry is a miss, :class:`EntryUnusable`), then puts each file at the reading job's own path (a hard link on a local
store, a server-side copy on S3) and rewrites the value's paths to it. The job owns its copy: evicting or emptying
the cache, or deleting the job that stored the entry, never touches a file another job reads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import uuid
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from operators.storage import Storage

__all__ = ["CACHE_PREFIX", "EntryUnusable", "Manifest", "delete_entry", "map_strings", "restore_entry", "store_entry"]

CACHE_PREFIX = "cache"
_CHUNK = 1 << 20


class EntryUnusable(Exception):
    """An entry's files are missing or differ from its manifest: a miss, and the entry is dropped."""


@dataclasses.dataclass(frozen=True, slots=True)
class Manifest:
    """What the index holds for one entry: where it is, what it holds, and how to check it."""

    key: str
    folder: str
    #: The job that stored it, and each file: (path inside the job's folder, size, sha256).
    job_id: str
    files: tuple[tuple[str, int, str], ...]
    #: ``result.pkl``'s size and sha256.
    result: tuple[int, str]
    op: str
    #: Seconds the task took when it was computed: what a hit saves.
    seconds: float = 0.0

    @property
    def size(self) -> int:
        return self.result[0] + sum(size for _, size, _ in self.files)

    def to_json(self) -> str:
        return json.dumps({"key": self.key, "folder": self.folder, "job_id": self.job_id,
                           "files": [list(f) for f in self.files], "result": list(self.result), "op": self.op,
                           "seconds": round(self.seconds, 3), "bytes": self.size}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        raw = json.loads(text)
        return cls(key=raw["key"], folder=raw["folder"], job_id=raw["job_id"],
                   files=tuple((str(p), int(s), str(d)) for p, s, d in raw["files"]),
                   result=(int(raw["result"][0]), str(raw["result"][1])), op=raw["op"],
                   seconds=float(raw.get("seconds", 0.0)))


def map_strings(value: Any, change: Callable[[str], str]) -> Any:
    """``value`` with ``change`` applied to every string inside it (models, dataclasses, mappings, sequences)."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, BaseModel):
        return value.model_copy(update={k: map_strings(getattr(value, k), change) for k in type(value).model_fields})
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: map_strings(getattr(value, f.name), change)
                                             for f in dataclasses.fields(value) if f.init})
    if isinstance(value, dict):
        return {k: map_strings(v, change) for k, v in value.items()}
    if isinstance(value, list):
        return [map_strings(v, change) for v in value]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(map_strings(v, change) for v in value)
    return value


def _strings(value: Any) -> set[str]:
    found: set[str] = set()

    def note(text: str) -> str:
        found.add(text)
        return text

    map_strings(value, note)
    return found


def _digest(storage: Storage, path: str) -> tuple[int, str]:
    sha, size = hashlib.sha256(), 0
    with storage.open(path) as handle:
        while chunk := handle.read(_CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()


def store_entry(storage: Storage, key: str, value: Any, *, job_id: str, op: str, seconds: float) -> Manifest:
    """Copy ``value`` and the job's files it names into a new entry folder (blocking); its manifest, to commit."""
    prefix = f"jobs/{job_id}/"
    folder = f"{CACHE_PREFIX}/{key[:2]}/{key}/{uuid.uuid4().hex[:12]}"
    files = []
    for path in sorted(s for s in _strings(value) if s.startswith(prefix) and storage.exists(s)):
        rel = path[len(prefix):]
        target = f"{folder}/files/{rel}"
        storage.copy(path, target)
        files.append((rel, *_digest(storage, target)))
    blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    with storage.writing(f"{folder}/result.pkl") as tmp:
        tmp.write_bytes(blob)
    return Manifest(key=key, folder=folder, job_id=job_id, files=tuple(files),
                    result=(len(blob), hashlib.sha256(blob).hexdigest()), op=op, seconds=seconds)


def restore_entry(storage: Storage, manifest: Manifest, *, job_id: str) -> Any:
    """The entry's value for job ``job_id``, its files copied to that job's folder (blocking).

    Raises :class:`EntryUnusable` when anything is missing or differs from the manifest; nothing is used then.
    """
    try:
        with storage.open(f"{manifest.folder}/result.pkl") as handle:
            blob = handle.read()
        if (len(blob), hashlib.sha256(blob).hexdigest()) != manifest.result:
            raise EntryUnusable(f"{manifest.folder}/result.pkl differs from its manifest")
        for rel, size, digest in manifest.files:
            if _digest(storage, f"{manifest.folder}/files/{rel}") != (size, digest):
                raise EntryUnusable(f"{manifest.folder}/files/{rel} differs from its manifest (size or SHA-256)")
        for rel, _, _ in manifest.files:
            storage.copy(f"{manifest.folder}/files/{rel}", f"jobs/{job_id}/{rel}")
    except (FileNotFoundError, OSError) as exc:
        raise EntryUnusable(f"{manifest.folder}: {exc}") from None
    old, new = f"jobs/{manifest.job_id}/", f"jobs/{job_id}/"
    value = pickle.loads(blob)  # noqa: S301  (our own bytes, checked against the index's SHA-256 above)
    return map_strings(value, lambda s: new + s[len(old):] if s.startswith(old) else s)


def delete_entry(storage: Storage, folder: str) -> None:
    """Delete an entry's files (blocking; what is already gone is fine)."""
    if not folder.startswith(f"{CACHE_PREFIX}/"):
        raise ValueError(f"not a cache entry folder: {folder!r}")
    for path in storage.files_under(folder):
        try:
            storage.delete(path)
        except FileNotFoundError:
            pass
    if storage.is_local:
        root = storage.local_path(folder)
        for parent in (root, root.parent):
            try:
                parent.rmdir()
            except OSError:
                break
