"""The ``transcribe`` job through the HTTP API: real Redis, real Dask workers, tiny.en.

Speech is espeak-ng sentences laid out with known silences (tests/speechgen.py), so a
test knows what was said and when. Every check goes through what a client sees: the job
record, its log and progress, and the output assets downloaded by id. The Whisper model
is cached per Dask worker process, so only the first job of the session pays its load.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from litestar.testing import TestClient

from operators import MediaError, OpContext, SourceRef, Storage
from operators.media.audio import ExtractAudioParams, extract_audio
from operators.media.probe import probe
from operators.speech.pcm import decode_range
from operators.speech.whisper import resolve_model
from tests import speechgen as sg
from tests.subtitles import parse_srt, parse_vtt
from tests.conftest import wait_for, wait_until

pytestmark = pytest.mark.skipif(not sg.have_espeak(), reason=sg.ESPEAK_MISSING)

OUTPUT_KINDS = {
    "transcript": ("transcript", "application/json"),
    "srt": ("srt", "application/x-subrip"),
    "vtt": ("vtt", "text/vtt"),
    "text": ("text", "text/plain"),
}


# --- helpers ---------------------------------------------------------------------------


def submit(client: TestClient[Any], payload: dict[str, Any], job_type: str = "transcribe") -> dict[str, Any]:
    response = client.post(f"/jobs/?job_type={job_type}", json={"project_id": "proj_e2e", **payload})
    assert response.status_code == 202, response.text
    return response.json()


def download(client: TestClient[Any], record: dict[str, Any]) -> bytes:
    response = client.get(f"/assets/{record['id']}/content")
    assert response.status_code == 200, response.text
    assert len(response.content) == record["size"]
    return response.content


def outputs_of(client: TestClient[Any], done: dict[str, Any]) -> dict[str, bytes]:
    """Check the four outputs are asset records of this job, and download each."""
    outputs = done["result_payload"]["outputs"]
    assert set(outputs) == set(OUTPUT_KINDS) | {"language", "translation", "chapters"}
    assert outputs["language"] == {"language": "en", "probability": 1.0, "detected": False, "mixed": False,
                                   "languages": [], "windows": []} and outputs["translation"] is None
    assert outputs["chapters"] is None
    files = {}
    for name, (kind, content_type) in OUTPUT_KINDS.items():
        record = outputs[name]
        assert record["id"].startswith("asset_") and record["url"] == f"/assets/{record['id']}/content"
        assert (record["kind"], record["content_type"], record["job_id"]) == (kind, content_type, done["id"])
        assert record["project_id"] == "proj_e2e" and "path" not in record
        files[name] = download(client, record)
    return files


def messages(done: dict[str, Any]) -> list[str]:
    return [e["message"] for e in done["result_payload"]["log"]]


def check_transcript(doc: dict[str, Any], layout: sg.Composed, max_wer: float) -> list[dict[str, Any]]:
    """The JSON shape, WER, and word times (monotonic, inside the audio); returns the words."""
    assert set(doc) == {"language", "duration", "segments"} and doc["language"] == "en"
    assert doc["duration"] == pytest.approx(layout.duration, abs=0.05)
    words = []
    for seg in doc["segments"]:
        assert set(seg) == {"start", "end", "text", "words"} and seg["text"].strip()
        assert seg["words"] and seg["start"] == seg["words"][0]["start"] and seg["end"] == seg["words"][-1]["end"]
        for w in seg["words"]:
            assert set(w) == {"word", "start", "end", "probability"}
            assert 0.0 <= w["probability"] <= 1.0
        words.extend(seg["words"])
    text = " ".join(s["text"] for s in doc["segments"])
    error = sg.wer(layout.text, text)
    # tiny.en measures ~0.1 on espeak's voice; lost or repeated words at a window cut, or a
    # window transcribed twice, push it well past the bound.
    assert error <= max_wer, f"WER {error:.3f}: {text}"
    for w in words:
        assert 0.0 <= w["start"] <= w["end"] <= doc["duration"], w
    for a, b in zip(words, words[1:]):
        assert a["end"] <= b["start"], (a, b)
    return words


def assert_spoken_at(words: list[dict[str, Any]], utterance: sg.Utterance) -> None:
    """The utterance's first word is timed within 0.3 s of when espeak started saying it."""
    first = sg.normalize(utterance.text)[0]
    near = [w for w in words if sg.normalize(w["word"]) == [first] and abs(w["start"] - utterance.start) < 2.0]
    assert near, f"'{first}' not transcribed near {utterance.start:.2f} s"
    assert abs(near[0]["start"] - utterance.start) <= 0.3, f"'{first}' at {near[0]['start']:.2f} s, spoken at {utterance.start:.2f} s"


