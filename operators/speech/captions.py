"""``speech.captions``: a transcript as JSON, SRT, WebVTT and plain text files.

Cues are built from word timings, never by cutting text at character counts, so a cue
always starts on the word it shows. A cue ends at a transcript segment boundary (Whisper's
segments are close to sentences), or before the word that would break a limit: more
than ``max_lines`` lines of ``max_chars_per_line`` characters, or a cue longer than
``max_cue_seconds``. Text that fits one line stays on one; otherwise lines are balanced
(the narrowest layout that fits) because two lines of similar length read faster than a
full line over a stub.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from operators.context import OpContext
from operators.registry import operator
from operators.speech.models import CaptionFiles, Transcript, TranscriptSegment, Word
from operators.storage import Storage
from operators.types import StoredFile

__all__ = ["CaptionParams", "Cue", "build_cues", "captions", "format_srt", "format_text", "format_vtt"]


class CaptionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_chars_per_line: int = Field(42, ge=10, le=200)
    max_lines: int = Field(2, ge=1, le=4)
    max_cue_seconds: float = Field(7.0, gt=0.5, le=30.0)
    min_cue_seconds: float = Field(
        0.8, ge=0, description="short cues stay up this long, unless the next cue starts sooner"
    )
    folder: str = Field("transcript", description="output folder inside the job's folder")


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    lines: tuple[str, ...]


def _greedy(words: list[str], width: int) -> list[str] | None:
    lines: list[str] = []
    for word in words:
        if len(word) > width:
            return None
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def layout(words: list[str], max_chars: int, max_lines: int) -> list[str] | None:
    """The most balanced lines for ``words`` within the limits, or None if they do not fit."""
    total = len(" ".join(words))
    if total <= max_chars and all(len(w) <= max_chars for w in words):
        return [" ".join(words)]
    for width in range(max(1, math.ceil(total / max_lines)), max_chars + 1):
        lines = _greedy(words, width)
        if lines is not None and len(lines) <= max_lines:
            return lines
    return None


def _split_long_word(w: Word, max_chars: int) -> list[Word]:
    """A 'word' wider than a line (a URL, a run-on) is cut into line-sized pieces, time shared evenly."""
    if len(w.word) <= max_chars:
        return [w]
    parts = [w.word[i : i + max_chars] for i in range(0, len(w.word), max_chars)]
    step = (w.end - w.start) / len(parts)
    return [
        Word(word=p, start=w.start + i * step, end=w.start + (i + 1) * step, probability=w.probability)
        for i, p in enumerate(parts)
    ]


def _segment_words(seg: TranscriptSegment) -> list[Word]:
    if seg.words:
        return list(seg.words)
    # No word timings (alignment failed): spread the text over the segment by length.
    tokens = seg.text.split()
    if not tokens:
        return []
    total = sum(len(t) for t in tokens)
    out, t = [], seg.start
    for tok in tokens:
        d = (seg.end - seg.start) * len(tok) / total
        out.append(Word(word=tok, start=t, end=t + d, probability=0.0))
        t += d
    return out


def build_cues(transcript: Transcript, params: CaptionParams) -> list[Cue]:
    groups: list[list[Word]] = []
    for seg in transcript.segments:
        current: list[Word] = []
        for word in (p for w in _segment_words(seg) for p in _split_long_word(w, params.max_chars_per_line)):
            if current:
                fits = layout([w.word for w in current + [word]], params.max_chars_per_line, params.max_lines)
                too_long = word.end - current[0].start > params.max_cue_seconds
                if fits is None or too_long:
                    groups.append(current)
                    current = []
            current.append(word)
        if current:
            groups.append(current)

    cues: list[Cue] = []
    for i, group in enumerate(groups):
        start = group[0].start
        end = min(max(group[-1].end, start), start + params.max_cue_seconds)
        next_start = groups[i + 1][0].start if i + 1 < len(groups) else transcript.duration
        if end - start < params.min_cue_seconds:
            end = max(end, min(start + params.min_cue_seconds, next_start, transcript.duration))
        lines = layout([w.word for w in group], params.max_chars_per_line, params.max_lines)
        assert lines is not None  # every group was checked to fit when it was built
        cues.append(Cue(start=round(start, 3), end=round(end, 3), lines=tuple(lines)))
    return cues


def _timestamp(seconds: float, sep: str) -> str:
    ms = int(round(max(0.0, seconds) * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def format_srt(cues: list[Cue]) -> str:
    blocks = [
        f"{i}\n{_timestamp(c.start, ',')} --> {_timestamp(c.end, ',')}\n" + "\n".join(c.lines)
        for i, c in enumerate(cues, 1)
    ]
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def format_vtt(cues: list[Cue]) -> str:
    blocks = [f"{_timestamp(c.start, '.')} --> {_timestamp(c.end, '.')}\n" + "\n".join(c.lines) for c in cues]
    return "WEBVTT\n\n" + "\n\n".join(blocks) + ("\n" if blocks else "")


def format_text(transcript: Transcript) -> str:
    lines = [s.text.strip() for s in transcript.segments if s.text.strip()]
    return "\n".join(lines) + ("\n" if lines else "")


def _write(storage: Storage, path: str, text: str, kind: str, content_type: str, meta: dict) -> StoredFile:
    with storage.writing(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
        size = Path(tmp).stat().st_size
    return StoredFile(path=path, kind=kind, content_type=content_type, size=size, meta=meta)


@operator("speech.captions", weight=0.3)
def captions(transcript: Transcript, *, params: CaptionParams, ctx: OpContext) -> CaptionFiles:
    """Write the transcript as JSON, SRT, WebVTT and plain text."""
    transcript = Transcript.model_validate(transcript)
    cues = build_cues(transcript, params)
    words = len(transcript.words)
    folder = params.folder.strip("/")

    def put(name: str, text: str, kind: str, content_type: str, meta: dict) -> StoredFile:
        return _write(ctx.storage, ctx.output_path(f"{folder}/{name}"), text, kind, content_type, meta)

    summary = {
        "language": transcript.language,
        "duration": transcript.duration,
        "segments": len(transcript.segments),
        "words": words,
    }
    files = CaptionFiles(
        # exclude_none: a segment names its language only in a mixed-language recording
        transcript=put("transcript.json", transcript.model_dump_json(indent=2, exclude_none=True) + "\n", "transcript",
                       "application/json", summary),
        srt=put("captions.srt", format_srt(cues), "srt", "application/x-subrip", {"cues": len(cues)}),
        vtt=put("captions.vtt", format_vtt(cues), "vtt", "text/vtt", {"cues": len(cues)}),
        text=put("transcript.txt", format_text(transcript), "text", "text/plain", {"words": words}),
    )
    ctx.log(f"Wrote captions: {len(cues)} cue(s), {words} words")
    ctx.progress(1.0)
    return files
