"""The ingest job end to end, through the HTTP API only.

Real Redis, a real Dask LocalCluster and real media (PyAV lavfi sources, espeak-ng speech):
every check reads what a client would read — the job record, the asset records and the
downloaded bytes — and verifies the proxies by decoding them independently with PyAV.
"""

from __future__ import annotations

import io
import json
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest
from litestar.testing import TestClient

from tests import speechgen as sg
from tests.conftest import wait_for
from tests.mediagen import make_audio_only, make_clip, make_text, make_truncated

ASSET_KEYS = {"id", "kind", "content_type", "size"}
# What must never reach a person: traceback text or a Python class name.
UNFRIENDLY = re.compile(r"Traceback|File \"|\b\w*(Error|Exception)\b|\bline \d+\b")
# Fast settings for tiny clips; the job's behaviour does not depend on them.
FAST = {"preset": "ultrafast", "crf": 30, "audio_bitrate": 64000}


# -- helpers -----------------------------------------------------------------------------------


def _run(client: TestClient[Any], payload: dict[str, Any], **wait: Any) -> dict[str, Any]:
    response = client.post("/jobs/?job_type=ingest", json={"project_id": "proj_e2e", **FAST, **payload})
    assert response.status_code == 202, response.text
    return wait_for(client, response.json()["id"], timeout=90, **wait)


def _upload(client: TestClient[Any], path: Path, content_type: str) -> dict[str, Any]:
    with path.open("rb") as fh:
        response = client.post("/assets/?project_id=proj_e2e", files={"file": (path.name, fh, content_type)})
    assert response.status_code == 201, response.text
    return response.json()


def _asset_bytes(client: TestClient[Any], record: dict[str, Any]) -> bytes:
    """Check that an output is a real asset (metadata and content) and return its bytes."""
    assert ASSET_KEYS <= set(record), record
    assert re.match(r"^asset_[0-9a-f]+$", record["id"])
    meta = client.get(f"/assets/{record['id']}")
    assert meta.status_code == 200, meta.text
    assert meta.json()["kind"] == record["kind"] and meta.json()["size"] == record["size"]
    content = client.get(f"/assets/{record['id']}/content")
    assert content.status_code == 200
    assert content.headers["content-type"].startswith(record["content_type"])
    assert len(content.content) == record["size"] > 0
    return content.content


def _decode(data: bytes) -> dict[str, Any]:
    """Frames and stream spans of a media file, decoded with PyAV (independent of the operators)."""
    result: dict[str, Any] = {"frames": 0, "audio_samples": 0}
    with av.open(io.BytesIO(data)) as container:
        if container.streams.video:
            stream = container.streams.video[0]
            pts = [f.pts for f in container.decode(stream)]
            tb = stream.time_base
            step = min(b - a for a, b in zip(sorted(pts), sorted(pts)[1:], strict=False))
            result.update(frames=len(pts), video_start=float(min(pts) * tb), video_end=float((max(pts) + step) * tb),
                          fps=stream.average_rate, width=stream.codec_context.width, height=stream.codec_context.height)
    with av.open(io.BytesIO(data)) as container:
        if container.streams.audio:
            stream = container.streams.audio[0]
            frames = list(container.decode(stream))
            samples = sum(f.samples for f in frames)
            start = float(frames[0].pts * stream.time_base)
            result.update(audio_samples=samples, audio_start=start, audio_end=start + samples / stream.sample_rate,
                          audio_codec=stream.codec_context.name)
    return result


def _top_level_boxes(data: bytes) -> list[str]:
    """MP4 top-level box types in file order (size-prefixed boxes, 64-bit sizes handled)."""
    boxes, pos = [], 0
    while pos + 8 <= len(data):
        size, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8].decode("latin-1")
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        elif size == 0:
            size = len(data) - pos
        boxes.append(kind)
        pos += size
    return boxes


def _assert_friendly_failure(done: dict[str, Any]) -> str:
    assert done["status"] == "failed", done
    message = done["error_message"]
    assert isinstance(message, str) and len(message) > 10
    assert not UNFRIENDLY.search(message), message
    assert done["completed_at"] is not None
    return message


