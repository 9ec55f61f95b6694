"""Captions burnt into the render: transcript words mapped through the edit, grouped into states.

A transcript's word times are on the source timeline; the edit plays pieces of the source
(:class:`Cut`) at other times. :func:`map_words` moves each word to where its cut plays it,
so a word cut out of the edit never shows and a source range used twice shows its words
twice. :func:`caption_states` then groups the output-timeline words into what the screen
shows, and when: a :class:`CaptionState` is one picture (lines of coloured runs) held over
a span of output time, ready for :func:`operators.render.text.rasterize`.

Line layout is :func:`operators.speech.captions.layout`, so a burnt-in cue breaks its lines
exactly as the SRT/WebVTT files written by ``speech.captions`` do.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from operators.render.text import RGBA, Lines, Run
from operators.speech.captions import layout
from operators.speech.models import Word

__all__ = ["STYLES", "CaptionState", "Cut", "TimedWord", "caption_states", "map_words"]

STYLES = ("lines", "word-highlight", "word-pop")
#: A gap shorter than this between two states is closed, so captions do not flicker off and on.
_BRIDGE = 0.3
#: A cue may end after one of these once it holds this many words (closing quotes and brackets ignored).
_SENTENCE_END = (".", "?", "!", "…")
_MIN_SENTENCE_WORDS = 3
_CLOSERS = "\"'”’)]»"


@dataclass(frozen=True, slots=True)
class Cut:
    """One video clip of the edit: source [src_start, src_end) plays from out_start on the output."""

    src_start: Fraction
    src_end: Fraction
    out_start: Fraction


@dataclass(frozen=True, slots=True)
class TimedWord:
    """A word on the output timeline, in seconds."""

    text: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class CaptionState:
    """What the captions show on [start, end) of the output, in seconds."""

    start: float
    end: float
    lines: Lines


def map_words(words: Iterable[Word], cuts: Sequence[Cut]) -> list[TimedWord]:
    """``words`` (source seconds) where ``cuts`` play them on the output timeline, sorted by start.

    A word belongs to a cut when its midpoint lies in the cut's source range, so a word that
    straddles two adjacent cuts shows once, in the one that holds most of it; its times are
    clamped to the cut. A cut whose range is empty shows nothing.
    """
    # Midpoints are exact fractions of the binary floats, so a word on a boundary is never in two cuts.
    entries = sorted(
        (((Fraction(w.start) + Fraction(w.end)) / 2, w, text) for w in words if (text := " ".join(w.word.split()))),
        key=lambda entry: entry[0],
    )
    mids = [m for m, _, _ in entries]
    out: list[TimedWord] = []
    for cut in cuts:
        if cut.src_end <= cut.src_start:
            continue
        shift = cut.out_start - cut.src_start
        for _, word, text in entries[bisect_left(mids, cut.src_start) : bisect_left(mids, cut.src_end)]:
            start = max(Fraction(word.start), cut.src_start)
            end = max(min(Fraction(word.end), cut.src_end), start)
            out.append(TimedWord(text, float(start + shift), float(end + shift)))
    out.sort(key=lambda w: (w.start, w.end))
    return out


def caption_states(
    words: Sequence[TimedWord],
    *,
    style: str,
    max_chars: int = 42,
    max_lines: int = 2,
    words_per_pop: int = 3,
    highlight: RGBA | None = None,
    max_gap: float = 1.0,
) -> list[CaptionState]:
    """The caption pictures for ``words`` (output seconds) in ``style``, sorted, never overlapping.

    ``lines``: one state per cue. ``word-highlight``: the same cues, one state per spoken word,
    that word's run coloured ``highlight``. ``word-pop``: ``words_per_pop`` words at a time on
    one line. Every state has ``end > start``; a zero-length one is left out.
    """
    _check(style, max_chars, max_lines, words_per_pop, highlight)
    ordered = sorted(_split_long(words, max_chars), key=lambda w: (w.start, w.end))
    if style == "word-pop":
        groups = _pop_groups(ordered, words_per_pop, max_chars, max_gap)
        spans = _spans(groups)
        states = [CaptionState(s, e, (tuple(Run(w.text) for w in g),)) for g, (s, e) in zip(groups, spans, strict=True)]
    else:
        cues = _cues(ordered, max_chars, max_lines, max_gap)
        spans = _spans(cues)
        if style == "lines":
            states = [CaptionState(s, e, _cue_lines(c, max_chars, max_lines, None, None))
                      for c, (s, e) in zip(cues, spans, strict=True)]
        else:
            states = [state for c, span in zip(cues, spans, strict=True)
                      for state in _karaoke(c, span, max_chars, max_lines, highlight)]
    return [s for s in states if s.end > s.start]


def _check(style: str, max_chars: int, max_lines: int, words_per_pop: int, highlight: RGBA | None) -> None:
    if style not in STYLES:
        raise ValueError(f"unknown caption style {style!r}: use one of {', '.join(STYLES)}")
    if max_chars < 1 or max_lines < 1:
        raise ValueError("max_chars and max_lines must be at least 1")
    if not 1 <= words_per_pop <= 3:
        raise ValueError(f"words_per_pop must be 1, 2 or 3, not {words_per_pop}")
    if style == "word-highlight" and highlight is None:
        raise ValueError("the word-highlight style needs a highlight colour")


def _split_long(words: Iterable[TimedWord], max_chars: int) -> list[TimedWord]:
    """Words wider than a line (a URL, a run-on) cut into line-sized pieces that share its time."""
    out: list[TimedWord] = []
    for w in words:
        text = " ".join(w.text.split())
        end = max(w.end, w.start)
        if not text:
            continue
        if len(text) <= max_chars:
            out.append(TimedWord(text, w.start, end))
            continue
        parts = [text[i : i + max_chars] for i in range(0, len(text), max_chars)]
        step = (end - w.start) / len(parts)
        out.extend(TimedWord(p, w.start + i * step, w.start + (i + 1) * step) for i, p in enumerate(parts))
    return out


def _ends_sentence(text: str) -> bool:
    return text.rstrip(_CLOSERS).endswith(_SENTENCE_END)


def _cues(words: list[TimedWord], max_chars: int, max_lines: int, max_gap: float) -> list[list[TimedWord]]:
    cues: list[list[TimedWord]] = []
    current: list[TimedWord] = []
    for word in words:
        if current and (
            word.start - current[-1].end > max_gap
            or (len(current) >= _MIN_SENTENCE_WORDS and _ends_sentence(current[-1].text))
            or layout([w.text for w in [*current, word]], max_chars, max_lines) is None
        ):
            cues.append(current)
            current = []
        current.append(word)
    if current:
        cues.append(current)
    return cues


def _pop_groups(words: list[TimedWord], size: int, max_chars: int, max_gap: float) -> list[list[TimedWord]]:
    groups: list[list[TimedWord]] = []
    for word in words:
        last = groups[-1] if groups else None
        if (
            last is None
            or len(last) >= size
            or word.start - last[-1].end > max_gap
            # Kept to one line of max_chars, as the other styles are: a long group would overflow the frame.
            or len(" ".join([*(w.text for w in last), word.text])) > max_chars
        ):
            groups.append([word])
        else:
            last.append(word)
    return groups


def _spans(groups: list[list[TimedWord]]) -> list[tuple[float, float]]:
    """Each group from its first word's start to its last word's end, bridged and clipped to the next."""
    spans: list[tuple[float, float]] = []
    for i, group in enumerate(groups):
        start = group[0].start
        end = max(w.end for w in group)
        if i + 1 < len(groups):
            following = groups[i + 1][0].start
            end = following if following - end < _BRIDGE else end
            end = min(end, following)
        spans.append((start, end))
    return spans


def _cue_lines(cue: list[TimedWord], max_chars: int, max_lines: int, spoken: int | None,
               highlight: RGBA | None) -> Lines:
    """The cue's words as runs on the lines ``layout`` breaks them into; run ``spoken`` coloured."""
    texts = [w.text for w in cue]
    broken = layout(texts, max_chars, max_lines)
    if broken is None:  # the cue was grown word by word under this same check
        raise AssertionError("a caption cue does not fit its lines")
    lines: list[tuple[Run, ...]] = []
    index = 0
    for line in broken:
        # layout joins whole words by single spaces: take words until the line's length is used up.
        runs: list[Run] = []
        used = -1
        while index < len(texts) and used < len(line):
            used += 1 + len(texts[index])
            runs.append(Run(texts[index], highlight if index == spoken else None))
            index += 1
        lines.append(tuple(runs))
    return tuple(lines)


def _karaoke(cue: list[TimedWord], span: tuple[float, float], max_chars: int, max_lines: int,
             highlight: RGBA | None) -> list[CaptionState]:
    """One state per word of the cue, tiling its span: each lasts until the next word starts."""
    states: list[CaptionState] = []
    for i in range(len(cue)):
        start = span[0] if i == 0 else cue[i].start
        end = cue[i + 1].start if i + 1 < len(cue) else span[1]
        states.append(CaptionState(start, end, _cue_lines(cue, max_chars, max_lines, i, highlight)))
    return states
