"""Topic segmentation: TextTiling over sentence embeddings, as ClipsAI does it.

For each gap between two sentences, the mean embedding of the ``k`` sentences before it is
compared with that of the ``k`` after it (cosine). The curve is smoothed, and each gap gets
a *depth*: how far the similarity climbs back up on both sides before it falls again
(Hearst's TextTiling). A gap deeper than the cutoff, mean + one standard deviation of all
depths, that is also the deepest within ``k`` gaps, is a topic boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Topics", "segment_topics"]


@dataclass(frozen=True, slots=True)
class Topics:
    """``starts``: the first sentence of each topic (0 first); ``of``: each sentence's topic."""

    starts: tuple[int, ...]
    of: np.ndarray
    #: Per gap (between sentence i-1 and i, for i = 1..n-1): the smoothed similarity and depth.
    similarity: np.ndarray
    depth: np.ndarray

    @property
    def count(self) -> int:
        return len(self.starts)


def _window_size(n: int) -> int:
    # ClipsAI's k = 7 suits long talks; a short one (tens of sentences) needs smaller windows
    # or it has no room for more than one boundary.
    return int(np.clip(round(n / 5), 2, 7))


def _smooth(values: np.ndarray, width: int) -> np.ndarray:
    if width <= 1 or values.size < width:
        return values.copy()
    pad = width // 2
    padded = np.pad(values, pad, mode="edge")
    return np.convolve(padded, np.ones(width) / width, mode="valid")


def _depths(sim: np.ndarray) -> np.ndarray:
    """Hearst's depth score of each gap: (left peak - s) + (right peak - s)."""
    n = sim.size
    depth = np.zeros(n)
    for i in range(n):
        left = i
        while left > 0 and sim[left - 1] >= sim[left]:
            left -= 1
        right = i
        while right < n - 1 and sim[right + 1] >= sim[right]:
            right += 1
        depth[i] = (sim[left] - sim[i]) + (sim[right] - sim[i])
    return depth


def segment_topics(embeddings: np.ndarray, *, k: int | None = None, smoothing: int | None = None,
                   min_sentences: int = 2) -> Topics:
    """Split ``embeddings`` (n sentences, unit vectors) into topics.

    ``smoothing``: the moving average's width over the gap similarities; by default 3, as
    ClipsAI, but none under 40 sentences, where it would blur a boundary into its neighbours.
    """
    n = int(embeddings.shape[0])
    if n < 2 * 2 + 1:
        return Topics(starts=(0,), of=np.zeros(n, np.int64), similarity=np.zeros(max(0, n - 1)),
                      depth=np.zeros(max(0, n - 1)))
    k = k or _window_size(n)
    cum = np.vstack([np.zeros((1, embeddings.shape[1])), np.cumsum(embeddings, axis=0)])
    gaps = np.arange(1, n)
    lo, hi = np.maximum(0, gaps - k), np.minimum(n, gaps + k)
    left = cum[gaps] - cum[lo]
    right = cum[hi] - cum[gaps]
    norms = np.linalg.norm(left, axis=1) * np.linalg.norm(right, axis=1)
    raw = np.einsum("ij,ij->i", left, right) / np.maximum(norms, 1e-12)
    sim = _smooth(raw, smoothing if smoothing is not None else (1 if n < 40 else 3))
    depth = _depths(sim)
    cutoff = depth.mean() + depth.std()
    starts = [0]
    # Deepest first, so of two close candidates the deeper one wins.
    for g in sorted(np.flatnonzero(depth > cutoff), key=lambda g: (-depth[g], g)):
        boundary = int(g) + 1  # gap g lies before sentence g + 1
        window = depth[max(0, g - k) : g + k + 1]
        if depth[g] < window.max():
            continue
        if boundary < min_sentences or n - boundary < min_sentences:
            continue
        if any(abs(boundary - s) < min_sentences for s in starts):
            continue
        starts.append(boundary)
    starts.sort()
    of = np.zeros(n, np.int64)
    for t, s in enumerate(starts):
        of[s:] = t
    return Topics(starts=tuple(starts), of=of, similarity=sim, depth=depth)
