"""The export job end to end, through the HTTP API: every delivery downloaded and checked with PyAV.

Real Redis, a real Dask LocalCluster and tiny generated media (a few seconds at 320x180 or less,
so AV1 and HEVC stay fast). Each file is fetched from ``GET /assets/{id}/content`` and checked
independently: frame counts, durations, A/V drift, codecs and tags, loudness with libavfilter's
``ebur128``, the HLS package with ``m3u8`` and a decode of every segment, timeline files read
back with OpenTimelineIO.
"""

from __future__ import annotations

import asyncio
import io
import json
import posixpath
import re
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import av
import m3u8
import pytest
from litestar.testing import TestClient
from redis import asyncio as aioredis

from operators.export.loudness import measure_file
from operators.export.otio.timelines import read_back, summary
from scheduler.records.assets import AssetStore
from scheduler.records.clip_versions import ClipVersionStore
from scheduler.settings import Settings
from tests.conftest import wait_for
from tests.mediagen import make_clip, make_indexed_clip

PROJECT = "proj_export"
UNFRIENDLY = re.compile(r"Traceback|File \"|\b\w*(Error|Exception)\b")


def _upload(client: TestClient[Any], data: bytes, name: str) -> str:
    response = client.post(f"/assets/?project_id={PROJECT}&filename={name}", content=data)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _post(client: TestClient[Any], body: dict[str, Any], query: str = "") -> Any:
    return client.post(f"/jobs/?job_type=export{query}", json={"project_id": PROJECT, **body})


def _run(client: TestClient[Any], body: dict[str, Any], query: str = "", timeout: float = 180) -> dict[str, Any]:
    response = _post(client, body, query)
    assert response.status_code == 202, response.text
    job = wait_for(client, response.json()["id"], timeout=timeout)
    assert job["status"] == "completed", job["error_message"]
    return job


