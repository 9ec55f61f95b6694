"""Correcting a transcript's words by hand: new texts for some words, their times kept, segment texts rebuilt.

Words are counted across the whole transcript in order (``Transcript.words``), from 0. A corrected word keeps
its start, end and leading space (Whisper's words carry the space before them); each segment's ``text`` is made
again from its words, so captions, SRT and WebVTT made from the corrected transcript all show the new words.
"""

from __future__ import annotations

from collections.abc import Sequence

from operators.speech.models import Transcript, TranscriptSegment, Word

__all__ = ["WordIndexError", "correct_words"]


class WordIndexError(IndexError):
    """An edit names a word the transcript does not have; ``position`` is the edit's place in the list."""

    def __init__(self, position: int, index: int, count: int) -> None:
        self.position, self.index, self.count = position, index, count
        super().__init__(f"word index {index} is out of range: the transcript has {count} words (0 to {count - 1})")


def _text(words: Sequence[Word]) -> str:
    return "".join(w.word if w.word[:1].isspace() else f" {w.word}" for w in words)


def correct_words(transcript: Transcript, edits: Sequence[tuple[int, str]]) -> Transcript:
    """``transcript`` with word ``index`` reading ``text`` for each edit (a later edit of a word wins)."""
    count = len(transcript.words)
    changes: dict[int, str] = {}
    for position, (index, text) in enumerate(edits):
        if not 0 <= index < count:
            raise WordIndexError(position, index, count)
        changes[index] = " ".join(text.split())
    if any(not text for text in changes.values()):
        raise ValueError("a corrected word must have some text")
    segments: list[TranscriptSegment] = []
    n = 0
    for segment in transcript.segments:
        words: list[Word] = []
        for word in segment.words:
            if n in changes:
                lead = word.word[: len(word.word) - len(word.word.lstrip())]
                word = word.model_copy(update={"word": lead + changes[n]})
            words.append(word)
            n += 1
        text = _text(words) if words else segment.text
        segments.append(segment.model_copy(update={"words": tuple(words), "text": text}))
    return transcript.model_copy(update={"segments": tuple(segments)})
