"""Undo the allocator setting Dask gives its workers, which doubled the cost of our heaviest tasks.

Dask's nanny starts each worker with ``MALLOC_TRIM_THRESHOLD_=65536`` (``distributed.nanny.pre-spawn-
environ``), so that freed memory goes back to the OS at once. Setting it also switches off glibc's
dynamic mmap threshold: every buffer over 128 KiB is then mapped and unmapped on each allocation, and
every page of it faulted in again. CTranslate2 and numpy allocate such buffers all the time. Measured on
8 Whisper windows (tiny.en, 1 thread): 9.6 s as a plain process, 19.3 s with Dask's setting, 10.2 s with
it and the two thresholds below. They are what glibc's dynamic threshold grows to on 64-bit (32 MiB), and
a trim threshold that keeps that much free at the heap's top.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "relax_malloc_trim"]

MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD
_M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
_M_MMAP_THRESHOLD = -3


def relax_malloc_trim() -> bool:
    """Set glibc's trim and mmap thresholds for this process; False where there is no glibc (macOS, musl)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
