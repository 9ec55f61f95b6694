"""Brand kits and transcript corrections through the HTTP API, and the 422s captions give at submission."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from litestar.testing import TestClient
from PIL import Image
from redis import asyncio as aioredis

from operators.render.text import bundled_font_path
from scheduler.records.assets import AssetStore
from scheduler.settings import Settings
from tests.conftest import wait_for
from tests.mediagen import make_clip

PROJECT = "proj_brand"
W, H = 320, 568
ACCENT = "#ff2060"


def _upload(client: TestClient[Any], data: bytes, name: str, project: str = PROJECT) -> str:
    response = client.post(f"/assets/?project_id={project}&filename={name}", content=data)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _transcript(settings: Settings, words: list[str], language: str = "en", name: str = "t") -> str:
    body = {"language": language, "duration": 1.0, "segments": [{
        "start": 0.05, "end": 0.95, "text": " ".join(words),
        "words": [{"word": f" {w}", "start": 0.05 + 0.3 * i, "end": 0.3 + 0.3 * i, "probability": 0.9}
                  for i, w in enumerate(words)]}]}
    folder = settings.data_dir / "media" / "transcripts"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(body))

    async def create() -> str:
        redis = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
        try:
            record = await AssetStore(redis).create(path=f"transcripts/{name}.json", kind="transcript",
                                                    project_id=PROJECT, content_type="application/json", size=10)
            return str(record["id"])
        finally:
            await redis.aclose()

    return asyncio.run(create())


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("brand")
    logo = io.BytesIO()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(logo, format="PNG")
    return {"clip": make_clip(folder / "c.mp4", seconds=1.0, size=(W, H), fps="30", audio=False).read_bytes(),
            "font": Path(bundled_font_path("dejavu-sans")).with_name("DejaVuSerif-Bold.ttf").read_bytes(),
            "logo": logo.getvalue()}


def _kit(client: TestClient[Any], media: dict[str, bytes], **body: Any) -> Any:
    font = _upload(client, media["font"], "brand.ttf")
    return client.post("/brand-kits/", json={"project_id": PROJECT, "fonts": [font], **body})


def _loc(response: Any) -> tuple[list[Any], str]:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    return list(detail["loc"]), str(detail["msg"])


def _timeline(clip: str, transcript: str, **extra: Any) -> dict[str, Any]:
    captions = {"type": "captions", "transcript": transcript, "size": 40, **extra.pop("captions", {})}
    return {"canvas": {"width": W, "height": H, "fps": 30}, **extra,
            "tracks": [{"type": "video", "clips": [{"asset": clip, "out": 1}]}, captions]}


def test_brand_kits_are_created_read_listed_and_deleted(client: TestClient[Any], media: dict[str, bytes]) -> None:
    logo = _upload(client, media["logo"], "logo.png")
    created = _kit(client, media, name="Acme", logo=logo, colors={"accent": ACCENT, "text": "#ffffff"})
    assert created.status_code == 201, created.text
    kit = created.json()
    assert kit["id"].startswith("bk_") and kit["colors"] == {"primary": None, "accent": ACCENT, "text": "#ffffff",
                                                             "background": None}
    assert client.get(f"/v1/brand-kits/{kit['id']}").json() == kit
    other = _kit(client, media).json()
    assert [k["id"] for k in client.get(f"/brand-kits/?project_id={PROJECT}").json()] == [other["id"], kit["id"]]
    assert client.delete(f"/brand-kits/{kit['id']}").status_code == 204
    assert client.get(f"/brand-kits/{kit['id']}").status_code == 404
    assert client.delete(f"/brand-kits/{kit['id']}").status_code == 404


def test_bad_brand_kits_are_422_naming_the_field(client: TestClient[Any], media: dict[str, bytes]) -> None:
    assert _loc(_kit(client, media, colors={"accent": "red"}))[0] == ["body", "colors", "accent"]
    assert _loc(_kit(client, media, colors={"text": "#12345"}))[0] == ["body", "colors", "text"]
    clip = _upload(client, media["clip"], "c.mp4")
    loc, msg = _loc(client.post("/brand-kits/", json={"project_id": PROJECT, "fonts": [clip]}))
    assert loc == ["body", "fonts", 0] and "font" in msg
    loc, msg = _loc(_kit(client, media, logo=clip))
    assert loc == ["body", "logo"] and "not an image" in msg
    theirs = _upload(client, media["font"], "f.ttf", project="proj_else")
    assert _loc(client.post("/brand-kits/", json={"project_id": PROJECT, "fonts": [theirs]}))[0] == ["body", "fonts", 0]
    assert client.get(f"/brand-kits/?project_id={PROJECT}").json() == []


def test_timelines_are_checked_at_submission(client: TestClient[Any], settings: Settings,
                                             media: dict[str, bytes]) -> None:
    clip = _upload(client, media["clip"], "c.mp4")
    transcript = _transcript(settings, ["hello", "there"])

    def post(timeline: dict[str, Any]) -> Any:
        return client.post("/clip-versions/", json={"project_id": PROJECT, "timeline": timeline})

    loc, msg = _loc(post(_timeline(clip, transcript, captions={"style": "neon"})))
    assert loc == ["body", "timeline", "tracks", 1, "style"] and "karaoke" in msg
    loc, msg = _loc(post(_timeline(clip, transcript, brand_kit="bk_nope")))
    assert loc == ["body", "timeline", "brand_kit"] and "bk_nope" in msg
    loc, _ = _loc(post(_timeline(clip, transcript, captions={"safe_area": "snapchat"})))
    assert loc == ["body", "timeline", "tracks", 1, "safe_area"]
    cjk = _transcript(settings, ["你好", "世界"], language="zh", name="zh")
    loc, msg = _loc(post(_timeline(clip, cjk)))
    assert loc == ["body", "timeline", "tracks", 1, "font"]
    assert "Han (CJK)" in msg and "'zh'" in msg and "give a font that covers it" in msg
    # The same with a font that lacks those glyphs: refused, naming that font.
    font = _upload(client, media["font"], "serif.ttf")
    loc, msg = _loc(post(_timeline(clip, cjk, captions={"font": font})))
    assert loc == ["body", "timeline", "tracks", 1, "font"] and font in msg and "Han (CJK)" in msg
    greek = _transcript(settings, ["Καλημέρα", "κόσμε"], language="el", name="el")
    assert post(_timeline(clip, greek, captions={"style": "karaoke"})).status_code == 201


def _render(client: TestClient[Any], timeline: dict[str, Any]) -> list[np.ndarray]:
    response = client.post("/jobs/?job_type=render", json={"project_id": PROJECT, "timeline": timeline,
                                                           "output": {"crf": 12, "preset": "ultrafast"}})
    assert response.status_code == 202, response.text
    job = wait_for(client, response.json()["id"], timeout=120)
    assert job["status"] == "completed", job["error_message"]
    data = client.get(job["result_payload"]["outputs"]["video"]["url"]).content
    with av.open(io.BytesIO(data)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_a_brand_kits_font_and_accent_show_in_the_frames(client: TestClient[Any], settings: Settings,
                                                         media: dict[str, bytes]) -> None:
    clip = _upload(client, media["clip"], "c.mp4")
    transcript = _transcript(settings, ["brand", "colours", "show"])
    kit = _kit(client, media, colors={"accent": ACCENT}).json()
    captions = {"style": "karaoke", "position": "center", "background": "#000000"}
    plain = _render(client, _timeline(clip, transcript, captions=captions))
    branded = _render(client, _timeline(clip, transcript, captions=captions, brand_kit=kit["id"]))
    accent = np.array([0xFF, 0x20, 0x60])

    def accent_pixels(frame: np.ndarray) -> int:
        return int((np.abs(frame.astype(int) - accent).max(axis=-1) < 50).sum())

    # The source (testsrc2) has some pixels of about that colour itself: the fill adds hundreds more.
    assert accent_pixels(branded[25]) > accent_pixels(plain[25]) + 300
    # Another font: the captions' ink (white and fill on the black box) has another shape at the same frame.
    def ink(frame: np.ndarray) -> np.ndarray:
        return frame[H // 2 - 60: H // 2 + 60].max(axis=-1) > 150

    assert (ink(plain[5]) != ink(branded[5])).sum() > 300


def _planned_words(settings: Settings, clip: str, transcript: str) -> list[str]:
    """The words the render plans for a timeline captioned with ``transcript`` (render.plan, on the media root)."""
    from operators.media.info import AssetMedia
    from operators.render.plan import PlanParams, render_plan
    from operators.render.timeline import Timeline
    from tests.mediagen import media_ctx
    from tests.render_testing import probed_assets

    async def path_of(asset_id: str) -> str:
        redis = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
        try:
            return str((await AssetStore(redis).get(asset_id))["path"])
        finally:
            await redis.aclose()

    ctx = media_ctx(settings.data_dir / "media")
    assets = probed_assets(ctx, **{clip: asyncio.run(path_of(clip))})
    assets[transcript] = AssetMedia(id=transcript, path=asyncio.run(path_of(transcript)), kind="transcript",
                                    content_type="application/json")
    plan = render_plan(Timeline.model_validate(_timeline(clip, transcript)).with_assets(assets),
                       params=PlanParams(), ctx=ctx)
    return [r.text for o in plan.overlays[:1] for line in o.lines for r in line]


def test_correcting_words_makes_a_new_transcript(client: TestClient[Any], settings: Settings,
                                                 media: dict[str, bytes]) -> None:
    transcript = _transcript(settings, ["cooper", "netties", "rocks"])
    fixed = client.patch(f"/assets/{transcript}/words", json=[{"index": 1, "text": "Kubernetes"}])
    assert fixed.status_code == 201, fixed.text
    record = fixed.json()
    assert record["kind"] == "transcript" and record["id"] != transcript and record["derived_from"][0] == transcript
    body = client.get(record["url"]).json()
    words = body["segments"][0]["words"]
    assert [w["word"] for w in words] == [" cooper", " Kubernetes", " rocks"]
    assert [w["start"] for w in words] == pytest.approx([0.05, 0.35, 0.65])
    assert body["segments"][0]["text"] == " cooper Kubernetes rocks"
    original = client.get(f"/assets/{transcript}/content").json()
    assert [w["word"] for w in original["segments"][0]["words"]][1] == " netties"
    # A timeline captioned with the new asset is accepted and its render shows the corrected word.
    clip = _upload(client, media["clip"], "c.mp4")
    saved = client.post("/clip-versions/", json={"project_id": PROJECT, "timeline": _timeline(clip, record["id"])})
    assert saved.status_code == 201, saved.text
    assert _planned_words(settings, clip, record["id"]) == ["cooper", "Kubernetes", "rocks"]
    assert _planned_words(settings, clip, transcript) == ["cooper", "netties", "rocks"]

    loc, msg = _loc(client.patch(f"/assets/{transcript}/words", json=[{"index": 0, "text": "a"},
                                                                       {"index": 3, "text": "x"}]))
    assert loc == ["body", 1, "index"] and "3 words" in msg
    assert _loc(client.patch(f"/assets/{transcript}/words", json=[{"index": -1, "text": "x"}]))[0][-1] == "index"
    assert client.patch("/assets/asset_nope/words", json=[{"index": 0, "text": "x"}]).status_code == 404