# -- tests -----------------------------------------------------------------------------------


def test_outputs_are_verified_assets_with_progress(client: TestClient[Any], tmp_path: Path) -> None:
    """29.97 fps with B-frames and audio, uploaded, in several chunks, at two renditions."""
    clip = make_clip(tmp_path / "clip.mp4", seconds=6.0, size=(160, 120), fps="30000/1001", gop=15, bframes=True)
    source = _decode(clip.read_bytes())
    assert source["frames"] == 180 and source["audio_samples"] > 0
    uploaded = _upload(client, clip, "video/mp4")
    assert "media_info" not in client.get(f"/assets/{uploaded['id']}").json()

    seen: list[dict[str, Any]] = []
    done = _run(client, {"source_asset_id": uploaded["id"], "renditions": [120, 96], "chunk_seconds": 1},
                seen=lambda r: seen.append(r))
    assert done["status"] == "completed", done["error_message"]
    result = done["result_payload"]
    outputs = result["outputs"]
    assert {"media_info", "proxy", "poster", "sprite", "audio", "waveform"} <= set(outputs)
    # Every output remembers what it was made from (a transcript of the audio can be traced to the video).
    assert client.get(f"/assets/{outputs['audio']['id']}").json()["derived_from"] == [uploaded["id"]]

    # Progress moved per chunk: non-decreasing, with values strictly between 0 and 1 seen.
    progress = [r["result_payload"]["progress"] for r in seen if r.get("result_payload")]
    assert progress == sorted(progress), progress
    assert any(0 < p < 1 for p in progress), progress
    assert result["progress"] == 1.0
    messages = [e["message"] for e in result["log"]]
    # One log line per chunk as it finishes: 6 s at 1 s chunks (a keyframe every 0.5 s) is 6 chunks. (6 s, not
    # 3: the progress written every 0.2 s must be seen between 0 and 1 even when the chunks encode fast.)
    assert "Split 180 frames into 6 chunks of ~1s" in messages, messages
    assert [m for m in messages if m.startswith("transcode: ") and m.endswith(" done")] == [
        f"transcode: {k}/6 done" for k in range(1, 7)], messages
    assert any(m.startswith("Probed ") for m in messages)
    # The source's 128 kb/s AAC is above the 64 kb/s asked for: re-encoded, not copied.
    assert any(m.startswith("Encoded the audio track to aac 64 kb/s") for m in messages), messages

    # media_info, also kept on the source asset once probed.
    info = outputs["media_info"]
    video = next(s for s in info["streams"] if s["type"] == "video")
    assert video["frame_count"] == 180 and video["fps_fraction"] == "30000/1001" and video["has_b_frames"]
    source_asset = client.get(f"/assets/{uploaded['id']}").json()
    assert source_asset["media_info"] == info

    # Two renditions, each an asset with its height, each exact and in sync.
    proxies = outputs["proxy"]
    assert isinstance(proxies, list) and len(proxies) == 2
    assert sorted(p["meta"]["height"] for p in proxies) == [96, 120]
    assert all(p["height"] == p["meta"]["height"] and p["width"] == p["meta"]["width"] for p in proxies)
    for record in proxies:
        assert record["kind"] == "proxy" and record["content_type"] == "video/mp4"
        data = _asset_bytes(client, record)
        got = _decode(data)
        assert got["height"] == record["meta"]["height"] and got["audio_codec"] == "aac"
        assert got["frames"] == source["frames"], (record["meta"], got["frames"])
        assert got["fps"] == Fraction(30000, 1001)
        frame = 1001 / 30000
        # A/V drift: the audio's offset from the video, at both ends, is the source's within a frame.
        for edge in ("start", "end"):
            drift = (got[f"audio_{edge}"] - got[f"video_{edge}"]) - (source[f"audio_{edge}"] - source[f"video_{edge}"])
            assert abs(drift) < frame, (edge, drift)
        boxes = _top_level_boxes(data)
        assert "moov" in boxes and "mdat" in boxes and boxes.index("moov") < boxes.index("mdat"), boxes

    # A Range request on the proxy: the exact bytes, with the range headers.
    record = next(p for p in proxies if p["meta"]["height"] == 120)
    whole = client.get(f"/assets/{record['id']}/content").content
    part = client.get(f"/assets/{record['id']}/content", headers={"Range": "bytes=100-1123"})
    assert part.status_code == 206
    assert part.headers["accept-ranges"] == "bytes"
    assert part.headers["content-range"] == f"bytes 100-1123/{record['size']}"
    assert part.content == whole[100:1124]

    # Poster, sprite, speech audio and waveform: assets with the right content.
    poster = outputs["poster"]
    assert poster["kind"] == "poster" and poster["content_type"] == "image/jpeg"
    assert _asset_bytes(client, poster)[:3] == b"\xff\xd8\xff"
    sprite = outputs["sprite"]
    assert sprite["kind"] == "sprite" and sprite["content_type"] == "image/jpeg"
    assert _asset_bytes(client, sprite)[:3] == b"\xff\xd8\xff"
    audio = outputs["audio"]
    wav = _asset_bytes(client, audio)
    assert wav[:4] == b"RIFF" and audio["content_type"].startswith("audio/")
    with av.open(io.BytesIO(wav)) as container:
        assert container.streams.audio[0].sample_rate == 16000 and container.streams.audio[0].channels == 1
    assert len(wav) - 44 == pytest.approx(6.0 * 16000 * 2, rel=0.02)  # 6 s of 16-bit samples
    waveform = outputs["waveform"]
    assert waveform["content_type"] == "application/json"
    peaks = json.loads(_asset_bytes(client, waveform))
    assert peaks["length"] > 0 and len(peaks["data"]) == 2 * peaks["length"]

    # Every output is registered under the project and the job.
    files = [*proxies, poster, sprite, audio, waveform]
    listed = {a["id"] for a in client.get("/assets/?project_id=proj_e2e&limit=100").json()}
    assert {f["id"] for f in files} <= listed
    assert all(client.get(f"/assets/{f['id']}").json()["job_id"] == done["id"] for f in files)


