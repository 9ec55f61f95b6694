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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from operators.render.text import RGBA, Lines, Run
from operators.speech.captions import layout
from operators.speech.models import Word

__all__ = ["STYLES", "CaptionState", "Cut", "TimedWord", "caption_states", "map_words"]

STYLES = ("lines", "word-highlight", "word-pop", "karaoke", "highlight-box", "pop", "bold-upper", "minimal")
#: The styles that are ``lines`` drawn otherwise (their look is their preset: capitals, a box, keywords).
_AS_LINES = ("lines", "bold-upper", "minimal")
#: ``karaoke``: each word's fill advances in this many steps while it is spoken.
_FILL_STEPS = 8
#: ``pop``: a word's first moments, at these sizes for ``_POP_STEP`` seconds each, then full size.
_POP_SCALES = (0.55, 0.8)
_POP_STEP = 0.06
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

    ``lines`` (and ``bold-upper``, ``minimal``): one state per cue. ``word-highlight``: the same cues,
    one state per spoken word, that word's run coloured ``highlight``; ``highlight-box``: a box in
    ``highlight`` behind it instead; ``karaoke``: the words spoken so far filled with ``highlight``,
    the one being spoken part way, left to right, by how much of it has been said. ``word-pop``:
    ``words_per_pop`` words at a time on one line; ``pop``: the same groups, each word appearing as
    it is spoken and scaling in. Every state has ``end > start``; a zero-length one is left out.
    """
    _check(style, max_chars, max_lines, words_per_pop, highlight)
    ordered = sorted(_split_long(words, max_chars), key=lambda w: (w.start, w.end))
    if style in ("word-pop", "pop"):
        groups = _pop_groups(ordered, words_per_pop, max_chars, max_gap)
        spans = _spans(groups)
        if style == "pop":
            states = [s for g, span in zip(groups, spans, strict=True) for s in _popping(g, span)]
        else:
            states = [CaptionState(s, e, (tuple(Run(w.text) for w in g),))
                      for g, (s, e) in zip(groups, spans, strict=True)]
    else:
        cues = _cues(ordered, max_chars, max_lines, max_gap)
        spans = _spans(cues)
        if style in _AS_LINES:
            states = [CaptionState(s, e, _cue_lines(c, max_chars, max_lines, _plain))
                      for c, (s, e) in zip(cues, spans, strict=True)]
        elif style == "karaoke":
            states = [state for c, span in zip(cues, spans, strict=True)
                      for state in _filling(c, span, max_chars, max_lines, highlight)]
        else:
            boxed = style == "highlight-box"
            states = [state for c, span in zip(cues, spans, strict=True)
                      for state in _karaoke(c, span, max_chars, max_lines, highlight, boxed)]
    return [s for s in states if s.end > s.start]


def _check(style: str, max_chars: int, max_lines: int, words_per_pop: int, highlight: RGBA | None) -> None:
    if style not in STYLES:
        raise ValueError(f"unknown caption style {style!r}: use one of {', '.join(STYLES)}")
    if max_chars < 1 or max_lines < 1:
        raise ValueError("max_chars and max_lines must be at least 1")
    if not 1 <= words_per_pop <= 3:
        raise ValueError(f"words_per_pop must be 1, 2 or 3, not {words_per_pop}")
    if style in ("word-highlight", "highlight-box", "karaoke") and highlight is None:
        raise ValueError(f"the {style} style needs a highlight colour")


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


def _plain(index: int, text: str) -> Run:
    return Run(text)


def _cue_lines(cue: list[TimedWord], max_chars: int, max_lines: int,
               run_of: Callable[[int, str], Run] = _plain) -> Lines:
    """The cue's words as runs on the lines ``layout`` breaks them into; word ``i``'s run is ``run_of(i, text)``."""
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
            runs.append(run_of(index, texts[index]))
            index += 1
        lines.append(tuple(runs))
    return tuple(lines)


def _slot(words: list[TimedWord], i: int, span: tuple[float, float]) -> tuple[float, float]:
    """Word ``i``'s turn: from its start (the span's, for the first) until the next word starts."""
    start = span[0] if i == 0 else words[i].start
    return start, words[i + 1].start if i + 1 < len(words) else span[1]


def _karaoke(cue: list[TimedWord], span: tuple[float, float], max_chars: int, max_lines: int,
             highlight: RGBA | None, boxed: bool = False) -> list[CaptionState]:
    """One state per word of the cue, tiling its span: each lasts until the next word starts."""
    states: list[CaptionState] = []
    for i in range(len(cue)):
        def run_of(k: int, text: str, i: int = i) -> Run:
            if k != i:
                return Run(text)
            return Run(text, box=highlight) if boxed else Run(text, highlight)

        start, end = _slot(cue, i, span)
        states.append(CaptionState(start, end, _cue_lines(cue, max_chars, max_lines, run_of)))
    return states


def _steps(start: float, end: float, cuts: Sequence[float]) -> list[tuple[float, float]]:
    """``[start, end)`` cut at ``cuts`` (clamped inside it), as consecutive pieces; empty ones stay (and drop later)."""
    edges = [start, *(min(max(c, start), end) for c in cuts), end]
    return list(zip(edges, edges[1:]))


def _filling(cue: list[TimedWord], span: tuple[float, float], max_chars: int, max_lines: int,
             highlight: RGBA | None) -> list[CaptionState]:
    """Karaoke: words before the spoken one filled, the spoken one filled by the share of it said so far."""
    states: list[CaptionState] = []
    for i, word in enumerate(cue):
        start, end = _slot(cue, i, span)
        length = word.end - word.start
        cuts = [word.start + length * j / _FILL_STEPS for j in range(1, _FILL_STEPS + 1)] if length > 0 else []
        for j, (a, b) in enumerate(_steps(start, end, cuts)):
            fill = min(1.0, (j + 0.5) / _FILL_STEPS) if j < len(cuts) else 1.0

            def run_of(k: int, text: str, i: int = i, fill: float = fill) -> Run:
                return Run(text, highlight, fill=1.0 if k < i else fill) if k <= i else Run(text)

            states.append(CaptionState(a, b, _cue_lines(cue, max_chars, max_lines, run_of)))
    return states


def _popping(group: list[TimedWord], span: tuple[float, float]) -> list[CaptionState]:
    """Pop: the group's words appear one by one as they are spoken, each scaling in to full size."""
    states: list[CaptionState] = []
    for i, word in enumerate(group):
        start, end = _slot(group, i, span)
        cuts = [word.start + _POP_STEP * (j + 1) for j in range(len(_POP_SCALES))]
        for j, (a, b) in enumerate(_steps(start, end, cuts)):
            scale = _POP_SCALES[j] if j < len(_POP_SCALES) else 1.0
            runs = tuple(Run(w.text, scale=1.0 if k < i else scale if k == i else 0.0) for k, w in enumerate(group))
            states.append(CaptionState(a, b, (runs,)))
    return states
