"""Cutting a sound into overlapping chunks, and joining the cleaned chunks with crossfades.

Chunk *k* owns the samples ``[k·C, (k+1)·C)`` of the output (the last one the rest). Its task
decodes ``warmup_seconds`` more before that (the model's memory settles there, and those
samples are dropped) and keeps half a crossfade on each side where there is a neighbour. At
each join the two chunks overlap by one crossfade and are blended linearly: both hold the
same sound cleaned by a model that has had seconds to settle, so the blend is inaudible.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from operators.context import OpContext
from operators.types import Frozen

__all__ = ["Cleaned", "VoiceChunk", "crossfade_join", "plan_chunks", "read_cleaned"]


class VoiceChunk(Frozen):
    """One task's share of a sound: output samples ``[lo, hi)`` at ``rate`` (crossfade halves
    included), decoded from ``warmup`` seconds earlier, from ``offset`` seconds into the stream."""

    path: str
    index: int
    lo: int
    hi: int
    rate: int
    warmup: float
    offset: float = 0.0
    stream: int | None = None
    #: Which sound of the job this is a chunk of (a render's clip layer), 0 when there is one.
    group: int = 0


class Cleaned(Frozen):
    """A cleaned chunk: float32 samples ``[lo, hi)`` at ``rate`` in an ``.npy`` file."""

    path: str
    index: int
    lo: int
    hi: int
    rate: int
    group: int = 0


def plan_chunks(path: str, samples: int, rate: int, *, chunk_seconds: float, crossfade_seconds: float,
                warmup_seconds: float, offset: float = 0.0, stream: int | None = None,
                group: int = 0) -> list[VoiceChunk]:
    """Chunks covering ``samples`` output samples; one chunk when the sound is short."""
    size = max(1, round(chunk_seconds * rate))
    half = round(crossfade_seconds * rate / 2)
    count = max(1, -(-samples // size))
    if count > 1 and samples - (count - 1) * size < 2 * half:
        count -= 1  # a last sliver shorter than a crossfade joins the chunk before it
    chunks = []
    for k in range(count):
        a, b = k * size, (samples if k == count - 1 else (k + 1) * size)
        lo, hi = (a - half if k else a), (b + half if k < count - 1 else b)
        chunks.append(VoiceChunk(path=path, index=k, lo=lo, hi=hi, rate=rate, warmup=warmup_seconds,
                                 offset=offset, stream=stream, group=group))
    return chunks


def crossfade_join(parts: Iterable[tuple[int, int, np.ndarray]]) -> Iterator[np.ndarray]:
    """Blocks of the joined sound from ``(lo, hi, samples)`` in order, each chunk's overlap with
    the next blended linearly over the samples both hold. Holds one chunk at a time."""
    held: np.ndarray | None = None
    held_hi = 0
    for lo, hi, samples in parts:
        if held is None:
            held, held_hi = samples, hi
            if lo:
                yield np.zeros(lo, np.float32)
            continue
        overlap = held_hi - lo
        if overlap < 0:
            raise ValueError(f"chunks leave a gap: one ends at sample {held_hi}, the next starts at {lo}")
        if overlap:
            ramp = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
            yield held[: held.size - overlap]
            yield held[held.size - overlap :] * (1 - ramp) + samples[:overlap] * ramp
            held = samples[overlap:]
        else:
            yield held
            held = samples
        held_hi = hi
    if held is not None:
        yield held


def read_cleaned(parts: list[Cleaned], ctx: OpContext) -> Iterator[np.ndarray]:
    """The joined sound of ``parts`` (one group), in blocks, reading one chunk at a time."""

    def load() -> Iterator[tuple[int, int, np.ndarray]]:
        for part in sorted(parts, key=lambda p: p.index):
            with ctx.storage.reading(part.path) as local:
                samples = np.load(local)
            yield part.lo, part.hi, samples

    return crossfade_join(load())
