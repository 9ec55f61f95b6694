"""The transcribe pipeline end to end: vad -> plan_windows -> transcribe_window (each) -> merge -> captions.

One Whisper model (tiny.en, bundled) serves the whole session: the operators cache it
per process, which is also what the test of the cache checks.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from operators import MediaError, OperatorError, OpContext, SourceRef, Storage
from operators.speech.captions import CaptionParams, captions
from operators.speech.merge import MergeParams, merge
from operators.speech.models import Transcript, Window
from operators.speech.vad import VadParams, vad
from operators.speech.whisper import WhisperParams, load_model, resolve_model, transcribe_window
from operators.speech.windows import WindowParams, plan_windows
from tests import speechgen as sg
from tests.subtitles import parse_srt, parse_vtt

needs_espeak = pytest.mark.skipif(not sg.have_espeak(), reason=sg.ESPEAK_MISSING)


def _ctx(root: Path) -> OpContext:
    return OpContext(job_id="job_test", node="x", storage=Storage(str(root)))


def run_pipeline(ctx: OpContext, path: str, whisper: WhisperParams | None = None, windows: WindowParams | None = None):
    audio = SourceRef(path=path)
    speech = vad(audio=audio, params=VadParams(), ctx=ctx)
    planned = plan_windows(speech=speech, params=windows or WindowParams(), ctx=ctx)
    # Fan-out order is not guaranteed: merge must not depend on it.
    parts = [transcribe_window(audio=audio, window=w, params=whisper or WhisperParams(), ctx=ctx) for w in reversed(planned)]
    transcript = merge(parts=parts, speech=speech, params=MergeParams(), ctx=ctx)
    files = captions(transcript=transcript, params=CaptionParams(), ctx=ctx)
    return speech, planned, transcript, files


@pytest.fixture(scope="module")
def minute(tmp_path_factory):
    """About 67 s of espeak speech (20 sentences), transcribed once for the module."""
    if not sg.have_espeak():
        pytest.skip(sg.ESPEAK_MISSING)
    root = tmp_path_factory.mktemp("minute")
    layout = sg.minute_of_speech()
    sg.write_wav(root / "minute.wav", layout.audio)
    ctx = _ctx(root)
    speech, planned, transcript, files = run_pipeline(ctx, "minute.wav")
    return layout, ctx, speech, planned, transcript, files


# --- the minute of speech ----------------------------------------------------------------


@needs_espeak
def test_transcript_of_a_minute_of_speech_is_accurate(minute):
    layout, _, _, planned, transcript, _ = minute
    assert len(planned) >= 2, "67 s of speech needs more than one window"
    error = sg.wer(layout.text, transcript.text)
    # tiny.en on espeak's robotic voice measures ~0.12; a broken offset, order or window
    # join (words lost or repeated at a cut) shows up well above this.
    assert error < 0.25, f"WER {error:.3f}: {transcript.text}"
    # Each sentence's distinctive words are there, in spoken order.
    text = " ".join(sg.normalize(transcript.text))
    positions = [text.find(key) for key in ("round bowls", "parked truck", "pink salmon", "salt breeze")]
    assert -1 not in positions and positions == sorted(positions), positions


@needs_espeak
def test_words_are_monotonic_and_inside_the_audio(minute):
    layout, _, speech, _, transcript, _ = minute
    words = transcript.words
    assert len(words) > 150
    assert transcript.duration == pytest.approx(layout.duration, abs=0.01)
    for w in words:
        assert 0.0 <= w.start <= w.end <= transcript.duration, w
        assert 0.0 <= w.probability <= 1.0
    for a, b in zip(words, words[1:]):
        assert a.end <= b.start, (a, b)
    for seg in transcript.segments:
        assert seg.words and seg.start == seg.words[0].start and seg.end == seg.words[-1].end
    # No word was placed in a silence the VAD saw.
    for w in words:
        mid = (w.start + w.end) / 2
        assert any(a - 0.05 <= mid <= b + 0.05 for a, b in speech.segments), w


@needs_espeak
@pytest.mark.parametrize("sentence", [4, 13, 14])  # "Rice ...", "Kick ...", "Help ..."
def test_a_sentence_first_word_is_timed_where_it_was_spoken(minute, sentence):
    layout, _, _, _, transcript, _ = minute
    u = layout.utterances[sentence]
    first = sg.normalize(u.text)[0]
    near = [w for w in transcript.words if sg.normalize(w.word) == [first] and abs(w.start - u.start) < 2.0]
    assert near, f"'{first}' not transcribed near {u.start:.2f} s"
    assert abs(near[0].start - u.start) <= 0.3, f"'{first}' at {near[0].start:.2f} s, spoken at {u.start:.2f} s"


@needs_espeak
def test_window_transcripts_are_on_the_source_timeline(minute):
    layout, ctx, _, planned, _, _ = minute
    last = planned[-1]
    part = transcribe_window(audio=SourceRef(path="minute.wav"), window=last, params=WhisperParams(), ctx=ctx)
    assert part.index == last.index and part.start == last.start
    assert all(last.start <= w.start <= w.end <= last.end for s in part.segments for w in s.words)
    # The window holds the last sentences; their words come out at their source time.
    girl = [w for s in part.segments for w in s.words if sg.normalize(w.word) == ["girl"]]
    assert girl and abs(girl[0].start - layout.utterances[-1].start) < 1.0


@needs_espeak
def test_caption_files_parse_and_keep_the_limits(minute):
    _, ctx, _, _, transcript, files = minute
    root = ctx.storage.local_root
    assert files.transcript.path == "jobs/job_test/transcript/transcript.json"
    for stored, kind, ctype in (
        (files.transcript, "transcript", "application/json"),
        (files.srt, "srt", "application/x-subrip"),
        (files.vtt, "vtt", "text/vtt"),
        (files.text, "text", "text/plain"),
    ):
        assert (stored.kind, stored.content_type) == (kind, ctype)
        assert stored.size == (root / stored.path).stat().st_size > 0

    doc = json.loads((root / files.transcript.path).read_text())
    assert set(doc) == {"language", "duration", "segments"} and doc["language"] == "en"
    assert Transcript.model_validate(doc) == transcript
    assert {"start", "end", "text", "words"} <= set(doc["segments"][0])
    assert set(doc["segments"][0]["words"][0]) == {"word", "start", "end", "probability"}

    srt = parse_srt((root / files.srt.path).read_text())
    vtt = parse_vtt((root / files.vtt.path).read_text())
    assert len(srt) == len(vtt) == files.srt.meta["cues"] > 10
    for (s1, e1, l1), (s2, e2, l2) in zip(srt, vtt, strict=True):
        assert (s1, e1, l1) == (s2, e2, l2)
    for start, end, lines in srt:
        assert 0 <= start < end <= 7.0 + start
        assert 1 <= len(lines) <= 2 and all(len(line) <= 42 for line in lines), lines
    assert all(a[1] <= b[0] for a, b in zip(srt, srt[1:])), "cues overlap"
    # Every word appears once, in order: cues are cut at word boundaries only.
    cue_words = [w for _, _, lines in srt for line in lines for w in line.split()]
    assert cue_words == [w.word for w in transcript.words]

    text = (root / files.text.path).read_text()
    assert sg.normalize(text) == sg.normalize(transcript.text)


# --- other inputs ---------------------------------------------------------------------


def test_beckett_recording(tmp_path):
    shutil.copy(sg.beckett_path(), tmp_path / "beckett.wav")
    _, planned, transcript, _ = run_pipeline(_ctx(tmp_path), "beckett.wav")
    assert len(planned) == 1
    assert sg.wer(sg.BECKETT_TEXT, transcript.text) <= 0.1, transcript.text
    fail = [w.start for w in transcript.words if sg.normalize(w.word) == ["fail"]]
    failed = [w.start for w in transcript.words if sg.normalize(w.word) == ["failed"]]
    assert len(fail) == 2 and len(failed) == 1 and failed[0] < fail[0] < fail[1]


@needs_espeak
def test_video_with_aac_audio_and_the_gap_modes_agree(tmp_path):
    layout = sg.compose_sentences(list(sg.SENTENCES[10:13]), [2.0])
    sg.write_video(tmp_path / "talk.mp4", layout.duration, layout.audio)
    ctx = _ctx(tmp_path)
    results = {}
    for gaps, pack in (("skip", "speech"), ("zero", "span"), ("keep", "span")):
        _, _, transcript, _ = run_pipeline(ctx, "talk.mp4", WhisperParams(gaps=gaps), WindowParams(pack=pack))
        assert sg.wer(layout.text, transcript.text) < 0.3, (gaps, transcript.text)
        results[gaps] = transcript
    # The same word lands at the same source time whichever way the gaps were handled.
    rod = {g: [w.start for w in t.words if sg.normalize(w.word) == ["rod"]] for g, t in results.items()}
    assert all(len(v) == 1 for v in rod.values()), rod
    assert max(v[0] for v in rod.values()) - min(v[0] for v in rod.values()) < 0.3


def test_silence_only_gives_an_empty_transcript_and_empty_captions(tmp_path):
    sg.write_wav(tmp_path / "silence.wav", np.zeros(5 * sg.RATE, np.float32))
    speech, planned, transcript, files = run_pipeline(_ctx(tmp_path), "silence.wav")
    assert speech.segments == () and planned == []
    assert transcript.segments == () and transcript.duration == pytest.approx(5.0)
    root = tmp_path
    assert parse_srt((root / files.srt.path).read_text()) == []
    assert parse_vtt((root / files.vtt.path).read_text()) == []
    assert (root / files.text.path).read_text() == ""
    assert json.loads((root / files.transcript.path).read_text())["segments"] == []


def test_video_without_audio_is_a_media_error(tmp_path):
    sg.write_video(tmp_path / "mute.mp4", 1.0)
    ctx = _ctx(tmp_path)
    window = Window(index=0, count=1, start=0.0, end=1.0, segments=((0.0, 1.0),))
    with pytest.raises(MediaError, match="no audio stream"):
        transcribe_window(audio=SourceRef(path="mute.mp4"), window=window, params=WhisperParams(), ctx=ctx)


def test_unknown_model_names_are_refused_without_downloading(tmp_path, monkeypatch):
    monkeypatch.delenv("MODELS_DIR", raising=False)
    with pytest.raises(OperatorError, match="Unknown Whisper model 'large-v3'.*never downloaded"):
        resolve_model("large-v3")
    with pytest.raises(OperatorError, match="Unknown Whisper model"):
        resolve_model(str(tmp_path))  # a folder, but not a CTranslate2 model
    bundled = resolve_model("tiny.en")
    assert (Path(bundled) / "model.bin").is_file()
    with pytest.raises(OperatorError, match="Unknown Whisper model"):
        resolve_model(bundled)  # a model folder, but MODELS_DIR is not set: bundled names only
    # A folder of MODELS_DIR, by its name or its path; never one outside it.
    monkeypatch.setenv("MODELS_DIR", str(Path(bundled).parent))
    assert resolve_model(Path(bundled).name) == str(Path(bundled).resolve())
    assert resolve_model(bundled) == str(Path(bundled).resolve())
    with pytest.raises(OperatorError, match="Unknown Whisper model"):
        resolve_model(str(tmp_path))
    with pytest.raises(OperatorError, match="Unknown Whisper model"):
        resolve_model(f"../{Path(bundled).parent.name}/{Path(bundled).name}/..")


def test_the_model_is_loaded_once_per_process():
    path = resolve_model("tiny.en")
    assert load_model(path, "int8", 1) is load_model(path, "int8", 1)

