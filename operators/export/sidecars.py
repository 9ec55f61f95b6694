"""``export.captions``: SRT and WebVTT sidecars on the output's timeline, for a timeline with captions.

The captions track's transcript is on its source's timeline; the words are moved through the
edit's cuts exactly as the burnt-in captions are (:func:`operators.render.captions.map_words`,
with the cuts ``render.plan`` uses), so a word cut out of the edit is not in the file either.
Cues are then built and written by transcribe's own code (:mod:`operators.speech.captions`):
the same line breaking, the same timestamp format.
"""

from __future__ import annotations

from fractions import Fraction

from operators.context import OpContext
from operators.render.captions import Cut, TimedWord, map_words
from operators.render.resolve import CaptionLayer, RenderInput
from operators.registry import operator
from operators.speech.captions import CaptionParams, build_cues, format_srt, format_vtt
from operators.speech.models import Transcript, TranscriptSegment, Word
from operators.types import StoredFile

__all__ = ["caption_sidecars", "output_transcript"]

#: A pause longer than this between two words on the output starts a new cue group.
_GAP = 1.0


def output_transcript(ti: RenderInput, layer: CaptionLayer, transcript: Transcript) -> Transcript:
    """The transcript's words where the edit plays them, as a transcript of the output."""
    spec = ti.spec
    cuts = [Cut(src_start=v.src_in, src_end=v.src_in + Fraction(v.frames) / spec.fps,
                out_start=Fraction(v.start) / spec.fps) for v in (spec.visual[i] for i in layer.layers)]
    duration = float(spec.duration)
    segments: list[TranscriptSegment] = []
    for seg in transcript.segments:
        # Each source segment's words, split where the edit puts them apart (a cut between them).
        group: list[TimedWord] = []
        for word in map_words(seg.words, cuts):
            if group and word.start - group[-1].end > _GAP:
                segments.append(_segment(group, duration))
                group = []
            group.append(word)
        if group:
            segments.append(_segment(group, duration))
    segments.sort(key=lambda s: s.start)
    return Transcript(language=transcript.language, duration=round(duration, 3), segments=tuple(segments))


def _segment(words: list[TimedWord], duration: float) -> TranscriptSegment:
    clamp = [Word(word=w.text, start=round(min(w.start, duration), 3), end=round(min(w.end, duration), 3),
                  probability=1.0) for w in words]
    return TranscriptSegment(start=clamp[0].start, end=clamp[-1].end, text=" ".join(w.word for w in clamp),
                             words=tuple(clamp))


@operator("export.captions", weight=0.5)
def caption_sidecars(timeline: RenderInput, *, params: CaptionParams, ctx: OpContext) -> dict[str, StoredFile] | None:
    """``srt`` and ``vtt`` of the first captions track, on the output's timeline (None without one)."""
    if not timeline.spec.captions:
        ctx.log("Captions: the timeline has no captions track, no sidecars")
        return None
    layer = timeline.spec.captions[0]
    with ctx.storage.reading(layer.transcript_path) as local:
        transcript = Transcript.model_validate_json(local.read_bytes())
    moved = output_transcript(timeline, layer, transcript)
    cues = build_cues(moved, params)
    files = {}
    for ext, text, content_type in (("srt", format_srt(cues), "application/x-subrip"),
                                    ("vtt", format_vtt(cues), "text/vtt")):
        path = ctx.output_path(f"export/captions/captions.{ext}")
        with ctx.storage.writing(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
        files[ext] = StoredFile(path=path, kind=ext, content_type=content_type, size=ctx.storage.size(path),
                                meta={"cues": len(cues), "words": len(moved.words), "duration": moved.duration})
    ctx.log(f"Captions: {len(cues)} cues, {len(moved.words)} of the transcript's {len(transcript.words)} words "
            f"are in the edit; SRT and WebVTT on the output's timeline")
    ctx.progress(1.0)
    return files
