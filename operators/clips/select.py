"""Choosing clips: non-maximum suppression, so that no two overlap by more than 20 %.

Overlap is the shared time over the shorter clip's length (so a clip inside another counts
as fully overlapping it). Candidates are taken best first (ties: the earlier, then the
shorter), each one removing every remaining candidate it overlaps too much.

Without a prompt, a first round takes the best clip of each topic (TextTiling segment)
that fits, so the clips together cover the talk's different subjects; a second round
fills the remaining places by score. The result is always ranked by score.
"""

from __future__ import annotations

import numpy as np

from operators.clips.candidates import Candidates

__all__ = ["MAX_OVERLAP", "overlap", "select"]

MAX_OVERLAP = 0.2


def overlap(start: np.ndarray, end: np.ndarray, s: float, e: float) -> np.ndarray:
    """Shared time of each ``[start, end)`` with ``[s, e)``, over the shorter of the two."""
    shared = np.clip(np.minimum(end, e) - np.maximum(start, s), 0.0, None)
    return shared / np.maximum(np.minimum(end - start, e - s), 1e-9)


def select(cand: Candidates, score: np.ndarray, *, max_clips: int, topics: np.ndarray | None = None,
           max_overlap: float = MAX_OVERLAP) -> list[int]:
    """Indexes of the chosen candidates, best first."""
    if cand.count == 0 or max_clips <= 0:
        return []
    order = np.lexsort((cand.end - cand.start, cand.start, -score))
    alive = np.ones(cand.count, bool)
    chosen: list[int] = []

    def take(i: int) -> None:
        chosen.append(int(i))
        alive[overlap(cand.start, cand.end, float(cand.start[i]), float(cand.end[i])) > max_overlap] = False

    if topics is not None and int(topics.max(initial=0)) > 0:
        inside = topics[cand.first] == topics[cand.last]
        seen: set[int] = set()
        for i in order:
            if len(chosen) >= max_clips:
                break
            topic = int(topics[cand.first[i]])
            if alive[i] and inside[i] and topic not in seen:
                seen.add(topic)
                take(i)
    for i in order:
        if len(chosen) >= max_clips:
            break
        if alive[i]:
            take(i)
    return sorted(chosen, key=lambda i: (-float(score[i]), float(cand.start[i]), float(cand.end[i])))
