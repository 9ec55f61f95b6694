"""operators.speech.batched: windows decoded together, each keeping its own words, without needless fallbacks."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from operators.speech.batched import BatchSettings, DecodedSegment, _Piece, _tail, decode_windows, looks_like_loop
from operators.speech.whisper import load_model, resolve_model
from tests import speechgen as sg

needs_espeak = pytest.mark.skipif(not sg.have_espeak(), reason=sg.ESPEAK_MISSING)


def test_a_decoding_loop_is_told_from_a_speaker_repeating_himself():
    assert looks_like_loop("Thank you. " * 30, seconds=28.0)
    assert looks_like_loop("I'm going to go " * 8 + "home", seconds=28.0)
    # Wherever the loop starts: 4 x "thank you" one word after a 12-word sentence said 3 times.
    assert looks_like_loop(" ".join([sg.BECKETT_TEXT] * 3) + " so thank you thank you thank you thank you", 28.0)
    # 3 x beckett in 28 s: compresses as well as a loop (ratio > 2.4), but it is what was said.
    assert not looks_like_loop(" ".join([sg.BECKETT_TEXT] * 3), seconds=28.0)
    assert not looks_like_loop(" ".join(sg.SENTENCES[:6]), seconds=25.0)
    # Far more words than a person says in 5 s, all of them one sentence again and again.
    assert looks_like_loop(" ".join([sg.SENTENCES[0]] * 8), seconds=5.0)


def test_a_window_whose_segments_stop_early_has_its_tail_decoded_again():
    piece = _Piece(0, 0.0, 24.4, [DecodedSegment(0.0, 11.9, "a"), DecodedSegment(11.9, 17.9, "b")])
    tail = _tail(piece)
    assert tail is not None and (tail.window, tail.start, tail.end) == (0, 17.9, 24.4)
    assert _tail(_Piece(0, 0.0, 24.4, [DecodedSegment(0.0, 23.8, "a")])) is None  # closed: 0.6 s left
    assert _tail(_Piece(0, 0.0, 24.4, [])) is None  # nothing said at all: nothing to resume


@pytest.fixture(scope="module")
def model():
    return load_model(resolve_model("tiny.en"), "int8", 1)


@needs_espeak
def test_batched_windows_keep_their_own_words_and_skip_the_temperature_fallback(model, caplog):
    beckett = sg.decode_16k(sg.beckett_path())
    repeated = np.concatenate([beckett] * 3)  # 29.9 s: one window Whisper's guard takes for a loop
    # End it 150 samples into a 10 ms frame: the batch reports the next clip's start truncated to
    # frames (2989.94 -> 2989), which must still be found to be the second clip.
    repeated = np.pad(repeated, (0, (150 - repeated.size) % 160))
    spoken = sg.compose([0.5, "The boy was there when the sun rose.", 0.5])
    sentence = spoken.audio
    caplog.set_level(logging.DEBUG, logger="faster_whisper")
    _language, out = decode_windows(model, [repeated, sentence], BatchSettings(batch_size=8))
    first = " ".join(s.text for s in out[0])
    # CTranslate2's int8 kernels differ per CPU ISA: with AVX-512 the window comes back word for word, with
    # AVX2 (what it picks on AMD EPYC) the third "Ever tried ... Fail better." collapses to "Ever better"
    # (WER 0.31). A window that took another's words or looped would be far above either.
    assert sg.wer(" ".join([sg.BECKETT_TEXT] * 3), first) <= 0.35, first
    second = " ".join(s.text for s in out[1])
    assert sg.wer(spoken.text, second) <= 0.3, second  # tiny.en hears "there when" as "never in"
    assert "sun" not in sg.normalize(first) and not {"failed", "matter"} & set(sg.normalize(second))
    # Times are each window's own: the sentence's words start near 0, not 29.9 s in.
    words = [w for s in out[1] for w in s.words]
    assert words and 0.2 <= words[0].start < 1.0 and words[-1].end <= sentence.size / sg.RATE + 0.05
    # One pass at temperature 0: the sequential decoder re-sampled this window at 5 more temperatures.
    assert not [r for r in caplog.records if "threshold is not met" in r.getMessage()]