def check_captions(files: dict[str, bytes], words: list[dict[str, Any]]) -> int:
    srt = parse_srt(files["srt"].decode())
    vtt = parse_vtt(files["vtt"].decode())
    assert srt == vtt, "SRT and VTT disagree"
    for start, end, lines in srt:
        assert 0.0 <= start < end <= start + 7.0, (start, end, lines)
        assert 1 <= len(lines) <= 2 and all(len(line) <= 42 for line in lines), lines
    assert all(a[1] <= b[0] for a, b in zip(srt, srt[1:])), "cues overlap"
    # Cues are cut at word boundaries: every transcript word shows once, in order.
    assert [w for _, _, lines in srt for line in lines for w in line.split()] == [w["word"] for w in words]
    return len(srt)


# --- material --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minute() -> sg.Composed:
    """About 67 s: 20 sentences with 0.6-1.5 s silences, enough for three 30 s windows."""
    return sg.minute_of_speech()


@pytest.fixture(scope="module")
def short() -> sg.Composed:
    """Three sentences with 2 s silences (~10 s): one window."""
    return sg.compose_sentences(list(sg.SENTENCES[10:13]), [2.0])


# --- tests -----------------------------------------------------------------------------


def test_a_minute_of_speech_from_a_wav(client: TestClient[Any], media_root: Path, minute: sg.Composed) -> None:
    sg.write_wav(media_root / "minute.wav", minute.audio)
    job = submit(client, {"source_uri": "minute.wav"})
    seen: list[tuple[float, int]] = []

    def record(r: dict[str, Any]) -> None:
        if r["result_payload"]:
            seen.append((r["result_payload"]["progress"], len(r["result_payload"]["log"])))

    done = wait_for(client, job["id"], seen=record, timeout=180)
    assert done["status"] == "completed", done["error_message"]

    files = outputs_of(client, done)
    doc = json.loads(files["transcript"])
    words = check_transcript(doc, minute, max_wer=0.25)
    assert len(words) > 150
    for sentence in (4, 13, 14):  # "Rice ...", "Kick ...", "Help ...": in the 1st, 2nd and 3rd windows
        assert_spoken_at(words, minute.utterances[sentence])
    cues = check_captions(files, words)
    assert cues > 10 and done["result_payload"]["outputs"]["srt"]["meta"]["cues"] == cues
    assert sg.normalize(files["text"].decode()) == sg.normalize(" ".join(s["text"] for s in doc["segments"]))

    # Progress: never down, ends at 1, and moves while the windows are transcribed.
    log = messages(done)
    windows = int(next(m for m in log if m.startswith("Planned ")).split()[1])
    assert windows == 3, log  # 56.5 s of speech in windows of at most 28 s
    # One task per worker thread (the test cluster has 2), each decoding its windows in one batch.
    assert f"Grouped {windows} window(s) into 2 task(s)" in log
    assert "transcribe: 2 parallel tasks" in log
    assert [m for m in log if re.fullmatch(r"transcribe: \d+/\d+ done", m)] == ["transcribe: 1/2 done", "transcribe: 2/2 done"]
    covered = sorted(m.split()[2] for m in log if m.startswith("Transcribed window "))
    assert covered == ["1–2/3", "3/3"], log
    progress = [p for p, _ in seen]
    assert progress == sorted(progress), "progress went down"
    assert progress[-1] == 1.0
    fanout_at = log.index("transcribe: 2 parallel tasks")
    during = {p for p, n in seen if n > fanout_at and 0 < p < 1}
    assert len(during) >= 2, f"progress did not move while the windows ran: {seen}"

    # The source already is 16 kHz mono PCM WAV: extract_audio used it, wrote no copy.
    assert any("using it as is" in m for m in log), log
    assert not (media_root / "jobs" / done["id"] / "audio").exists()


