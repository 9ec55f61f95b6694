"""``speech.merge``: the windows' transcripts as one, in time order, with sane word times.

Windows never overlap (they are cut in silences), so merging is ordering plus repair:
Whisper's word alignment can put a word's start a few milliseconds before the end of
the previous one, or past the end of the audio. Captions and editors downstream rely
on words being monotonic and inside ``[0, duration]``, so that is enforced here once.
"""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, ConfigDict, Field

from operators.context import OpContext
from operators.registry import operator
from operators.speech.models import SpeechMap, Transcript, TranscriptSegment, WindowTranscript, Word

__all__ = ["MergeParams", "merge", "merge_parts"]


class MergeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    language: str = Field("en", description="the transcript's language when nothing was said")


def merge_parts(parts: list[WindowTranscript], duration: float, default_language: str = "en") -> Transcript:
    ordered = sorted((WindowTranscript.model_validate(p) for p in parts), key=lambda p: (p.start, p.index))
    languages = Counter(p.language for p in ordered if p.segments)
    language = languages.most_common(1)[0][0] if languages else (ordered[0].language if ordered else default_language)

    def clamp(t: float, low: float) -> float:
        return round(min(max(t, low, 0.0), duration), 3)

    segments: list[TranscriptSegment] = []
    last = 0.0  # end of the last word (or word-less segment) placed so far
    for part in ordered:
        for seg in sorted(part.segments, key=lambda s: s.start):
            words: list[Word] = []
            for w in seg.words:
                start = clamp(w.start, last)
                end = clamp(w.end, start)
                words.append(Word(word=w.word, start=start, end=end, probability=w.probability))
                last = end
            if words:
                start, end = words[0].start, words[-1].end
            else:
                start = clamp(seg.start, last)
                end = clamp(seg.end, start)
                last = end
            segments.append(TranscriptSegment(start=start, end=end, text=seg.text.strip(), words=tuple(words),
                                              language=seg.language))
    return Transcript(language=language, duration=round(duration, 3), segments=tuple(s for s in segments if s.text))


@operator("speech.merge", weight=0.2)
def merge(parts: list[WindowTranscript | list[WindowTranscript]], speech: SpeechMap, *, params: MergeParams,
          ctx: OpContext) -> Transcript:
    """Join the window transcripts (one per window, or a list per task) into one transcript ordered in time."""
    speech = SpeechMap.model_validate(speech)
    flat = [p for part in parts or [] for p in (part if isinstance(part, list | tuple) else [part])]
    transcript = merge_parts(flat, speech.duration, params.language if params.language != "auto" else "en")
    ctx.log(
        f"Merged {len(flat)} window(s): {len(transcript.segments)} segment(s), "
        f"{len(transcript.words)} words over {transcript.duration:.1f} s"
    )
    ctx.progress(1.0)
    return transcript
