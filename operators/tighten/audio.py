"""The speech audio as tighten reads it: a 10 ms envelope, silent runs, voicing, quiet points, zero crossings.

Everything here works on the 16 kHz mono samples the graph extracts (``media.extract_audio``), held in
memory: an hour is 230 MB of float32, a ten-minute talk 38 MB. Times are seconds on the source's timeline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["HOP", "RATE", "Sound", "quiet_point", "silent_runs", "voicing", "zero_crossing"]

RATE = 16000
HOP = 0.01
_HOP_SAMPLES = int(RATE * HOP)
#: A stretch quieter than the threshold counts as silence from this long (shorter: a stop consonant's closure).
MIN_SILENCE = 0.06
#: Sound shorter than this between two silences is a click or a breath's edge, not speech: the silence goes on.
MIN_SOUND = 0.03


@dataclass(frozen=True, slots=True)
class Sound:
    """The samples, their envelope (dBFS of the RMS over 20 ms, every 10 ms) and the silence threshold."""

    samples: np.ndarray
    db: np.ndarray
    threshold: float

    @classmethod
    def of(cls, samples: np.ndarray) -> Sound:
        samples = np.asarray(samples, np.float32)
        n = max(1, -(-samples.size // _HOP_SAMPLES))
        padded = np.zeros((n + 1) * _HOP_SAMPLES, np.float32)
        padded[:samples.size] = samples
        power = (padded.reshape(n + 1, _HOP_SAMPLES).astype(np.float64) ** 2).mean(axis=1)
        window = (power[:-1] + power[1:]) / 2  # 20 ms windows, one every 10 ms
        db = 10.0 * np.log10(np.maximum(window, 1e-12))
        return cls(samples=samples, db=db, threshold=_threshold(db))

    @property
    def duration(self) -> float:
        return self.samples.size / RATE

    def frame(self, t: float) -> int:
        return int(np.clip(round(t / HOP), 0, self.db.size))


def _threshold(db: np.ndarray) -> float:
    """dBFS under which a window is silence: a third of the way from the room's floor to speech, at least 6 dB
    over the floor."""
    if db.size == 0:
        return -60.0
    floor, speech = float(np.percentile(db, 5)), float(np.percentile(db, 95))
    return floor + max(6.0, 0.33 * (speech - floor))


def silent_runs(sound: Sound, start: float = 0.0, end: float | None = None) -> list[tuple[float, float]]:
    """Silences of at least ``MIN_SILENCE`` inside ``[start, end)``, in time order (clicks under ``MIN_SOUND``
    inside a silence do not split it)."""
    a, b = sound.frame(start), sound.frame(sound.duration if end is None else end)
    quiet = sound.db[a:b] < sound.threshold
    if quiet.size == 0:
        return []
    edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]])))
    runs = [[int(s), int(e)] for s, e in zip(edges[::2], edges[1::2])]
    merged: list[list[int]] = []
    for run in runs:
        if merged and (run[0] - merged[-1][1]) * HOP < MIN_SOUND:
            merged[-1][1] = run[1]
        else:
            merged.append(run)
    lo, hi = start, sound.duration if end is None else end
    return [(max(lo, _edge(sound, (a + s) * HOP, -1)), min(hi, _edge(sound, (a + e) * HOP, 1)))
            for s, e in merged if (e - s) * HOP >= MIN_SILENCE]


def _edge(sound: Sound, t: float, side: int) -> float:
    """A silence's edge to 2.5 ms (the 20 ms windows blur it by up to 10 ms): ``side`` -1 for its start (sound
    before it), 1 for its end (sound after it)."""
    step = 0.0025
    power = 10.0 ** (sound.threshold / 10)

    def quiet(a: float) -> bool:  # the 2.5 ms from ``a`` on
        x = sound.samples[max(0, int(round(a * RATE))):max(0, int(round((a + step) * RATE)))]
        return x.size > 0 and float(np.mean(x.astype(np.float64) ** 2)) < power

    outside = (lambda u: u - step) if side < 0 else (lambda u: u)  # the slice on the sound's side of ``u``
    inside = (lambda u: u) if side < 0 else (lambda u: u - step)  # the slice on the silence's side
    for _ in range(4):  # widen the silence while the sound's side is quiet too
        if not quiet(outside(t)):
            break
        t += side * step
    for _ in range(4):  # narrow it while its own side is loud
        if quiet(inside(t)):
            break
        t -= side * step
    return round(min(max(t, 0.0), sound.duration), 4)


def quiet_point(sound: Sound, lo: float, hi: float) -> float:
    """The quietest point of ``[lo, hi]``: the envelope's minimum, then the nearest rising zero crossing."""
    a, b = sound.frame(lo), max(sound.frame(lo) + 1, sound.frame(hi))
    window = sound.db[a:b]
    if window.size == 0:
        return zero_crossing(sound.samples, (lo + hi) / 2, lo, hi)
    lowest = np.flatnonzero(window <= window.min() + 0.5)
    # Of the near-equal minima (a flat silence), the one nearest the middle of the stretch.
    middle = ((lo + hi) / 2) / HOP - a
    best = lowest[np.argmin(np.abs(lowest - middle))]
    return zero_crossing(sound.samples, (a + best) * HOP + HOP / 2, lo, hi)


def zero_crossing(samples: np.ndarray, t: float, lo: float, hi: float, reach: float = 0.005) -> float:
    """The zero crossing nearest ``t`` within ``reach`` seconds (and ``[lo, hi]``), else ``t``."""
    c = int(round(t * RATE))
    a, b = max(0, int(lo * RATE), c - int(reach * RATE)), min(samples.size - 1, int(hi * RATE), c + int(reach * RATE))
    if b - a < 2:
        return float(min(max(t, lo), hi))
    seg = samples[a:b + 1]
    crossings = np.flatnonzero((seg[:-1] <= 0) & (seg[1:] > 0))
    if crossings.size == 0:
        return float(min(max(t, lo), hi))
    nearest = crossings[np.argmin(np.abs(a + crossings - c))]
    return (a + int(nearest) + 1) / RATE


def voicing(sound: Sound, start: float, end: float) -> float:
    """Share of the 40 ms frames of ``[start, end)`` that have a pitch (the frame's autocorrelation, unbiased,
    reaches 0.5 of its energy at a lag of 70–400 Hz), among those loud enough to be sound."""
    frame, step = int(0.04 * RATE), int(0.01 * RATE)
    lo_lag, hi_lag = RATE // 400, RATE // 70
    seg = sound.samples[int(start * RATE):int(end * RATE)].astype(np.float64)
    if seg.size < frame:
        return 0.0
    starts = np.arange(0, seg.size - frame + 1, step)
    frames = seg[starts[:, None] + np.arange(frame)]
    frames -= frames.mean(axis=1, keepdims=True)
    energy = (frames**2).mean(axis=1)
    loud = 10 * np.log10(np.maximum(energy, 1e-12)) >= sound.threshold
    if not loud.any():
        return 0.0
    spectrum = np.fft.rfft(frames[loud], n=2 * frame, axis=1)
    acf = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, :hi_lag + 1]
    unbiased = acf / (frame - np.arange(hi_lag + 1))  # per-lag mean product, so long lags are not penalised
    peak = unbiased[:, lo_lag:].max(axis=1) / np.maximum(unbiased[:, 0], 1e-12)
    return float((peak >= 0.5).mean())