def test_a_video_with_aac_audio(client: TestClient[Any], media_root: Path, short: sg.Composed) -> None:
    sg.write_video(media_root / "talk.mp4", short.duration, short.audio)
    done = wait_for(client, submit(client, {"source_uri": "talk.mp4"})["id"], timeout=120)
    assert done["status"] == "completed", done["error_message"]
    files = outputs_of(client, done)
    words = check_transcript(json.loads(files["transcript"]), short, max_wer=0.3)
    assert_spoken_at(words, short.utterances[0])  # "The boy ..."
    assert_spoken_at(words, short.utterances[2])  # "The source ..."
    # "A rod ...": tiny.en hears the short "A" as "The" or drops it; "rod" follows it by ~0.2 s.
    rod = [w["start"] for w in words if sg.normalize(w["word"]) == ["rod"]]
    assert len(rod) == 1 and short.utterances[1].start - 0.1 <= rod[0] <= short.utterances[1].start + 0.5, rod
    check_captions(files, words)
    # 48 kHz stereo AAC is not what Whisper reads: it was converted, in the job's folder, which holds
    # only intermediates here (the outputs are the transcript files) and went when the job ended.
    log = messages(done)
    assert any(m.startswith("Extracted ") and "16000 Hz mono audio" in m for m in log), log
    assert not any("using it as is" in m for m in log)
    # (They go just after the job is marked completed: wait for that.)
    folder = media_root / "jobs" / done["id"]
    wait_until(lambda: not (folder / "audio").exists(), 10, "the extracted audio to be deleted")
    assert len([p for p in folder.rglob("*") if p.is_file()]) == len(OUTPUT_KINDS)


def test_transcribe_chained_from_ingest_reuses_its_audio(client: TestClient[Any], media_root: Path,
                                                         short: sg.Composed) -> None:
    sg.write_video(media_root / "clip.mp4", short.duration, short.audio)
    ingest = wait_for(client, submit(client, {"source_uri": "clip.mp4", "transcript": True}, "ingest")["id"],
                      timeout=120)
    assert ingest["status"] == "completed", ingest["error_message"]
    audio = ingest["result_payload"]["outputs"]["audio"]
    chained = ingest["result_payload"]["chained_jobs"]["transcribe"]
    done = wait_for(client, chained, timeout=120)
    assert done["status"] == "completed", done["error_message"]
    assert done["payload"]["source_asset_id"] == audio["id"]

    log = messages(done)
    assert any("using it as is" in m for m in log), log
    assert not (media_root / "jobs" / chained / "audio").exists(), "ingest's WAV was converted again"
    files = outputs_of(client, done)
    words = check_transcript(json.loads(files["transcript"]), short, max_wer=0.3)
    assert_spoken_at(words, short.utterances[2])


def test_silence_only_is_an_empty_transcript(client: TestClient[Any], media_root: Path) -> None:
    sg.write_wav(media_root / "quiet.wav", np.zeros(4 * sg.RATE, np.float32))
    done = wait_for(client, submit(client, {"source_uri": "quiet.wav"})["id"], timeout=60)
    assert done["status"] == "completed", done["error_message"]
    files = outputs_of(client, done)
    doc = json.loads(files["transcript"])
    assert doc == {"language": "en", "duration": pytest.approx(4.0, abs=0.01), "segments": []}
    assert parse_srt(files["srt"].decode()) == [] and parse_vtt(files["vtt"].decode()) == []
    assert files["text"] == b""
    assert any(m.startswith("Planned 0 window(s)") for m in messages(done)), messages(done)


def test_a_video_without_audio_fails_with_a_readable_message(client: TestClient[Any], media_root: Path) -> None:
    sg.write_video(media_root / "mute.mp4", 1.0)
    done = wait_for(client, submit(client, {"source_uri": "mute.mp4"})["id"], timeout=60)
    assert done["status"] == "failed"
    message = done["error_message"]
    assert "no audio" in message and "Traceback" not in message and len(message) < 300, message
    assert "outputs" not in (done["result_payload"] or {})


def test_a_corrupt_file_fails_in_words_without_an_errno_or_a_path(client: TestClient[Any], media_root: Path) -> None:
    (media_root / "noise.m4a").write_bytes(bytes(range(256)) * 40)  # bytes, not media
    done = wait_for(client, submit(client, {"source_uri": "noise.m4a"})["id"], timeout=60)
    assert done["status"] == "failed"
    message = done["error_message"]
    assert "could not be read as media: it is truncated or corrupt" in message, message
    assert "Errno" not in message and str(media_root) not in message and "/tmp" not in message, message
    # The speech reader's own check says the same, in words (FFmpeg's text holds an errno and the cache path).
    with pytest.raises(MediaError) as info:
        decode_range(media_root / "noise.m4a", 0.0, 1.0)
    assert str(info.value).startswith("'noise.m4a' could not be read as media: it is truncated or corrupt")
    assert "Errno" not in str(info.value) and str(media_root) not in str(info.value)


