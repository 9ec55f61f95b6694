"""Sentences from a transcript's word timings: cut at terminal punctuation and at long pauses.

Whisper punctuates well but not always: a speaker who trails off, or a run-on of clauses
joined by "and", gives a sentence a minute long. So a sentence also ends at a pause of at
least ``pause_seconds``, and one longer than ``max_seconds`` is split at its longest inner
pause (a comma's pause preferred). A clip then always starts on a sentence's first word and
ends on a sentence's last, which is what makes its cuts clean.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from operators.clips.models import Sentence
from operators.speech.models import Transcript

__all__ = ["Word", "split_sentences", "words_of"]

Word = tuple[str, float, float]  # text, start, end

_TERMINAL = re.compile(r"[.?!…]+[\"'”’)\]]*$")
# "Dr. Smith", "e.g. this": a full stop that does not end a sentence.
_ABBREVIATIONS = {"mr.", "mrs.", "ms.", "dr.", "st.", "vs.", "e.g.", "i.e.", "prof.", "sr.", "jr.", "no.", "approx."}


def words_of(transcript: Transcript) -> list[Word]:
    """The transcript's words in time order, with whitespace stripped and empty words dropped."""
    out: list[Word] = []
    for word in transcript.words:
        text = word.word.strip()
        if text:
            out.append((text, float(word.start), float(max(word.end, word.start))))
    return out


def _ends_sentence(word: str, following: str | None) -> bool:
    if not _TERMINAL.search(word):
        return False
    if word.lower() in _ABBREVIATIONS:
        return False
    # "the U.S. market", "3. and then": a lower-case word next means the sentence goes on.
    return following is None or not following[:1].islower() or word.endswith(("?", "!"))


def split_sentences(words: Sequence[Word], duration: float, *, pause_seconds: float = 1.2,
                    max_seconds: float = 20.0) -> list[Sentence]:
    """Group ``words`` into sentences; ``duration`` is the source's length (the last gap's end)."""
    groups: list[tuple[int, int, bool]] = []  # first word, last word (inclusive), ends on punctuation
    first = 0
    for i, (text, _, end) in enumerate(words):
        following = words[i + 1] if i + 1 < len(words) else None
        terminal = _ends_sentence(text, following[0] if following else None)
        pause = following is not None and following[1] - end >= pause_seconds
        if terminal or pause or following is None:
            groups.append((first, i, terminal))
            first = i + 1
    split: list[tuple[int, int, bool]] = []
    for group in groups:
        split.extend(_split_long(words, *group, max_seconds=max_seconds))
    sentences = []
    for index, (a, b, terminal) in enumerate(split):
        start, end = words[a][1], words[b][2]
        before = start - (words[a - 1][2] if a > 0 else 0.0)
        after = (words[b + 1][1] if b + 1 < len(words) else max(duration, end)) - end
        sentences.append(Sentence(
            index=index, start=round(start, 3), end=round(end, 3), text=" ".join(w[0] for w in words[a:b + 1]),
            words=b - a + 1, gap_before=round(max(0.0, before), 3), gap_after=round(max(0.0, after), 3),
            terminal=terminal,
        ))
    return sentences


def _split_long(words: Sequence[Word], a: int, b: int, terminal: bool, *,
                max_seconds: float) -> list[tuple[int, int, bool]]:
    """``[a, b]`` as is, or split at its longest inner pause until every part fits ``max_seconds``."""
    if b <= a or words[b][2] - words[a][1] <= max_seconds:
        return [(a, b, terminal)]

    def pause_after(i: int) -> float:
        gap = words[i + 1][1] - words[i][2]
        return gap + (0.3 if words[i][0].endswith((",", ";", ":", "—", "-")) else 0.0)

    # Keep both halves at least a few words long where the sentence allows it.
    margin = max(1, min(3, (b - a + 1) // 2))
    cut = max(range(a + margin - 1, b - margin + 1), key=pause_after)
    return (_split_long(words, a, cut, False, max_seconds=max_seconds)
            + _split_long(words, cut + 1, b, terminal, max_seconds=max_seconds))
