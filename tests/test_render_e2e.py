"""The render job through the HTTP API: clip versions, captions, templates, outputs, bad input.

Real Redis, a real Dask LocalCluster, media made by the tests; outputs are downloaded and
decoded independently with PyAV.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from typing import Any

import av
import numpy as np
import pytest
from litestar.testing import TestClient
from redis import asyncio as aioredis

from scheduler.records.assets import AssetStore
from scheduler.settings import Settings
from server.app import create_app
from tests.conftest import wait_for
from tests.mediagen import make_clip, make_indexed_clip, make_text, read_index

PROJECT = "proj_render"
UNFRIENDLY = re.compile(r"Traceback|Errno|File \"|\b\w*(Error|Exception)\b")
FAST = {"preset": "ultrafast", "crf": 30}


def _upload(client: TestClient[Any], data: bytes, name: str, project: str = PROJECT) -> str:
    response = client.post(f"/assets/?project_id={project}&filename={name}", content=data)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("render")
    return {"indexed": make_indexed_clip(folder / "i.mp4", 60, "30", audio=True).read_bytes(),
            "clip": make_clip(folder / "c.mp4", seconds=2.0, size=(320, 180), fps="25").read_bytes(),
            "text": make_text(folder / "t.mp4").read_bytes()}


def _transcript(settings: Settings, words: list[tuple[str, float, float]]) -> str:
    """A transcript asset as transcribe writes one (its JSON, kind ``transcript``)."""
    body = {"language": "en", "duration": 2.0, "segments": [{
        "start": words[0][1], "end": words[-1][2], "text": " ".join(w for w, _, _ in words),
        "words": [{"word": w, "start": s, "end": e, "probability": 0.9} for w, s, e in words]}]}
    root = settings.data_dir / "media" / "transcripts"
    root.mkdir(parents=True, exist_ok=True)
    (root / "t.json").write_text(json.dumps(body))

    async def create() -> str:
        redis = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
        try:
            record = await AssetStore(redis).create(path="transcripts/t.json", kind="transcript", project_id=PROJECT,
                                                    content_type="application/json", size=len(json.dumps(body)))
            return str(record["id"])
        finally:
            await redis.aclose()

    return asyncio.run(create())


def _post(client: TestClient[Any], body: dict[str, Any], query: str = "") -> Any:
    return client.post(f"/jobs/?job_type=render{query}", json={"project_id": PROJECT, "output": FAST, **body})


def _decode(data: bytes) -> tuple[list[np.ndarray], float]:
    with av.open(io.BytesIO(data)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(io.BytesIO(data)) as container:
        samples = sum(f.samples for f in container.decode(audio=0))
    return frames, samples / 48000


def test_render_a_clip_version_and_record_it_downstream(client: TestClient[Any], settings: Settings,
                                                        media: dict[str, bytes]) -> None:
    indexed = _upload(client, media["indexed"], "i.mp4")
    words = [("alpha", 0.1, 0.6), ("beta", 0.7, 1.2)]
    transcript = _transcript(settings, words)
    timeline = {
        "canvas": {"width": 320, "height": 192, "fps": 30},
        "tracks": [
            {"type": "video", "clips": [{"asset": indexed, "in": 0.5, "out": 1.5, "fit": "fill"}]},
            {"type": "text", "clips": [{"text": "{{TITLE}}", "duration": 0.5, "size": 30, "position": "top",
                                                  "color": "#00ff00"}]},
            {"type": "captions", "transcript": transcript, "style": "word-highlight", "size": 40,
             "color": "#ffffff", "highlight_color": "#ff0000", "position": "bottom", "margin": 0.02},
        ],
    }
    created = client.post("/clip-versions/", json={"project_id": PROJECT, "timeline": timeline})
    assert created.status_code == 201, created.text
    cv = created.json()
    response = _post(client, {"merge": {"TITLE": "Big news"}}, f"&clip_version_id={cv['id']}")
    assert response.status_code == 202, response.text
    job = wait_for(client, response.json()["id"], timeout=120)
    assert job["status"] == "completed", job["error_message"]
    outputs = job["result_payload"]["outputs"]
    assert set(outputs) == {"video", "poster", "timeline"}
    video = client.get(outputs["video"]["url"])
    frames, audio_seconds = _decode(video.content)
    assert len(frames) == 30 == outputs["video"]["meta"]["frame_count"]
    assert abs(audio_seconds - 1.0) < 1 / 30
    # Frame k shows source frame 15 + k (in 0.5 s at 30 fps): the index bars, from luma.
    gray = [f.mean(axis=2) for f in frames]
    assert [read_index(g[96:100, :]) for g in gray] == list(range(15, 45))
    # Captions map through the cut: source 0.7-1.2 s ("beta") shows at output 0.2-0.7 s;
    # "alpha" (0.1-0.6 s, midpoint 0.35 s) falls before in = 0.5 s and is cut out.
    red = [int(((f[..., 0] > 200) & (f[..., 1] < 90) & (f[..., 2] < 90))[120:].sum()) for f in frames]
    assert all(red[k] > 20 for k in range(7, 20)), red
    assert all(red[k] == 0 for k in range(0, 5)) and all(red[k] == 0 for k in range(23, 30)), red
    # The title (merge field filled) is green text in the top part during its 0.5 s.
    green_top = [int(((f[:60, :, 1] > 200) & (f[:60, :, 0] < 90) & (f[:60, :, 2] < 90)).sum()) for f in frames]
    assert min(green_top[:14]) > 20 and max(green_top[16:]) == 0, green_top
    resolved = client.get(outputs["timeline"]["url"]).json()
    assert resolved["frames"] == 30 and resolved["timeline"]["tracks"][1]["clips"][0]["text"] == "Big news"
    renders = client.get(f"/clip-versions/{cv['id']}").json()["renders"]
    assert [r["job_id"] for r in renders] == [job["id"]]
    assert renders[0]["outputs"]["video"]["id"] == outputs["video"]["id"]


def test_inline_timeline_with_crossfade_crop_and_music(client: TestClient[Any], media: dict[str, bytes]) -> None:
    clip = _upload(client, media["clip"], "c.mp4")
    music = _upload(client, media["indexed"], "music.mp4")
    timeline = {
        "canvas": {"aspect_ratio": "9:16", "height": 320, "fps": "30000/1001"},
        "tracks": [
            {"type": "video", "clips": [
                {"asset": clip, "in": 0, "out": 1, "crop": {"x": 0.25, "y": 0, "width": 0.5, "height": 1}},
                {"asset": clip, "in": 1, "out": 2, "transition": {"type": "wipeleft", "duration": 0.4}}]},
            {"type": "audio", "clips": [{"asset": music, "out": 1, "volume": "-18dB", "duck": True}]},
        ],
    }
    response = _post(client, {"timeline": timeline, "segment_seconds": 0.5})
    assert response.status_code == 202, response.text
    job = wait_for(client, response.json()["id"], timeout=120)
    assert job["status"] == "completed", job["error_message"]
    video = job["result_payload"]["outputs"]["video"]
    assert (video["width"], video["height"]) == (180, 320)
    frames, audio_seconds = _decode(client.get(video["url"]).content)
    expected = 60 - 12  # two 1 s clips at 29.97 (30 frames each) overlapping by 0.4 s (12 frames)
    assert len(frames) == expected
    assert abs(audio_seconds - expected * 1001 / 30000) < 1001 / 30000
    log = " ".join(e["message"] for e in job["result_payload"]["log"])
    assert "segment: " in log and "Joined" in log


@pytest.mark.parametrize(("mutate", "loc", "words"), [
    (lambda t, a: t["tracks"][0]["clips"].append({"asset": "asset_nope"}), ["tracks", 0, "clips", 1, "asset"], "not found"),
    (lambda t, a: t["tracks"][0]["clips"][0].update({"in": 1, "out": 1}), ["tracks", 0, "clips", 0, "out"], "after in"),
    (lambda t, a: t["tracks"][0]["clips"][0].update({"out": 9}), ["tracks", 0, "clips", 0, "out"], "past the end"),
    (lambda t, a: t.update({"tracks": []}), ["tracks"], "at least 1"),
    (lambda t, a: t.update({"canvas": {"width": 321, "height": 240}}), ["canvas", "width"], "even"),
    (lambda t, a: t.update({"canvas": {"width": 4098, "height": 240}}), ["canvas", "width"], "4096"),
    (lambda t, a: t["tracks"].append({"type": "text", "clips": [{"text": "x", "duration": 1, "font": "asset_nofont"}]}),
     ["tracks", 1, "clips", 0, "font"], "not found"),
    (lambda t, a: t["tracks"].append({"type": "text", "clips": [{"text": "x", "duration": 1, "font": a["text"]}]}),
     ["tracks", 1, "clips", 0, "font"], "not a TrueType"),
    (lambda t, a: t["tracks"].append({"type": "text", "clips": [{"text": "Hi {{NAME}}", "duration": 1}]}),
     ["tracks", 1, "clips", 0, "text"], "NAME"),
    (lambda t, a: t["tracks"][0]["clips"][0].update({"asset": a["other"]}), ["tracks", 0, "clips", 0, "asset"],
     "not found in project"),
])
def test_bad_timelines_are_422_naming_the_path(client: TestClient[Any], media: dict[str, bytes], mutate: Any,
                                               loc: list[Any], words: str) -> None:
    assets = {"clip": _upload(client, media["clip"], "c.mp4"), "text": _upload(client, media["text"], "f.ttf"),
              "other": _upload(client, media["clip"], "c.mp4", project="proj_other")}
    timeline = {"canvas": {"width": 320, "height": 240}, "tracks": [{"type": "video", "clips": [
        {"asset": assets["clip"], "in": 0, "out": 1}]}]}
    mutate(timeline, assets)
    response = _post(client, {"timeline": timeline})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    match = [d for d in detail if d["loc"] == ["body", "timeline", *loc]]
    assert match, detail
    assert words in match[0]["msg"], match


def test_a_timeline_longer_than_max_render_seconds_is_refused(settings: Settings, media: dict[str, bytes]) -> None:
    limited = settings.model_copy(update={"max_render_seconds": 1.5})
    with TestClient(app=create_app(limited), timeout=30) as client:
        clip = _upload(client, media["clip"], "c.mp4")
        timeline = {"tracks": [{"type": "video", "clips": [{"asset": clip}, {"asset": clip}]}]}
        response = _post(client, {"timeline": timeline})
    assert response.status_code == 422, response.text
    assert "at most 1.5s" in response.json()["detail"][0]["msg"]
    assert response.json()["detail"][0]["loc"] == ["body", "timeline", "tracks"]


def test_no_timeline_and_no_clip_version_is_422(client: TestClient[Any]) -> None:
    response = _post(client, {})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "timeline"]
    unknown = _post(client, {}, "&clip_version_id=cv_nope")
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0] == {"loc": ["query", "clip_version_id"], "msg": "Clip version cv_nope not found",
                                           "type": "value_error"}


def test_a_source_damaged_after_submission_fails_naming_the_clip_and_time(
        client: TestClient[Any], settings: Settings, tmp_path: Any) -> None:
    good = make_clip(tmp_path / "d.mp4", seconds=2.0, size=(320, 180), fps="25", faststart=True).read_bytes()
    asset = _upload(client, good, "damaged.mp4")
    timeline = {"canvas": {"width": 320, "height": 180, "fps": 25},
                "tracks": [{"type": "video", "clips": [{"asset": asset, "in": 0, "out": 2}]}]}
    # A clip version probes the asset once and keeps what it found; then the file gets damaged.
    cv = client.post("/clip-versions/", json={"project_id": PROJECT, "timeline": timeline})
    assert cv.status_code == 201, cv.text
    (stored,) = [p for p in (settings.data_dir / "media").rglob("damaged.mp4")]
    stored.write_bytes(good[: int(len(good) * 0.5)])
    response = _post(client, {}, f"&clip_version_id={cv.json()['id']}")
    assert response.status_code == 202, response.text
    job = wait_for(client, response.json()["id"], timeout=60)
    assert job["status"] == "failed"
    message = job["error_message"]
    assert message.startswith("Track 1 clip 1") and asset in message, message
    assert "truncated or" in message and re.search(r"(near|before) \d+\.\d\ds", message), message
    assert not UNFRIENDLY.search(message), message


def test_the_timeline_schema_is_published(client: TestClient[Any]) -> None:
    graph = client.get("/graphs/render").json()
    schema = graph["inputs"]["timeline"]["schema"]
    assert {"canvas", "tracks", "duration"} <= set(schema["properties"])
    openapi = client.get("/schema/openapi.json").json()
    components = openapi["components"]["schemas"]
    assert {"Timeline", "VideoClip", "CaptionTrack", "RenderOutput"} <= set(components)
    assert components["ClipVersionCreate"]["properties"]["timeline"] == {"$ref": "#/components/schemas/Timeline"}
    assert "in" in components["VideoClip"]["properties"]