def test_a_folder_that_is_not_a_model_is_refused_at_submit(client: TestClient[Any], media_root: Path,
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sg.write_wav(media_root / "hello.wav", sg.espeak(sg.SENTENCES[0]))
    models = tmp_path / "models"
    folder = models / "not_a_model"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("hello")
    monkeypatch.setenv("MODELS_DIR", str(models))
    # A folder in MODELS_DIR that is not a model, one outside it, a path out of it: the same answer, which
    # says nothing of the server's folders or files (issue 12).
    for name in ("not_a_model", str(folder), str(tmp_path), "../models/not_a_model", "/etc"):
        response = client.post("/jobs/?job_type=transcribe",
                               json={"project_id": "p", "source_uri": "hello.wav", "model": name})
        assert response.status_code == 422, response.text
        detail = response.json()["detail"]
        assert detail[0]["loc"] == ["body", "model"]
        assert "model: Value error, Unknown Whisper model" in detail[0]["msg"]
        message = detail[0]["msg"].replace(name, "<name>")
        assert "model.bin" not in message and str(tmp_path) not in message and "not a CTranslate2" not in message
    assert client.get("/jobs/?job_type=transcribe").json() == [], "a refused job must not be stored"

    response = client.post("/jobs/?job_type=transcribe",
                           json={"project_id": "p", "source_uri": "hello.wav", "model": "large-v3"})
    assert response.status_code == 422 and "never downloaded" in response.json()["detail"][0]["msg"]


def test_a_model_folder_that_does_not_load_fails_the_job(client: TestClient[Any], media_root: Path,
                                                        tmp_path: Path, dask_cluster: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # The files are all there (so it passes the submit check) but model.bin is not a model.
    import os

    from distributed import Client

    sg.write_wav(media_root / "hello.wav", sg.espeak(sg.SENTENCES[0]))
    models = tmp_path / "models"
    folder = models / "broken_model"
    folder.mkdir(parents=True)
    bundled = Path(resolve_model("tiny.en"))
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(bundled / name, folder / name)
    (folder / "model.bin").write_bytes(b"this is not a CTranslate2 model" * 100)
    monkeypatch.setenv("MODELS_DIR", str(models))  # the API server (this process) and the workers:
    with Client(dask_cluster) as workers:
        where = str(models)
        workers.run(lambda: os.environ.__setitem__("MODELS_DIR", where))  # a lambda: the worker's os.environ
        try:
            done = wait_for(client, submit(client, {"source_uri": "hello.wav", "model": "broken_model"})["id"],
                            timeout=90)
        finally:
            workers.run(lambda: os.environ.pop("MODELS_DIR", None))
    assert done["status"] == "failed"
    message = done["error_message"]
    assert message.startswith("Could not load the Whisper model"), message
    assert message.endswith("(step 'transcribe', part 1 of 1)"), message
    assert str(folder) in message and "Traceback" not in message


# --- extract_audio's reuse, at the operator ------------------------------------------


@pytest.mark.parametrize(
    ("rate", "channels", "reused"),
    [(16000, 1, True), (48000, 1, False), (16000, 2, False)],
)
def test_extract_audio_keeps_only_a_wav_that_already_fits(tmp_path: Path, rate: int, channels: int, reused: bool) -> None:
    tone = (0.2 * np.sin(2 * np.pi * 300 * np.arange(rate) / rate)).astype(np.float32)
    pcm = (tone * 32767).astype(np.int16)
    layout = "mono" if channels == 1 else "stereo"
    with av.open(str(tmp_path / "in.wav"), "w", format="wav") as out:
        stream = out.add_stream("pcm_s16le", rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.repeat(pcm[None, :], channels, axis=0).T.reshape(1, -1).copy(),
                                           format="s16", layout=layout)
        frame.sample_rate, frame.pts = rate, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    ctx = OpContext(job_id="job_x", node="audio", storage=Storage(str(tmp_path)))
    source = SourceRef(path="in.wav")
    info = probe(source, ctx=ctx)
    out = extract_audio(source, info, params=ExtractAudioParams(reuse_source=True), ctx=ctx)
    assert (out.path == "in.wav") is reused
    assert (tmp_path / "jobs" / "job_x" / "audio").exists() is not reused
    assert out.meta["sample_rate"] == 16000 and out.meta["channels"] == 1
    assert out.meta["duration"] == pytest.approx(1.0, abs=0.01)
    assert out.size == (tmp_path / out.path).stat().st_size
    # Off (ingest's default), even a fitting WAV is written into the job's folder.
    copy = extract_audio(source, info, params=ExtractAudioParams(), ctx=ctx)
    assert copy.path == "jobs/job_x/audio/16k_mono.wav"
    if reused:  # what was kept is sample for sample what would have been written
        assert np.array_equal(sg.decode_16k(tmp_path / copy.path), sg.decode_16k(tmp_path / out.path))