def test_no_audio_source_completes_without_audio_outputs(client: TestClient[Any], media_root: Path) -> None:
    make_clip(media_root / "silent.mp4", seconds=1.5, size=(160, 120), fps="30000/1001", audio=False, bframes=True)
    done = _run(client, {"source_uri": "silent.mp4", "renditions": [120], "transcript": True})
    assert done["status"] == "completed", done["error_message"]
    outputs = done["result_payload"]["outputs"]
    # Documented in graphs/ingest.yaml: no audio stream → audio and waveform are null, and
    # the transcript asked for is not started (nothing to transcribe), which the log says.
    assert outputs["audio"] is None and outputs["waveform"] is None
    assert "chained_jobs" not in done["result_payload"]
    messages = [e["message"] for e in done["result_payload"]["log"]]
    assert "Did not start the transcribe job: $outputs.audio is empty" in messages, messages
    assert not [m for m in messages if "Could not start" in m], messages
    assert outputs["poster"]["kind"] == "poster" and outputs["sprite"]["kind"] == "sprite"
    (proxy,) = outputs["proxy"]
    got = _decode(_asset_bytes(client, proxy))
    assert got["frames"] == 45 and got["audio_samples"] == 0


def test_audio_only_source_completes_with_audio_proxy(client: TestClient[Any], media_root: Path) -> None:
    make_audio_only(media_root / "voice.m4a", seconds=1.5)
    done = _run(client, {"source_uri": "voice.m4a"})
    assert done["status"] == "completed", done["error_message"]
    outputs = done["result_payload"]["outputs"]
    assert not [s for s in outputs["media_info"]["streams"] if s["type"] == "video"]
    # Documented in graphs/ingest.yaml: no video stream → poster and sprite are null.
    assert outputs["poster"] is None and outputs["sprite"] is None
    (proxy,) = outputs["proxy"]
    assert proxy["kind"] == "proxy" and proxy["content_type"] == "audio/mp4"
    got = _decode(_asset_bytes(client, proxy))
    assert got["frames"] == 0 and got["audio_codec"] == "aac"
    assert got["audio_end"] - got["audio_start"] == pytest.approx(1.5, abs=0.05)
    assert _asset_bytes(client, outputs["audio"])[:4] == b"RIFF"
    assert b"peaks" in _asset_bytes(client, outputs["waveform"])


