"""Serving an asset's bytes: single ``Range`` requests, ``Content-Disposition``, reads off the event loop."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import IO
from urllib.parse import quote

from anyio import to_thread

from operators.storage import Storage
from server.uploads import BLOCK

__all__ = ["ByteRange", "RangeNotSatisfiableError", "content_disposition", "parse_range", "read_range"]

_RANGE_SPEC = re.compile(r"^(\d*)\s*-\s*(\d*)$")


def content_disposition(filename: str, disposition: str = "inline") -> str:
    """``inline; filename="..."`` with an ASCII fallback and RFC 5987 ``filename*`` when needed."""
    fallback = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode()
    fallback = re.sub(r'[\x00-\x1f\x7f"\\]', "_", fallback) or "download"
    value = f'{disposition}; filename="{fallback}"'
    if fallback != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value


@dataclass(frozen=True, slots=True)
class ByteRange:
    """One satisfiable byte range; ``end`` is inclusive, as in ``Content-Range``."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, total: int) -> str:
        return f"bytes {self.start}-{self.end}/{total}"


class RangeNotSatisfiableError(ValueError):
    """The Range header is valid but no byte of it lies in the file."""


def parse_range(header: str | None, total: int) -> ByteRange | None:
    """Parse ``Range: bytes=a-b | a- | -n`` against a file of ``total`` bytes.

    Returns ``None`` when the whole file should be sent: no header, another unit, a
    malformed header, or several ranges (RFC 9110 lets a server ignore Range). Raises
    :class:`RangeNotSatisfiableError` when the range starts past the end.
    """
    if not header:
        return None
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    specs = [s.strip() for s in spec.split(",") if s.strip()]
    if len(specs) != 1:
        return None
    match = _RANGE_SPEC.match(specs[0])
    if match is None or (not match.group(1) and not match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if not first:  # suffix: the last n bytes
        suffix = int(last)
        if suffix == 0 or total == 0:
            raise RangeNotSatisfiableError(header)
        return ByteRange(max(0, total - suffix), total - 1)
    start = int(first)
    if last and int(last) < start:
        return None  # syntactically invalid: ignored
    if start >= total:
        raise RangeNotSatisfiableError(header)
    return ByteRange(start, min(int(last), total - 1) if last else total - 1)


async def read_range(storage: Storage, path: str, start: int, length: int) -> AsyncIterator[bytes]:
    """Read ``length`` bytes from ``start``, one :data:`BLOCK` at a time, off the event loop."""
    handle: IO[bytes] = await to_thread.run_sync(storage.open, path, "rb")
    try:
        if start:
            await to_thread.run_sync(handle.seek, start)
        remaining = length
        while remaining > 0:
            data = await to_thread.run_sync(handle.read, min(BLOCK, remaining))
            if not data:
                break
            remaining -= len(data)
            yield data
    finally:
        handle.close()
