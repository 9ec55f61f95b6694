"""``chapters.find``: a transcript's topics as chapters, with titles and chapter files.

Sentences come from the word timings and topic boundaries from TextTiling over their
all-MiniLM embeddings, both as ``generate_clip`` finds them (:mod:`operators.clips.text`).
A chapter starts on its first sentence's first word (the first chapter at 0:00, as YouTube
wants) and ends where the next starts (the last at the end of the sound); chapters under
``min_seconds`` are merged into a neighbour. Titles: :mod:`operators.chapters.titles`.
"""

from __future__ import annotations

import math
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from operators.chapters.formats import Chapter, merge_short, vtt_chapters, youtube_chapters
from operators.chapters.titles import titles
from operators.clips.text.embeddings import embed
from operators.clips.text.sentences import split_sentences, words_of
from operators.clips.text.topics import segment_topics
from operators.context import OpContext
from operators.registry import operator
from operators.speech.models import Transcript
from operators.types import Frozen, StoredFile

__all__ = ["ChapterParams", "Chapters", "find_chapters", "plan_chapters"]


class ChapterParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: The shortest chapter (YouTube ignores a chapter list with one under 10 s).
    min_seconds: float = Field(10.0, ge=1, le=3600)
    folder: str = Field("transcript", min_length=1, max_length=100)


class Chapters(Frozen):
    """The chapters, and the same as YouTube description text and as WebVTT chapters."""

    chapters: list[Chapter]
    text: StoredFile
    vtt: StoredFile


def plan_chapters(transcript: Transcript, *, min_seconds: float = 10.0) -> list[Chapter]:
    """Chapters of ``transcript`` (one chapter when it has too few sentences to split)."""
    duration = max(transcript.duration, max((w.end for w in transcript.words), default=0.0))
    sentences = split_sentences(words_of(transcript), duration)
    if not sentences:
        return [Chapter(start=0.0, end=round(duration, 3), title="Chapter 1")]
    topics = segment_topics(embed([s.text for s in sentences]))
    starts = list(topics.starts)
    bounds = [0.0] + [math.floor(sentences[i].start * 1000) / 1000 for i in starts[1:]] + [duration]
    spans = [(bounds[t], bounds[t + 1], t) for t in range(len(starts))]
    merged = merge_short(spans, min_seconds)
    texts = [" ".join(s.text for s, t in zip(sentences, topics.of, strict=True) if int(t) in group)
             for _, _, group in merged]
    names = titles(texts)
    return [Chapter(start=round(a, 3), end=round(b, 3), title=name) for (a, b, _), name in zip(merged, names, strict=True)]


def _put(ctx: OpContext, path: str, text: str, kind: str, content_type: str, count: int) -> StoredFile:
    with ctx.storage.writing(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
        size = Path(tmp).stat().st_size
    return StoredFile(path=path, kind=kind, content_type=content_type, size=size, meta={"chapters": count})


@operator("chapters.find", weight=2)
def find_chapters(transcript: Transcript, *, params: ChapterParams, ctx: OpContext) -> Chapters:
    """Topic chapters of the transcript: ``{start, end, title}`` each, as YouTube text and WebVTT."""
    transcript = Transcript.model_validate(transcript)
    chapters = plan_chapters(transcript, min_seconds=params.min_seconds)
    folder = params.folder.strip("/")
    text = _put(ctx, ctx.output_path(f"{folder}/chapters.txt"), youtube_chapters(chapters), "chapters_text",
                "text/plain", len(chapters))
    vtt = _put(ctx, ctx.output_path(f"{folder}/chapters.vtt"), vtt_chapters(chapters), "chapters_vtt", "text/vtt",
               len(chapters))
    ctx.log(f"Chapters: {len(chapters)} (" + "; ".join(f"{c.start:.0f}s {c.title}" for c in chapters) + ")")
    ctx.progress(1.0)
    return Chapters(chapters=chapters, text=text, vtt=vtt)
