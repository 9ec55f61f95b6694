"""Chapter files: YouTube's chapter list (in a video's description) and WebVTT chapters."""

from __future__ import annotations

from collections.abc import Sequence

from operators.types import Frozen

__all__ = ["Chapter", "merge_short", "vtt_chapters", "youtube_chapters"]


class Chapter(Frozen):
    start: float
    end: float
    title: str


def merge_short(spans: Sequence[tuple[float, float, int]], min_seconds: float) -> list[tuple[float, float, list[int]]]:
    """``(start, end, topic)`` spans with each shorter than ``min_seconds`` joined to a neighbour
    (the one before, the first to the one after), until all are long enough or one is left."""
    merged = [(a, b, [t]) for a, b, t in spans]
    while len(merged) > 1:
        short = next((i for i, (a, b, _) in enumerate(merged) if b - a < min_seconds), None)
        if short is None:
            break
        other = short - 1 if short > 0 else 1
        i, j = sorted((short, other))
        merged[i:j + 1] = [(merged[i][0], merged[j][1], merged[i][2] + merged[j][2])]
    return merged


def _clock(seconds: float) -> str:
    whole = int(seconds)
    h, m, s = whole // 3600, whole // 60 % 60, whole % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def youtube_chapters(chapters: Sequence[Chapter]) -> str:
    """``0:00 Title`` lines: what YouTube reads from a description (first at 0:00, each ≥ 10 s)."""
    return "".join(f"{_clock(c.start)} {c.title}\n" for c in chapters)


def _stamp(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def vtt_chapters(chapters: Sequence[Chapter]) -> str:
    """A WebVTT file for ``<track kind="chapters">``: one cue per chapter, its text the title."""
    cues = [f"{k + 1}\n{_stamp(c.start)} --> {_stamp(c.end)}\n{c.title}\n" for k, c in enumerate(chapters)]
    return "WEBVTT\n\n" + "\n".join(cues)