def _fetch(client: TestClient[Any], record: dict[str, Any], folder: Path, name: str | None = None) -> Path:
    content = client.get(record["url"])
    assert content.status_code == 200 and len(content.content) == record["size"] > 0
    path = folder / (name or record["filename"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.content)
    return path


def _streams(path: Path) -> dict[str, Any]:
    """Independent facts about a file: codecs, tag, frames decoded, spans, sample rate, moov first."""
    facts: dict[str, Any] = {}
    with av.open(str(path)) as c:
        if c.streams.video:
            v = c.streams.video[0]
            facts.update(video=v.codec_context.name, tag=v.codec_tag, profile=v.codec_context.profile,
                         size=(v.codec_context.width, v.codec_context.height))
        if c.streams.audio:
            a = c.streams.audio[0]
            facts.update(audio=a.codec_context.name, rate=a.codec_context.sample_rate)
    with av.open(str(path)) as c:
        if c.streams.video:
            facts["frames"] = sum(1 for _ in c.decode(video=0))
    with av.open(str(path)) as c:
        if c.streams.audio:
            frames = list(c.decode(audio=0))
            facts["audio_seconds"] = sum(f.samples for f in frames) / frames[0].sample_rate
    data = path.read_bytes()
    facts["moov_first"] = 0 <= data.find(b"moov") < data.find(b"mdat")
    return facts


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("export")
    return {
        "clip": make_clip(folder / "c.mp4", seconds=4.0, size=(320, 180), fps="30000/1001", gop=30).read_bytes(),
        "silent": make_clip(folder / "s.mp4", seconds=1.0, size=(160, 96), fps="25", audio=False).read_bytes(),
        "indexed": make_indexed_clip(folder / "i.mp4", 90, "30000/1001", audio=True).read_bytes(),
    }


def test_every_delivery_format_of_a_source(client: TestClient[Any], media: dict[str, bytes], tmp_path: Path) -> None:
    source = _upload(client, media["clip"], "talk.mp4")
    presets = ["mp4-720p", "hevc-1080p", "webm-1080p", "av1-1080p", "gif", "audio-mp3", "audio-wav",
               {"name": "hls", "ladder": [180, 144], "segment_seconds": 2, "gop_seconds": 1},
               {"name": "square", "base": "mp4-720p", "width": 144, "height": 144, "fit": "cover", "max_fps": 15}]
    job = _run(client, {"source_asset_id": source, "presets": presets, "chunk_seconds": 2})
    out = job["result_payload"]["outputs"]
    frames = 120  # 4 s at 29.97
    log = [e["message"] for e in job["result_payload"]["log"]]

    mp4 = _streams(_fetch(client, out["mp4-720p"], tmp_path))
    assert (mp4["video"], mp4["profile"], mp4["audio"], mp4["rate"], mp4["frames"]) == ("h264", "High", "aac", 48000, frames)
    assert mp4["moov_first"] and abs(mp4["audio_seconds"] - 4.0) < 1 / 29.97
    hevc = _streams(_fetch(client, out["hevc-1080p"], tmp_path))
    assert (hevc["video"], hevc["tag"], hevc["frames"]) == ("hevc", "hvc1", frames)
    for name, codec in (("webm-1080p", "vp9"), ("av1-1080p", "av1")):
        facts = _streams(_fetch(client, out[name], tmp_path))
        assert facts["video"] in (codec, "libdav1d", "libvpx-vp9") and facts["audio"] in ("opus", "libopus"), facts
        assert facts["frames"] == frames and out[name]["content_type"] == "video/webm"
    square = _streams(_fetch(client, out["custom"]["square"], tmp_path))
    assert square["size"] == (144, 144) and square["frames"] == 60  # 29.97 capped at 15 -> 14.985 fps
    for name in ("mp4-720p", "hevc-1080p", "webm-1080p", "av1-1080p", "audio-mp3", "audio-wav"):
        local = _fetch(client, out[name], tmp_path, f"loud-{name}")
        measured = measure_file(local)
        assert abs(measured["integrated"] + 14) <= 1 and measured["true_peak"] < -1, (name, measured)
    loudness = out["loudness"]
    assert loudness["target"] == -14 and loudness["input"]["integrated"] < -18  # the sine is quieter
    assert set(loudness["outputs"]) >= {"mp4-720p", "webm-1080p", "audio-wav", "hls"}
    assert _streams(_fetch(client, out["audio-wav"], tmp_path))["audio"] == "pcm_s16le"
    assert abs(_streams(_fetch(client, out["audio-mp3"], tmp_path))["audio_seconds"] - 4.0) < 0.1

    gif = out["gif"]
    assert gif["content_type"] == "image/gif" and gif["size"] < 15_000_000
    with av.open(io.BytesIO(client.get(gif["url"]).content)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 60 == gif["meta"]["frame_count"]  # 4 s at 14.985 fps
    assert gif["meta"]["fps"] == "15000/1001" and gif["width"] == 320

    _check_hls(client, out, tmp_path / "hls", frames)
    assert any("Export plan: 9 presets" in m for m in log), log


def _fetch_by_url(client: TestClient[Any], url: str, uri: str, root: Path) -> set[str]:
    """Every file a playlist at ``url`` names, fetched at the URL its relative URI resolves to (RFC 3986, as
    hls.js and AVPlayer resolve it), saved under ``root`` by URI; the URIs fetched."""
    fetched: set[str] = set()
    text = client.get(url).text
    for line in text.splitlines():
        found = re.findall(r'URI="([^"]+)"', line) if line.startswith("#") else [line.strip()] if line.strip() else []
        for child in found:
            child_uri = posixpath.normpath(posixpath.join(posixpath.dirname(uri), child))
            response = client.get(urljoin(url, child))
            assert response.status_code == 200, (urljoin(url, child), response.status_code)
            (root / child_uri).parent.mkdir(parents=True, exist_ok=True)
            (root / child_uri).write_bytes(response.content)
            fetched.add(child_uri)
            if child.endswith(".m3u8"):
                fetched |= _fetch_by_url(client, urljoin(url, child), child_uri, root)
    return fetched


def _check_hls(client: TestClient[Any], out: dict[str, Any], root: Path, frames: int) -> None:
    master = out["hls"]
    assert master["content_type"] == "application/vnd.apple.mpegurl"
    _fetch(client, master, root, "master.m3u8")
    listed = {record["meta"]["uri"] for record in out["hls_files"]["hls"]}  # every file of the package is an asset
    # The package plays from the master's URL: each URI a playlist names, resolved as a player resolves it.
    fetched = _fetch_by_url(client, master["url"], "master.m3u8", root)
    assert fetched == listed - {"master.m3u8"}, (fetched, listed)
    for record in out["hls_files"]["hls"]:  # and each file's own asset holds the same bytes
        if record["meta"]["uri"] != "master.m3u8":
            assert client.get(record["url"]).content == (root / record["meta"]["uri"]).read_bytes()
    playlist = m3u8.load(str(root / "master.m3u8"))
    assert [p.stream_info.resolution for p in playlist.playlists] == [(320, 180), (256, 144)]
    assert all(p.stream_info.bandwidth > 0 and p.stream_info.codecs.startswith("avc1.64") and
               "mp4a.40.2" in p.stream_info.codecs for p in playlist.playlists)
    assert playlist.media[0].type == "AUDIO"
    cuts = []
    for variant in playlist.playlists:
        media = m3u8.load(str(root / variant.uri))
        base = (root / variant.uri).parent
        init = (base / media.segment_map[0].uri).read_bytes()
        count, keys, starts, t = 0, [], [], 0.0
        for seg in media.segments:
            starts.append(round(t, 3))
            t += seg.duration
            with av.open(io.BytesIO(init + (base / seg.uri).read_bytes())) as c:
                decoded = list(c.decode(video=0))
                assert decoded and decoded[0].key_frame, seg.uri
                count += len(decoded)
                keys += [round(f.time, 3) for f in decoded if f.key_frame]
        assert count == frames and abs(t - frames * 1001 / 30000) < 1 / 29.97
        assert all(1.0 <= s.duration <= 3.0 for s in media.segments[:-1])
        cuts.append((starts, keys))
    assert cuts[0] == cuts[1]  # the variants' segments and keyframes line up


def test_a_source_without_audio_completes_and_says_why_loudness_was_skipped(
        client: TestClient[Any], media: dict[str, bytes], tmp_path: Path) -> None:
    source = _upload(client, media["silent"], "silent.mp4")
    job = _run(client, {"source_asset_id": source, "presets": ["mp4-720p", "audio-mp3"]})
    out = job["result_payload"]["outputs"]
    log = [e["message"] for e in job["result_payload"]["log"]]
    assert "Loudness: skipped, the source has no audio stream to normalise" in log
    assert any("audio-mp3: nothing to export, the source has no audio stream" in m for m in log), log
    assert out["audio-mp3"] is None and out["loudness"] is None and out["hls"] is None
    facts = _streams(_fetch(client, out["mp4-720p"], tmp_path))
    assert facts["frames"] == 25 and "audio" not in facts


def _store(settings: Settings, call: Any) -> Any:
    async def run() -> Any:
        redis = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
        try:
            return await call(AssetStore(redis), ClipVersionStore(redis))
        finally:
            await redis.aclose()

    return asyncio.run(run())


def _transcript(settings: Settings, words: list[tuple[str, float, float]]) -> str:
    body = {"language": "en", "duration": 3.0, "segments": [{
        "start": words[0][1], "end": words[-1][2], "text": " ".join(w for w, _, _ in words),
        "words": [{"word": w, "start": s, "end": e, "probability": 0.9} for w, s, e in words]}]}
    root = settings.data_dir / "media" / "transcripts"
    root.mkdir(parents=True, exist_ok=True)
    (root / "e.json").write_text(json.dumps(body))
    return str(_store(settings, lambda assets, _: assets.create(
        path="transcripts/e.json", kind="transcript", project_id=PROJECT, content_type="application/json",
        size=len(json.dumps(body))))["id"])


def test_a_clip_version_without_a_render_is_rendered_then_exported_with_timelines_and_captions(
        client: TestClient[Any], settings: Settings, media: dict[str, bytes], tmp_path: Path) -> None:
    indexed = _upload(client, media["indexed"], "interview.mp4")
    transcript = _transcript(settings, [("hello", 0.2, 0.5), ("cut", 1.2, 1.4), ("world", 2.1, 2.5)])
    timeline = {
        "canvas": {"width": 160, "height": 96, "fps": "30000/1001"},
        "tracks": [{"type": "video", "clips": [{"asset": indexed, "in": 0, "out": 1.0, "fit": "fill"},
                                               {"asset": indexed, "in": 2.0, "out": 3.0, "fit": "fill"}]},
                   {"type": "captions", "transcript": transcript}],
    }
    created = client.post("/clip-versions/", json={"project_id": PROJECT, "name": "Short 1", "timeline": timeline})
    assert created.status_code == 201, created.text
    cv = created.json()["id"]
    job = _run(client, {"presets": ["mp4-720p"], "timeline_formats": ["otio", "fcpxml", "fcp7xml", "edl"]},
               f"&clip_version_id={cv}")
    out = job["result_payload"]["outputs"]
    log = [e["message"] for e in job["result_payload"]["log"]]
    assert out["render"] is not None and any(m.startswith("render_join done") for m in log), log
    assert _streams(_fetch(client, out["mp4-720p"], tmp_path))["frames"] == 60
    # Timeline files: the same clips, in/out (frames at the source's 29.97) and order, read back with OTIO.
    expected = [[("interview.mp4", 0, 30), ("interview.mp4", 60, 30)]]
    for fmt, record in out["timelines"].items():
        text = client.get(record["url"]).text
        assert summary(read_back(text, fmt, 30000 / 1001)) == expected, fmt
    edl = client.get(out["timelines"]["edl"]["url"]).text
    assert "00:00:02;00" in edl and "TITLE: Short 1" in edl  # drop-frame timecode at 29.97
    assert "<displayformat>DF</displayformat>" in client.get(out["timelines"]["fcp7xml"]["url"]).text
    # Captions on the output's timeline: "cut" (source 1.2-1.4 s) is cut out; "world" (2.1-2.5 s) plays
    # 1.001 s (30 frames) into the output, 0.1 s into the second clip: it ends at 1.501 s.
    srt = client.get(out["captions"]["srt"]["url"]).text
    vtt = client.get(out["captions"]["vtt"]["url"]).text
    assert "hello world" in srt and "cut" not in srt and vtt.startswith("WEBVTT")
    assert "00:00:00,200 --> 00:00:01,501" in srt and "00:00:00.200 --> 00:00:01.501" in vtt, srt
    exports = client.get(f"/clip-versions/{cv}").json()["exports"]
    assert [e["job_id"] for e in exports] == [job["id"]]
    assert exports[0]["outputs"]["mp4-720p"]["id"] == out["mp4-720p"]["id"]
    assert set(exports[0]["outputs"]["timelines"]) == {"otio", "fcpxml", "fcp7xml", "edl"}


def test_a_clip_version_with_a_render_exports_its_latest_render(client: TestClient[Any], settings: Settings,
                                                                  media: dict[str, bytes]) -> None:
    clip = _upload(client, media["clip"], "a.mp4")
    render = _upload(client, media["silent"], "render.mp4")
    timeline = {"canvas": {"width": 160, "height": 96, "fps": 25},
                "tracks": [{"type": "video", "clips": [{"asset": clip, "in": 0, "out": 1}]}]}
    cv = client.post("/clip-versions/", json={"project_id": PROJECT, "timeline": timeline}).json()["id"]
    _store(settings, lambda _, versions: versions.append_output(cv, "renders", {
        "job_id": "job_render", "outputs": {"video": {"id": render}}}))
    job = _run(client, {"presets": ["mp4-720p"], "captions": False}, f"&clip_version_id={cv}")
    log = [e["message"] for e in job["result_payload"]["log"]]
    assert any(m.startswith("render_plan: skipped") for m in log) and job["result_payload"]["outputs"]["render"] is None
    assert job["result_payload"]["outputs"]["mp4-720p"]["meta"]["frame_count"] == 25  # the render's, not the clip's


@pytest.mark.parametrize(("body", "loc", "words"), [
    ({"presets": ["mp4-1080"]}, ["presets", 0], "Did you mean 'mp4-1080p'"),
    ({"presets": ["gif", {"name": "small", "base": "mp4-720p", "width": 641}]}, ["presets", 1, "width"], "even"),
    ({"presets": [{"name": "slow", "base": "mp4-720p", "fps": 0}]}, ["presets", 0, "fps"], "fps"),
    ({"presets": [{"name": "gif", "duration": 75}]}, ["presets", 0, "duration"], "at most 60"),
    ({"presets": [{"name": "x", "format": "webm", "video_codec": "h264"}]}, ["presets", 0], "cannot hold h264"),
    ({"presets": ["gif", "gif"]}, ["presets"], "listed twice"),
    ({"loudness": {"target": 3}}, ["loudness", "target"], "less than or equal"),
    ({"timeline_formats": ["premiere"]}, ["timeline_formats", 0], "unknown timeline format"),
    ({"timeline_formats": ["edl"]}, ["timeline_formats"], "needs timeline"),
])
def test_bad_presets_and_options_are_422_naming_the_field(client: TestClient[Any], media: dict[str, bytes],
                                                         body: dict[str, Any], loc: list[Any], words: str) -> None:
    source = _upload(client, media["silent"], "s.mp4")
    response = _post(client, {"source_asset_id": source, **body})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    match = [d for d in detail if d["loc"] == ["body", *loc]]
    assert match and words in match[0]["msg"], detail


def test_nothing_to_export_is_422(client: TestClient[Any], settings: Settings, media: dict[str, bytes]) -> None:
    response = _post(client, {"presets": ["mp4-720p"]})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "source_uri"]
    # A clip version with no render and no timeline (as a broken import could leave one).
    cv = _store(settings, lambda _, versions: versions.create(project_id=PROJECT, timeline={}))["id"]
    response = _post(client, {"presets": ["mp4-720p"]}, f"&clip_version_id={cv}")
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "source_uri"] and "clip version has neither" in detail["msg"], detail
    assert not UNFRIENDLY.search(detail["msg"])


def test_the_export_inputs_are_published(client: TestClient[Any]) -> None:
    graph = client.get("/graphs/export").json()
    assert {"presets", "loudness", "timeline_formats", "source", "timeline"} <= set(graph["inputs"])
    assert graph["clip_version"]["append"] == "exports" and "mp4-1080p" in graph["outputs"]
    components = client.get("/schema/openapi.json").json()["components"]["schemas"]
    assert {"ExportPresets", "ExportPreset", "LoudnessTarget", "TimelineFormats"} <= set(components)
