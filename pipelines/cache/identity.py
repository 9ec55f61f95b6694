"""Cache keys: what an operator's result depends on, reduced to one SHA-256 in the dispatcher, before any task runs.

A key is the digest of ``[KEY_FORMAT, operator name, operator version, params, inputs]``, each value written in a
canonical form (:func:`canonical`): models and dataclasses field by field with their class name, mappings sorted,
floats and fractions exactly. Inside it:

- **a file** (a string field named ``path``, ``*_path`` or ``font``) is known by its content identity as well as
  its path: on a local store its size and mtime (a job's own file, ``jobs/<job>/…``, by its SHA-256, computed once
  and remembered), on a remote store its size and ETag (:meth:`operators.storage.Storage.version`);
- **a job's own path** is written with the job left out (``jobs/*/render/audio.m4a``), so two jobs that made the
  same file in the same place share keys downstream of it;
- **another cached node's result** is its key (:class:`Upstream`), never its value: a key is known as soon as the
  keys of its inputs are, before those inputs are computed.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from fractions import Fraction
from pathlib import PurePath
from typing import Any

from pydantic import BaseModel

from operators.storage import Storage

__all__ = ["KEY_FORMAT", "CacheKeyError", "FileIdentities", "Upstream", "canonical", "derive_key", "is_file_field"]

#: The version of this derivation itself: bumping it gives every node new keys.
KEY_FORMAT = 1
_JOB_PATH = re.compile(r"^jobs/[^/]+/")
_HASH_CHUNK = 1 << 20


class CacheKeyError(ValueError):
    """A value a key cannot be made from (an object with no canonical form): the node runs uncached."""


@dataclasses.dataclass(frozen=True, slots=True)
class Upstream:
    """An input that is another cached node's result, known by that result's key and the path read from it."""

    key: str
    path: tuple[str, ...] = ()


def is_file_field(name: str) -> bool:
    """Whether a string field of this name holds a storage path (its file's identity joins the key)."""
    return name == "path" or name.endswith("_path") or name == "font"


def job_neutral(text: str) -> str:
    """A job's own path without the job: ``jobs/job_1/render/a.mp4`` -> ``jobs/*/render/a.mp4``."""
    return _JOB_PATH.sub("jobs/*/", text, count=1)


class FileIdentities:
    """The content identity of storage files (see the module's docstring), memoised for the process."""

    _digests: OrderedDict[tuple[str, str, str], str] = OrderedDict()
    _lock = threading.Lock()
    _LIMIT = 4096

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def __call__(self, path: str) -> str:
        try:
            version = self.storage.version(path)
        except (FileNotFoundError, OSError, ValueError):
            return "missing"
        if not (self.storage.is_local and _JOB_PATH.match(path)):
            return version if _JOB_PATH.match(path) else f"{path}|{version}"
        memo = (self.storage.url, path, version)
        with self._lock:
            if memo in self._digests:
                self._digests.move_to_end(memo)
                return self._digests[memo]
        digest = _sha256(self.storage, path)
        with self._lock:
            self._digests[memo] = digest
            while len(self._digests) > self._LIMIT:
                self._digests.popitem(last=False)
        return digest


def _sha256(storage: Storage, path: str) -> str:
    sha = hashlib.sha256()
    with storage.open(path) as handle:
        while chunk := handle.read(_HASH_CHUNK):
            sha.update(chunk)
    return f"sha256:{sha.hexdigest()}"


def canonical(value: Any, files: Callable[[str], str]) -> Any:
    """``value`` as plain JSON data that two equal values (and only they) share; raises :class:`CacheKeyError`."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return job_neutral(value)
    if isinstance(value, float):
        return ["f", repr(value)]
    if isinstance(value, Fraction):
        return ["q", f"{value.numerator}/{value.denominator}"]
    if isinstance(value, enum.Enum):
        return ["e", type(value).__qualname__, canonical(value.value, files)]
    if isinstance(value, Upstream):
        return ["u", value.key, list(value.path)]
    if isinstance(value, bytes):
        return ["b", hashlib.sha256(value).hexdigest()]
    if isinstance(value, PurePath):
        return job_neutral(value.as_posix())
    if isinstance(value, BaseModel):
        return ["m", type(value).__qualname__, _fields({k: getattr(value, k) for k in type(value).model_fields}, files)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return ["c", type(value).__qualname__,
                _fields({f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, files)]
    if isinstance(value, Mapping):
        return ["d", _fields({str(k): v for k, v in value.items()}, files)]
    if isinstance(value, list | tuple):
        return [canonical(v, files) for v in value]
    if isinstance(value, set | frozenset):
        return ["s", sorted((canonical(v, files) for v in value), key=_sort_key)]
    raise CacheKeyError(f"a {type(value).__qualname__} has no canonical form for a cache key")


def _fields(fields: dict[str, Any], files: Callable[[str], str]) -> list[Any]:
    out = []
    for name in sorted(fields):
        item = fields[name]
        out.append([name, canonical(item, files)])
        if isinstance(item, str) and is_file_field(name):
            out.append([f"@{name}", files(item)])
    return out


def _sort_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def derive_key(op: str, version: int, params: Any, inputs: Mapping[str, Any], files: Callable[[str], str]) -> str:
    """The cache key of one call of operator ``op`` (its declared ``version``) with ``params`` and ``inputs``."""
    document = [KEY_FORMAT, op, version, canonical(params, files), canonical(dict(inputs), files)]
    return hashlib.sha256(_sort_key(document).encode()).hexdigest()