@pytest.mark.parametrize("kind", ["truncated", "truncated_faststart", "truncated_audio_only", "text"])
def test_unreadable_sources_fail_with_a_readable_message(client: TestClient[Any], media_root: Path, kind: str) -> None:
    name = {"text": "notes.mp4", "truncated_audio_only": "cut.m4a"}.get(kind, "cut.mp4")
    if kind == "text":
        make_text(media_root / name)
    elif kind == "truncated_audio_only":
        # The index is first, so it opens; the packets it lists are cut off (an interrupted upload).
        data = make_audio_only(media_root / name, seconds=2.0, faststart=True).read_bytes()
        (media_root / name).write_bytes(data[: len(data) // 2])
    else:
        # Moov at the end: nothing can be read. Faststart: it opens, but its media data is cut off.
        make_truncated(media_root / name, keep=0.5, seconds=1.0, size=(160, 120), fps="30",
                       faststart=kind == "truncated_faststart")
    statuses: list[str] = []
    done = _run(client, {"source_uri": name}, seen=lambda r: statuses.append(r["status"]))
    message = _assert_friendly_failure(done)
    assert ("not audio or video" if kind == "text" else "truncated") in message, message
    # Found by probing, before any encoding work starts (the message names the step).
    assert message.endswith("(step 'probe')"), message
    assert set(statuses) <= {"queued", "in_progress", "failed"} and statuses[-1] == "failed", statuses
    assert "outputs" not in done["result_payload"], done["result_payload"]  # it started (the log), made nothing


def test_transcript_chains_a_transcribe_job(client: TestClient[Any], media_root: Path) -> None:
    """``transcript: true`` starts a transcribe job on the ingest's 16 kHz audio, which completes."""
    speech = None
    if sg.have_espeak():  # `make test` installs it; without it the chain is still checked, on a sine
        speech = sg.compose([0.3, "The birch canoe slid on the smooth planks.", 0.3])
        sg.write_video(media_root / "talk.mp4", seconds=speech.duration, audio=speech.audio)
    else:
        make_clip(media_root / "talk.mp4", seconds=1.0, size=(64, 48), fps="10", bframes=False)
    done = _run(client, {"source_uri": "talk.mp4", "transcript": True, "renditions": [48]})
    assert done["status"] == "completed", done["error_message"]
    chained = done["result_payload"]["chained_jobs"]
    assert set(chained) == {"transcribe"}
    assert f"Started transcribe job {chained['transcribe']}" in [e["message"] for e in done["result_payload"]["log"]]
    transcribe = wait_for(client, chained["transcribe"], timeout=90)
    assert transcribe["status"] == "completed", transcribe["error_message"]
    assert transcribe["job_type"] == "transcribe"
    assert transcribe["payload"] == {"project_id": "proj_e2e",
                                     "source_asset_id": done["result_payload"]["outputs"]["audio"]["id"]}
    text_asset = transcribe["result_payload"]["outputs"]["text"]
    # Lineage crosses the chain: the transcript is of the audio, and so of its video (a source_uri, no asset).
    assert client.get(f"/assets/{text_asset['id']}").json()["derived_from"] == [
        done["result_payload"]["outputs"]["audio"]["id"]]
    assert text_asset["kind"] and text_asset["content_type"].startswith("text/plain")
    response = client.get(f"/assets/{text_asset['id']}/content")  # empty for a sine: no speech
    assert response.status_code == 200 and len(response.content) == text_asset["size"]
    text = response.content.decode()
    if speech is not None:
        # tiny.en hears espeak's voice imperfectly ("The merch can do slid on the smooth clangs."):
        # the point here is that the chained job transcribed this clip's speech, not its accuracy.
        assert sg.wer(speech.text, text) <= 0.6 and "smooth" in sg.normalize(text), text
