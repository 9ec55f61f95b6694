"""What to leave out, in source seconds, each with its reason; cut in the pauses, never in a word.

The audio is cut into sounds and silences (:mod:`.audio`). Each word of the transcript belongs to the
sound it overlaps most: Whisper's word times are often a few hundred ms off around pauses, the
silences are not. Removing words ``i..j`` removes their sounds: the cut before sits at the quietest
point of the silence before the first one's sound, the cut after at the quietest point of the silence
after the last one's (an energy minimum, then the nearest zero crossing). A word that shares its sound
with a kept neighbour (connected speech) is cut at the quietest point within 60 ms of the boundary
the transcript gives. A filler sound is removed the same way, between the silences around it.

Then the pauses: a removal joins the silence before it and the silence after it into one pause; any
pause (joined or not) longer than the preset's ``min_seconds`` keeps ``keep_seconds`` of its own room
tone, half from its start and half from its end (what one side lacks the other gives), and the rest
is cut. A pause at the start or the end of a range keeps half of ``keep_seconds``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from operators.speech.models import Word
from operators.tighten.audio import Sound, quiet_point, silent_runs, zero_crossing
from operators.tighten.models import Reason, Removed, SilenceSettings

__all__ = ["Layout", "Removal", "plan_removals", "sound_removal", "word_removal"]

Span = tuple[float, float]
#: Around a boundary inside connected speech, how far the cut may move to find the quietest point.
REACH = 0.06


@dataclass(frozen=True, slots=True)
class Layout:
    """One range of the source: its sounds and its silences, in time order."""

    lo: float
    hi: float
    sounds: tuple[Span, ...]
    silences: tuple[Span, ...]

    @classmethod
    def of(cls, sound: Sound, lo: float, hi: float) -> Layout:
        silences = tuple(silent_runs(sound, lo, hi))
        edges = [lo, *[t for s in silences for t in s], hi]
        sounds = tuple((a, b) for a, b in zip(edges[::2], edges[1::2]) if b > a)
        return cls(lo, hi, sounds, silences)

    def main_sound(self, start: float, end: float) -> int | None:
        """The sound a word (its transcript times) overlaps most, else the nearest one."""
        if not self.sounds:
            return None
        end = max(end, start + 0.02)
        overlaps = [max(0.0, min(end, b) - max(start, a)) for a, b in self.sounds]
        best = max(range(len(self.sounds)), key=overlaps.__getitem__)
        if overlaps[best] > 0:
            return best
        return min(range(len(self.sounds)), key=lambda k: max(self.sounds[k][0] - end, start - self.sounds[k][1]))

    def pause_before(self, k: int) -> Span | None:
        return next((s for s in self.silences if abs(s[1] - self.sounds[k][0]) < 1e-9), None)

    def pause_after(self, k: int) -> Span | None:
        return next((s for s in self.silences if abs(s[0] - self.sounds[k][1]) < 1e-9), None)


@dataclass(frozen=True, slots=True)
class Removal:
    """``[start, end)`` to remove; the pauses its ends lie in (None: a cut inside connected speech)."""

    start: float
    end: float
    before: Span | None
    after: Span | None
    reasons: frozenset[Reason] = frozenset()
    words: frozenset[int] = frozenset()

    def to_removed(self) -> Removed:
        reason: Reason = "edit" if "edit" in self.reasons else "filler" if "filler" in self.reasons else "silence"
        return Removed(start=round(self.start, 4), end=round(self.end, 4), reason=reason,
                       reasons=tuple(sorted(self.reasons)), words=tuple(sorted(self.words)))


def _cut_in(sound: Sound, pause: Span | None, fallback: float) -> float:
    return quiet_point(sound, *pause) if pause is not None else fallback


def word_removal(sound: Sound, layout: Layout, words: Sequence[Word], first: int, last: int,
                 reason: Reason) -> Removal | None:
    """Remove words ``first..last`` (all inside ``layout``'s range) by their sounds."""
    k_first = layout.main_sound(words[first].start, words[first].end)
    k_last = layout.main_sound(words[last].start, words[last].end)
    if k_first is None or k_last is None:
        return None
    k_last = max(k_first, k_last)
    prev = words[first - 1] if first > 0 and words[first - 1].end > layout.lo else None
    after = words[last + 1] if last + 1 < len(words) and words[last + 1].start < layout.hi else None
    k_prev = layout.main_sound(prev.start, prev.end) if prev else None
    k_next = layout.main_sound(after.start, after.end) if after else None
    if k_prev is not None and k_prev >= k_first:  # shares its sound with the word before: connected speech
        t = (prev.end + words[first].start) / 2
        start, p_before = quiet_point(sound, max(layout.lo, t - REACH), min(layout.hi, t + REACH)), None
    else:
        p_before = layout.pause_before(k_first)
        start = _cut_in(sound, p_before, layout.sounds[k_first][0])
    if k_next is not None and k_next <= k_last:
        t = (words[last].end + after.start) / 2
        end, p_after = quiet_point(sound, max(layout.lo, t - REACH), min(layout.hi, t + REACH)), None
    else:
        p_after = layout.pause_after(k_last)
        end = _cut_in(sound, p_after, layout.sounds[k_last][1])
    if end <= start:
        return None
    return Removal(start, end, p_before, p_after, frozenset({reason}), frozenset(range(first, last + 1)))


def sound_removal(sound: Sound, layout: Layout, span: Span, reason: Reason) -> Removal | None:
    """Remove one sound of the layout (a filler found in the audio) between the silences around it."""
    k = next((i for i, s in enumerate(layout.sounds) if abs(s[0] - span[0]) < 1e-6), None)
    if k is None:
        return None
    p_before, p_after = layout.pause_before(k), layout.pause_after(k)
    start, end = _cut_in(sound, p_before, span[0]), _cut_in(sound, p_after, span[1])
    return Removal(start, end, p_before, p_after, frozenset({reason})) if end > start else None


def _merged(removals: list[Removal]) -> list[Removal]:
    out: list[Removal] = []
    for r in sorted(removals, key=lambda r: r.start):
        if out and r.start <= out[-1].end + 1e-6:
            last = out[-1]
            end, after = (r.end, r.after) if r.end > last.end else (last.end, last.after)
            out[-1] = replace(last, end=end, after=after, reasons=last.reasons | r.reasons, words=last.words | r.words)
        else:
            out.append(r)
    return out


def _shrink(sound: Sound, r: Removal, layout: Layout, settings: SilenceSettings) -> Removal:
    """Join the pauses around a removal; past ``min_seconds`` they keep only ``keep_seconds``."""
    room_before = r.start - r.before[0] if r.before else 0.0
    room_after = r.after[1] - r.end if r.after else 0.0
    if room_before + room_after <= settings.threshold:
        return r
    keep = settings.keep_seconds
    if r.before is not None and r.before[0] <= layout.lo + 1e-6:
        keep_before, keep_after = 0.0, min(keep / 2, room_after)
    elif r.after is not None and r.after[1] >= layout.hi - 1e-6:
        keep_before, keep_after = min(keep / 2, room_before), 0.0
    else:
        keep_before = min(keep / 2, room_before)
        keep_after = min(keep - keep_before, room_after)
        keep_before = min(keep - keep_after, room_before)
    start = zero_crossing(sound.samples, r.before[0] + keep_before, r.before[0], r.start) if r.before else r.start
    end = zero_crossing(sound.samples, r.after[1] - keep_after, r.end, r.after[1]) if r.after else r.end
    return replace(r, start=start, end=end, reasons=r.reasons | {"silence"})


def _pause_cut(sound: Sound, pause: Span, layout: Layout, settings: SilenceSettings) -> Removal | None:
    """A pause no removal touches: past ``min_seconds`` it keeps ``keep_seconds`` (half at a range's ends)."""
    a, b = pause
    if b - a <= settings.threshold:
        return None
    half = settings.keep_seconds / 2
    start = a if a <= layout.lo + 1e-6 else zero_crossing(sound.samples, a + half, a, b)
    end = b if b >= layout.hi - 1e-6 else zero_crossing(sound.samples, b - half, a, b)
    return Removal(start, end, None, None, frozenset({"silence"})) if end > start else None


def plan_removals(sound: Sound, layout: Layout, removals: list[Removal],
                  settings: SilenceSettings | None) -> list[Removed]:
    """The removals of one range, with the pauses shrunk (``settings``; None keeps every pause), merged."""
    merged = _merged(removals)
    if settings is not None:
        merged = [_shrink(sound, r, layout, settings) for r in merged]
        touched = {p for r in merged for p in (r.before, r.after) if p is not None}
        for pause in layout.silences:
            inside = any(r.start <= pause[0] and pause[1] <= r.end for r in merged)
            if pause not in touched and not inside:
                cut = _pause_cut(sound, pause, layout, settings)
                if cut is not None:
                    merged.append(cut)
        merged = _merged(merged)
    return [r.to_removed() for r in merged]
