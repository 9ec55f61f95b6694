"""Shot cuts from decoded frames: a frame-difference detector in the manner of libavfilter's ``scdet``.

Each frame is reduced to a 64x36 luma thumbnail. The score of a frame is the mean absolute
difference from the previous one, in percent of full scale (scdet's measure), or, if larger,
how much of its 32-bin luma histogram moved (a cut between two pictures of similar brightness
moves the histogram while the mean difference stays small). A cut is a
frame whose score passes ``threshold`` (10 %, scdet's default) and is also well above the
local level of motion (three times the median score of the second around it), so a pan or a
moving hand is not a cut; and no two cuts are closer than ``min_shot_seconds``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["THUMB", "ShotDetector", "thumbnail"]

THUMB = (64, 36)


def thumbnail(gray: np.ndarray) -> np.ndarray:
    """A 64x36 float32 luma thumbnail of a grey picture."""
    import cv2

    return cv2.resize(gray, THUMB, interpolation=cv2.INTER_AREA).astype(np.float32)


class ShotDetector:
    """Feed frames in time order with :meth:`add`; :meth:`cuts` gives the times shots start."""

    def __init__(self, threshold: float = 10.0, min_shot_seconds: float = 0.5, contrast: float = 3.0) -> None:
        self.threshold = threshold
        self.min_shot = min_shot_seconds
        self.contrast = contrast
        self.times: list[float] = []
        self.scores: list[float] = []
        self._previous: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, t: float, thumb: np.ndarray) -> None:
        hist = np.histogram(thumb, bins=32, range=(0, 256))[0] / max(1, thumb.size)
        score = 0.0
        if self._previous is not None:
            mad = float(np.abs(thumb - self._previous[0]).mean() / 2.55)
            moved = float(np.abs(hist - self._previous[1]).sum() * 50.0)
            score = max(mad, moved)
        self._previous = (thumb, hist)
        self.times.append(t)
        self.scores.append(score)

    def cuts(self) -> list[float]:
        return detect_cuts(self.times, self.scores, self.threshold, self.min_shot, self.contrast)


def detect_cuts(times: Sequence[float], scores: Sequence[float], threshold: float, min_shot: float,
                contrast: float) -> list[float]:
    t = np.asarray(times, np.float64)
    s = np.asarray(scores, np.float64)
    if s.size < 2:
        return []
    step = float(np.median(np.diff(t))) if t.size > 1 else 0.04
    half = max(2, int(round(0.5 / max(step, 1e-3))))
    cuts: list[float] = []
    # Strongest first, so that of two cuts too close together the clearer one is kept.
    for i in sorted(np.flatnonzero(s > threshold), key=lambda i: (-s[i], i)):
        if i == 0:
            continue
        around = np.concatenate([s[max(1, i - half) : i], s[i + 1 : i + half + 1]])
        local = float(np.median(around)) if around.size else 0.0
        if s[i] < contrast * local:
            continue
        if t[i] - t[0] < min_shot or t[-1] - t[i] < min_shot / 2:
            continue
        if any(abs(t[i] - c) < min_shot for c in cuts):
            continue
        cuts.append(float(t[i]))
    return sorted(cuts)
