"""The language codes a payload's ``language`` is checked against at POST are Whisper's own, and
``language: auto`` probes the speech spread across a recording."""

from __future__ import annotations

from operators.speech.language import probe_spans
from operators.speech.models import WHISPER_LANGUAGES, SpeechMap


def test_the_copied_codes_are_faster_whispers() -> None:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    assert tuple(WHISPER_LANGUAGES) == tuple(_LANGUAGE_CODES)


def test_probes_are_spread_over_the_speech_and_start_in_it() -> None:
    # Speech at 0-20 s and 60-120 s, silence between: no probe starts in the silence.
    speech = SpeechMap(duration=120.0, segments=((0.0, 20.0), (60.0, 120.0)))
    spans = probe_spans(speech, probes=5, seconds=12.0)
    assert spans == [(0.0, 12.0), (6.0, 18.0), (60.0, 72.0), (78.0, 90.0), (102.0, 114.0)]
    assert not [a for a, _ in spans if 20.0 < a < 60.0]
    assert probe_spans(SpeechMap(duration=5.0), probes=5) == [(0.0, 5.0)]
