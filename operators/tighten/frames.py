"""Removals on frame boundaries: the kept and removed ranges the new timeline plays, and a crossfade per join.

Each audio cut moves to the source frame boundary nearest it (the picture can only cut there; the sound
is cut with it, its crossfade centred on that boundary). Removed ranges that then touch or overlap merge,
so no kept range is shorter than a frame. A join tighten makes gets a crossfade of 10 ms, 20 ms or
30 ms: longer the more quiet there is on both sides of the cut (a cut in a pause gets 30 ms; one inside
connected speech, at its quietest point, 10 ms).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

from operators.tighten.audio import HOP, Sound
from operators.tighten.models import Cut, Reason, Removed

__all__ = ["crossfade", "frame_of", "on_frames"]


def frame_of(t: float, fps: Fraction) -> int:
    """The frame boundary nearest ``t`` seconds (halves round up)."""
    return math.floor(Fraction(t) * fps + Fraction(1, 2))


def crossfade(sound: Sound | None, out_t: float, in_t: float) -> float:
    """Seconds of crossfade at a join from ``out_t`` to ``in_t``: 10 ms, plus 10 ms for each 10 ms of quiet
    (up to 20) on the quieter side of the cut."""
    if sound is None:
        return 0.02
    def quiet(frames: range) -> int:
        count = 0
        for f in frames:
            if not 0 <= f < sound.db.size or sound.db[f] >= sound.threshold:
                break
            count += 1
        return count
    a, b = sound.frame(out_t), sound.frame(in_t)
    room = min(quiet(range(a - 1, a - 3, -1)), quiet(range(b, b + 2)))
    return round(0.01 + HOP * room, 3)


def _seconds(frame: int, fps: Fraction) -> float:
    return round(float(Fraction(frame) / fps), 6)


def _snapped(removed: Sequence[Removed], lo: int, hi: int, fps: Fraction) -> list[tuple[int, int, list[Removed]]]:
    out: list[tuple[int, int, list[Removed]]] = []
    for r in sorted(removed, key=lambda r: r.start):
        a, b = max(lo, frame_of(r.start, fps)), min(hi, frame_of(r.end, fps))
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(b, out[-1][1]), [*out[-1][2], r])
        else:
            out.append((a, b, [r]))
    return out


def _removed_cut(a: int, b: int, parts: list[Removed], fps: Fraction) -> Cut:
    reasons: set[Reason] = {x for r in parts for x in (r.reasons or (r.reason,))}
    reason: Reason = "edit" if "edit" in reasons else "filler" if "filler" in reasons else "silence"
    return Cut(start=_seconds(a, fps), end=_seconds(b, fps), frames=(a, b), kept=False, reason=reason,
               reasons=tuple(sorted(reasons)), audio_start=round(min(r.start for r in parts), 4),
               audio_end=round(max(r.end for r in parts), 4))


def on_frames(span: tuple[float, float], removed: Sequence[Removed], fps: Fraction,
              sound: Sound | None, clip: int = 0) -> list[Cut]:
    """The kept and removed ranges of one source range ``span``, in time order, on frame boundaries."""
    lo, hi = frame_of(span[0], fps), frame_of(span[1], fps)
    cuts: list[Cut] = []
    pos, joined = lo, False
    for a, b, parts in _snapped(removed, lo, hi, fps):
        if a > pos:
            cuts.append(_kept(pos, a, fps, sound, cuts if joined else None))
        cuts.append(_removed_cut(a, b, parts, fps))
        pos, joined = b, True
    if hi > pos:
        cuts.append(_kept(pos, hi, fps, sound, cuts if joined else None))
    return [c.model_copy(update={"clip": clip}) for c in cuts]


def _kept(a: int, b: int, fps: Fraction, sound: Sound | None, before: list[Cut] | None) -> Cut:
    """A kept range; after a removal (``before`` holds it) it gets the crossfade of its join."""
    fade = None
    if before:
        previous_kept = next((c for c in reversed(before) if c.kept), None)
        if previous_kept is not None:
            fade = crossfade(sound, previous_kept.end, _seconds(a, fps))
    return Cut(start=_seconds(a, fps), end=_seconds(b, fps), frames=(a, b), kept=True, crossfade=fade)
