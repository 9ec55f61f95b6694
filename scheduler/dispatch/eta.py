"""``result_payload.eta_seconds``: seconds left, from the rate at which a job's progress has moved lately.

The rate is measured over a sliding window (the last :data:`WINDOW_SECONDS`), so a job whose
fan-out speeds up or slows down gets an estimate that follows it. There is no estimate (None)
until the progress has moved by :data:`MIN_PROGRESS` over at least :data:`MIN_SPAN_SECONDS`.
"""

from __future__ import annotations

from collections import deque

__all__ = ["MIN_PROGRESS", "MIN_SPAN_SECONDS", "WINDOW_SECONDS", "EtaEstimator"]

WINDOW_SECONDS = 30.0
MIN_SPAN_SECONDS = 1.0
MIN_PROGRESS = 0.01


class EtaEstimator:
    """Feed it ``(monotonic time, progress)`` samples; it answers the seconds left, or None."""

    def __init__(self, *, window: float = WINDOW_SECONDS, min_span: float = MIN_SPAN_SECONDS,
                 min_progress: float = MIN_PROGRESS) -> None:
        self.window = window
        self.min_span = min_span
        self.min_progress = min_progress
        self._samples: deque[tuple[float, float]] = deque()

    def start(self, t: float, progress: float = 0.0) -> None:
        """The job starts (or restarts) at ``t`` with ``progress`` already done."""
        self._samples.clear()
        self._samples.append((t, progress))

    def update(self, t: float, progress: float) -> float | None:
        """Add a sample; return the estimated seconds left (rounded to 0.1 s), or None without enough signal."""
        if self._samples and progress < self._samples[-1][1]:
            progress = self._samples[-1][1]  # progress never goes down
        self._samples.append((t, progress))
        # Keep one sample at or before the window's start, so the rate spans the whole window.
        while len(self._samples) > 2 and self._samples[1][0] <= t - self.window:
            self._samples.popleft()
        t0, p0 = self._samples[0]
        span, moved = t - t0, progress - p0
        if span < self.min_span or moved < self.min_progress or progress <= 0:
            return None
        if progress >= 1.0:
            return 0.0
        return round((1.0 - progress) * span / moved, 1)
