"""Candidate clips: spans from a sentence's start to a later sentence's end, cut in silence.

Each sentence gets one cut point before it and one after it, inside the silence that
separates it from its neighbours. With the loudness envelope the cut goes to the quiet
frame nearest a comfortable lead (0.3 s) or tail (0.5 s), with quiet on both sides of it,
so a word timed a little late or early by the recogniser is still not clipped; without
audio it is put that far into the gap between the words. A candidate is every pair
(first sentence, last sentence) whose cut-to-cut length lies in ``[min_seconds, max_seconds]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from operators.clips.models import Loudness, Sentence

__all__ = ["Candidates", "Cuts", "cut_points", "enumerate_candidates", "silence_threshold"]

LEAD, TAIL = 0.3, 0.5
# How far past a word's timed start or end the recogniser may be wrong; the cut never goes there.
SLACK = 0.1


@dataclass(frozen=True, slots=True)
class Cuts:
    """Per sentence: where a clip starting on it starts, and where one ending on it ends."""

    before: np.ndarray
    after: np.ndarray


@dataclass(frozen=True, slots=True)
class Candidates:
    first: np.ndarray  # index of the first sentence
    last: np.ndarray  # index of the last sentence (inclusive)
    start: np.ndarray  # seconds
    end: np.ndarray

    @property
    def count(self) -> int:
        return int(self.first.size)

    @property
    def duration(self) -> np.ndarray:
        return self.end - self.start


def silence_threshold(loudness: Loudness) -> float:
    """dBFS under which a frame counts as silence: a third of the way from the noise floor to speech."""
    db = np.asarray(loudness.db)
    if db.size == 0:
        return -60.0
    noise, speech = np.percentile(db, 10), np.percentile(db, 90)
    return float(noise + 0.35 * max(0.0, speech - noise))


def _quiet_frames(db: np.ndarray, threshold: float) -> np.ndarray:
    """Frames below ``threshold`` whose neighbours are too (50 ms of quiet on each side)."""
    quiet = db < threshold
    core = quiet.copy()
    core[1:] &= quiet[:-1]
    core[:-1] &= quiet[1:]
    return core


def _snap(lo: float, hi: float, target: float, db: np.ndarray | None, core: np.ndarray | None,
          hop: float) -> float:
    """The quiet point of ``[lo, hi]`` nearest ``target``; ``target`` itself without audio."""
    target = min(max(target, lo), hi)
    if db is None or core is None or hi <= lo:
        return target
    a, b = max(0, int(np.floor(lo / hop))), min(db.size, int(np.ceil(hi / hop)))
    if b <= a:
        return target
    times = (np.arange(a, b) + 0.5) * hop
    inside = (times >= lo) & (times <= hi)
    quiet = np.flatnonzero(core[a:b] & inside)
    if quiet.size:
        best = quiet[np.argmin(np.abs(times[quiet] - target))]
        return float(times[best])
    window = np.flatnonzero(inside)
    if window.size == 0:
        return target
    # Nothing quiet (music under speech, a noisy room): the softest frame of the gap.
    return float(times[window[np.argmin(db[a:b][window])]])


def cut_points(sentences: Sequence[Sentence], duration: float, loudness: Loudness | None) -> Cuts:
    db = np.asarray(loudness.db) if loudness is not None and loudness.db else None
    hop = loudness.hop if loudness is not None else 0.05
    core = _quiet_frames(db, silence_threshold(loudness)) if db is not None else None
    end_of_source = max(duration, sentences[-1].end if sentences else 0.0)
    before, after = np.zeros(len(sentences)), np.zeros(len(sentences))
    for i, s in enumerate(sentences):
        prev_end = s.start - s.gap_before
        # Never before the previous sentence's own tail cut: clips ending and starting there meet cleanly.
        lo = max(0.0, prev_end + min(SLACK, s.gap_before / 2))
        hi = max(lo, s.start - min(SLACK, s.gap_before / 2))
        before[i] = _snap(lo, hi, s.start - min(LEAD, s.gap_before / 2), db, core, hop)
        next_start = s.end + s.gap_after
        lo = min(s.end + min(SLACK, s.gap_after / 2), end_of_source)
        hi = min(max(lo, next_start - min(SLACK, s.gap_after / 2)), end_of_source)
        after[i] = _snap(lo, hi, s.end + min(TAIL, s.gap_after / 2), db, core, hop)
    return Cuts(before=np.round(before, 3), after=np.round(after, 3))


def enumerate_candidates(cuts: Cuts, min_seconds: float, max_seconds: float) -> Candidates:
    """Every (first, last) sentence pair whose clip lasts between ``min_seconds`` and ``max_seconds``."""
    starts, ends = cuts.before, np.maximum.accumulate(cuts.after) if cuts.after.size else cuts.after
    n = starts.size
    if n == 0:
        empty = np.zeros(0, np.int64)
        return Candidates(empty, empty, np.zeros(0), np.zeros(0))
    idx = np.arange(n)
    lo = np.searchsorted(ends, starts + min_seconds - 1e-9, side="left")
    hi = np.searchsorted(ends, starts + max_seconds + 1e-9, side="right")
    lo = np.maximum(lo, idx)
    counts = np.maximum(0, hi - lo)
    first = np.repeat(idx, counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    last = np.repeat(lo, counts) + offsets
    start, end = starts[first], cuts.after[last]
    keep = (end - start >= min_seconds - 1e-9) & (end - start <= max_seconds + 1e-9)
    return Candidates(first=first[keep], last=last[keep], start=start[keep], end=end[keep])
