"""PCM decoding and speech.vad: streaming, seeking, VAD alignment with a known layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from operators import MediaError, OpContext, SourceRef, Storage, StoredFile
from operators.speech.pcm import SAMPLE_RATE, decode_range, iter_pcm
from operators.speech.vad import VadParams, speech_probabilities, vad
from tests import speechgen as sg

needs_espeak = pytest.mark.skipif(not sg.have_espeak(), reason=sg.ESPEAK_MISSING)


@pytest.fixture()
def ctx(tmp_path) -> OpContext:
    return OpContext(job_id="job_test", node="x", storage=Storage(str(tmp_path)))


@pytest.fixture(scope="module")
def layout() -> sg.Composed:
    if not sg.have_espeak():
        pytest.skip(sg.ESPEAK_MISSING)
    return sg.compose_sentences(list(sg.SENTENCES[:5]), [0.8, 1.6, 0.5])


def _lag(a: np.ndarray, b: np.ndarray, max_lag: int = 200) -> int:
    """The shift of ``a`` against ``b`` (in samples) that correlates best."""
    n = min(a.size, b.size) - 2 * max_lag
    scores = [float(np.dot(a[max_lag + k : max_lag + k + n], b[max_lag : max_lag + n])) for k in range(-max_lag, max_lag)]
    return int(np.argmax(scores)) - max_lag


def test_iter_pcm_streams_fixed_blocks_of_the_whole_file(tmp_path):
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(7.3 * SAMPLE_RATE)) / SAMPLE_RATE)).astype(np.float32)
    path = sg.write_wav(tmp_path / "tone.wav", tone)
    blocks = list(iter_pcm(path, block_seconds=2.0))
    assert [b.size for b in blocks[:-1]] == [2 * SAMPLE_RATE] * 3
    assert blocks[-1].size == tone.size - 3 * 2 * SAMPLE_RATE
    assert all(b.dtype == np.float32 for b in blocks)
    np.testing.assert_allclose(np.concatenate(blocks), tone, atol=1e-4)


@needs_espeak
def test_decode_range_matches_the_full_decode_of_a_wav(tmp_path, layout):
    path = sg.write_wav(tmp_path / "speech.wav", layout.audio)
    full = np.concatenate(list(iter_pcm(path)))
    for start, end in [(0.0, 1.5), (3.3, 7.9), (10.25, 12.0), (layout.duration - 0.5, layout.duration + 1.0)]:
        part = decode_range(path, start, end)
        first = int(round(start * SAMPLE_RATE))
        assert part.size == int(round(end * SAMPLE_RATE)) - first
        expected = full[first : first + part.size]
        np.testing.assert_allclose(part[: expected.size], expected, atol=1e-6)
        assert not part[expected.size :].any(), "past the end of the stream must be silence"


@needs_espeak
def test_decode_range_of_aac_in_a_video_is_aligned_with_the_source(tmp_path, layout):
    # 48 kHz stereo AAC: seeking lands on a codec frame, resampling and priming all apply.
    path = sg.write_video(tmp_path / "clip.mp4", layout.duration, layout.audio)
    start = layout.utterances[2].start - 0.4
    part = decode_range(path, start, start + 4.0)
    reference = layout.audio[int(round(start * SAMPLE_RATE)) :][: part.size]
    assert _lag(part, reference) == 0
    assert np.corrcoef(part, reference)[0, 1] > 0.95


def test_no_audio_stream_is_a_media_error(tmp_path, ctx):
    sg.write_video(tmp_path / "silent_film.mp4", 1.0)
    with pytest.raises(MediaError, match="no audio"):
        next(iter_pcm(tmp_path / "silent_film.mp4"))
    with pytest.raises(MediaError, match="no audio"):
        vad(audio=SourceRef(path="silent_film.mp4"), params=VadParams(), ctx=ctx)


def test_a_file_that_is_not_media_is_a_media_error(tmp_path, ctx):
    (tmp_path / "notes.wav").write_bytes(b"this is not a wave file at all" * 10)
    with pytest.raises(MediaError):
        vad(audio=SourceRef(path="notes.wav"), params=VadParams(), ctx=ctx)


@needs_espeak
def test_vad_segments_line_up_with_the_spoken_sentences(tmp_path, ctx, layout):
    sg.write_wav(tmp_path / "speech.wav", layout.audio)
    speech = vad(audio=SourceRef(path="speech.wav"), params=VadParams(), ctx=ctx)

    assert speech.duration == pytest.approx(layout.duration, abs=0.01)
    assert len(speech.segments) == len(layout.utterances)
    for (start, end), u in zip(speech.segments, layout.utterances, strict=True):
        # Padded by 200 ms on each side, and the model needs a frame or two to react.
        assert u.start - 0.35 <= start <= u.start + 0.05, (start, u)
        assert u.end - 0.05 <= end <= u.end + 0.45, (end, u)
    starts = [s for s, _ in speech.segments]
    assert starts == sorted(starts)
    assert all(a[1] <= b[0] for a, b in zip(speech.segments, speech.segments[1:]))


@needs_espeak
def test_vad_reads_a_stored_file_from_a_video_the_same_way(tmp_path, ctx, layout):
    sg.write_video(tmp_path / "clip.mp4", layout.duration, layout.audio)
    size = (tmp_path / "clip.mp4").stat().st_size
    ref = StoredFile(path="clip.mp4", kind="video", content_type="video/mp4", size=size)
    speech = vad(audio=ref, params=VadParams(), ctx=ctx)
    assert len(speech.segments) == len(layout.utterances)
    for (start, _), u in zip(speech.segments, layout.utterances, strict=True):
        assert abs(start - (u.start - 0.2)) < 0.2


def test_vad_of_silence_and_noise_finds_no_speech(tmp_path, ctx):
    rng = np.random.default_rng(0)
    quiet = np.concatenate([np.zeros(3 * SAMPLE_RATE), 0.003 * rng.standard_normal(3 * SAMPLE_RATE)]).astype(np.float32)
    sg.write_wav(tmp_path / "quiet.wav", quiet)
    speech = vad(audio=SourceRef(path="quiet.wav"), params=VadParams(), ctx=ctx)
    assert speech.segments == ()
    assert speech.duration == pytest.approx(6.0, abs=0.01)


@needs_espeak
def test_vad_min_silence_param_decides_whether_a_pause_splits(tmp_path, ctx):
    # Two sentences 0.5 s apart: one segment if the pause must last 800 ms, two at 300 ms.
    c = sg.compose([0.5, sg.SENTENCES[0], 0.5, sg.SENTENCES[1], 0.5])
    sg.write_wav(tmp_path / "two.wav", c.audio)
    ref = SourceRef(path="two.wav")
    assert len(vad(audio=ref, params=VadParams(min_silence_ms=300), ctx=ctx).segments) == 2
    assert len(vad(audio=ref, params=VadParams(min_silence_ms=800), ctx=ctx).segments) == 1


@needs_espeak
def test_vad_streaming_does_not_depend_on_block_boundaries(layout):
    whole, n = speech_probabilities([layout.audio])
    ragged = [layout.audio[i : i + 7777] for i in range(0, layout.audio.size, 7777)]  # not a multiple of 512
    streamed, n2 = speech_probabilities(ragged)
    assert n == n2 == layout.audio.size
    assert whole.size == -(-n // 512)
    np.testing.assert_array_equal(whole, streamed)


def _silero_package_probabilities(audio: np.ndarray) -> np.ndarray:
    """Silero's own v6 ONNX (the silero-vad package, a test-only data package), run frame by frame with its
    ``state``: an independent check that frames, context and state are fed the way the model expects."""
    import importlib.util

    import onnxruntime

    spec = importlib.util.find_spec("silero_vad")  # never imported: its __init__ imports torch
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "silero_vad.onnx"
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    state, sr = np.zeros((2, 1, 128), np.float32), np.array(16000, np.int64)
    context, probs = np.zeros(64, np.float32), []
    for frame in np.pad(audio, (0, -audio.size % 512)).reshape(-1, 512):
        out, state = session.run(None, {"input": np.concatenate([context, frame])[None], "state": state, "sr": sr})
        probs.append(float(out[0, 0]))
        context = frame[-64:]
    return np.asarray(probs, np.float32)


@needs_espeak
def test_vad_agrees_with_silero_run_frame_by_frame(layout):
    ours, n = speech_probabilities([layout.audio])
    theirs = _silero_package_probabilities(layout.audio)
    assert ours.size == theirs.size == -(-n // 512)
    assert ((ours >= 0.5) == (theirs >= 0.5)).mean() > 0.95
    assert np.corrcoef(ours, theirs)[0, 1] > 0.9
