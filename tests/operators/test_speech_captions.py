"""speech.merge and cue building, on hand-made transcripts (no model involved)."""

from __future__ import annotations

import pytest

from operators import OpContext, Storage
from operators.speech.captions import CaptionParams, build_cues, format_srt, format_vtt, layout
from operators.speech.merge import MergeParams, merge
from operators.speech.models import SpeechMap, Transcript, TranscriptSegment, WindowTranscript, Word


@pytest.fixture()
def ctx(tmp_path) -> OpContext:
    return OpContext(job_id="job_test", node="x", storage=Storage(str(tmp_path)))


def _words(text: str, start: float, step: float = 0.3) -> tuple[Word, ...]:
    return tuple(
        Word(word=w, start=round(start + i * step, 3), end=round(start + i * step + step * 0.8, 3), probability=0.9)
        for i, w in enumerate(text.split())
    )


def _segment(text: str, start: float, step: float = 0.3) -> TranscriptSegment:
    words = _words(text, start, step)
    return TranscriptSegment(start=words[0].start, end=words[-1].end, text=text, words=words)


def test_merge_orders_windows_and_repairs_word_times(ctx):
    late = WindowTranscript(index=1, start=30.0, end=40.0, language="en", segments=(_segment("second part here", 31.0),))
    # Whisper put one word's start before the previous word's end, and one past the audio.
    overlapping = (
        Word(word="first", start=1.0, end=1.5, probability=0.9),
        Word(word="part", start=1.4, end=1.8, probability=0.9),
        Word(word="now", start=1.9, end=1.85, probability=0.9),
    )
    early = WindowTranscript(
        index=0, start=0.0, end=30.0, language="en",
        segments=(TranscriptSegment(start=1.0, end=1.85, text="first part now", words=overlapping),),
    )
    tail = WindowTranscript(index=2, start=40.0, end=41.0, language="en", segments=(_segment("end", 40.9, step=0.5),))
    speech = SpeechMap(duration=41.0, segments=((0.5, 2.0), (30.5, 32.0), (40.5, 41.0)))
    transcript = merge(parts=[late, tail, early], speech=speech, params=MergeParams(), ctx=ctx)

    assert transcript.text == "first part now second part here end"
    words = transcript.words
    assert all(a.end <= b.start for a, b in zip(words, words[1:]))
    assert all(w.start <= w.end <= 41.0 for w in words)
    assert words[1].start == 1.5 and words[2].end >= words[2].start
    assert words[-1].end == 41.0


def test_merge_of_nothing_is_an_empty_transcript(ctx):
    transcript = merge(parts=[], speech=SpeechMap(duration=12.5), params=MergeParams(), ctx=ctx)
    assert transcript == Transcript(language="en", duration=12.5, segments=())


def test_layout_balances_lines_and_refuses_what_does_not_fit():
    words = "the quick brown fox jumps over the lazy dog and keeps on running far away".split()
    lines = layout(words, 42, 2)
    assert lines is not None and len(lines) == 2
    assert abs(len(lines[0]) - len(lines[1])) <= 8 and all(len(x) <= 42 for x in lines)
    assert " ".join(lines).split() == words
    assert layout(words * 2, 42, 2) is None
    assert layout(["short"], 42, 2) == ["short"]


def test_cues_respect_chars_lines_and_duration():
    long_sentence = " ".join(["word"] * 60)  # 60 words, 18 s at 0.3 s a word
    slow = _segment("a slow speaker takes his time", 30.0, step=2.0)
    url = _segment("visit supercalifragilisticexpialidocious-and-then-some-more-text.example.org today", 50.0)
    transcript = Transcript(language="en", duration=60.0, segments=(_segment(long_sentence, 0.0), slow, url))
    params = CaptionParams()
    cues = build_cues(transcript, params)

    for cue in cues:
        assert 1 <= len(cue.lines) <= 2 and all(len(line) <= 42 for line in cue.lines), cue
        assert cue.end - cue.start <= 7.0 + 1e-9, cue
        assert cue.start < cue.end
    assert all(a.end <= b.start for a, b in zip(cues, cues[1:]))
    # The slow sentence is split by time, not by characters: 6 words over 12 s.
    slow_cues = [c for c in cues if 30.0 <= c.start < 50.0]
    assert len(slow_cues) >= 2
    # A cue never mixes two transcript segments.
    assert not any(c.start < 30.0 < c.end for c in cues)


def test_srt_and_vtt_timestamps():
    transcript = Transcript(language="en", duration=4000.0, segments=(_segment("an hour later", 3723.456),))
    cues = build_cues(transcript, CaptionParams())
    srt, vtt = format_srt(cues), format_vtt(cues)
    assert srt.startswith("1\n01:02:03,456 --> 01:02:04,") and srt.endswith("an hour later\n")
    assert vtt.startswith("WEBVTT\n\n01:02:03.456 --> 01:02:04.")


def test_a_segment_without_word_timings_still_gets_cues():
    seg = TranscriptSegment(start=2.0, end=6.0, text="no word timings came back for this one")
    cues = build_cues(Transcript(language="en", duration=10.0, segments=(seg,)), CaptionParams())
    assert cues and cues[0].start == 2.0 and cues[-1].end == pytest.approx(6.0)
    assert " ".join(line for c in cues for line in c.lines) == seg.text


def test_short_cues_are_held_a_little_but_never_over_the_next():
    segs = (_segment("Hi.", 1.0, step=0.2), _segment("Yes.", 1.5, step=0.2), _segment("Later.", 9.0, step=0.2))
    cues = build_cues(Transcript(language="en", duration=10.0, segments=segs), CaptionParams(min_cue_seconds=0.8))
    assert cues[0].end == 1.5  # held until the next cue starts
    assert cues[1].end == pytest.approx(2.3)  # held for 0.8 s
    assert cues[2].end == pytest.approx(9.8)
