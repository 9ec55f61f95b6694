"""The ``generate_clip`` job through the HTTP API: real Redis, real Dask workers, tiny.en, real renders.

The source is a small 16:9 talk video made here: two espeak paragraphs on different subjects
(pricing, then baking bread) over two shots with a drawn face off-centre. The first job
transcribes it in the graph and chains a render per clip; the second reuses that job's
transcript asset and must find the same clips without transcribing again.
"""

from __future__ import annotations

from fractions import Fraction

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from litestar.testing import TestClient

from operators.render.resolve import frame_of
from tests import clipgen as cg
from tests import speechgen as sg
from tests.conftest import wait_for

pytestmark = pytest.mark.skipif(not sg.have_espeak(), reason=sg.ESPEAK_MISSING)

PROJECT = "proj_clips"
SETTINGS = {"min_seconds": 8, "max_seconds": 20, "max_clips": 2, "prompt": "baking bread", "height": 640}


@pytest.fixture(scope="module")
def talk() -> cg.Talk:
    return cg.topic_talk(("pricing", "bread"))


@pytest.fixture(scope="module")
def talk_video(talk: cg.Talk, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    half = round(talk.composed.duration / 2, 1)
    rest = round(talk.composed.duration - half + 0.3, 1)
    shots = [cg.Shot(half, 0.2, (60, 90, 140)), cg.Shot(rest, 0.75, (170, 150, 110))]
    made = cg.face_video(tmp_path_factory.mktemp("talk") / "talk.mp4", shots, size=(320, 180),
                         audio=talk.composed.audio)
    return made.path.read_bytes()


def upload(client: TestClient[Any], data: bytes, name: str = "talk.mp4") -> str:
    response = client.post(f"/assets/?project_id={PROJECT}&filename={name}", content=data)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def run(client: TestClient[Any], timeout: float = 180, **payload: Any) -> dict[str, Any]:
    response = client.post("/jobs/?job_type=generate_clip", json={"project_id": PROJECT, **payload})
    assert response.status_code == 202, response.text
    return wait_for(client, response.json()["id"], timeout=timeout)


def messages(job: dict[str, Any]) -> list[str]:
    return [entry["message"] for entry in job["result_payload"]["log"]]


def test_generate_clip_transcribes_finds_reframes_renders_and_reuses_its_transcript(
        client: TestClient[Any], talk: cg.Talk, talk_video: bytes) -> None:
    # Client and Redis are per test, so the one transcribing job serves every check that needs it.
    source = upload(client, talk_video)
    job = run(client, source_asset_id=source, render=True, **SETTINGS)
    assert job["status"] == "completed", job["error_message"]
    check_first_job(client, talk, source, job)
    check_reuse(client, source, job)
    check_payload_problems(client, talk_video, source, job)


def check_first_job(client: TestClient[Any], talk: cg.Talk, source: str, job: dict[str, Any]) -> None:
    outputs = job["result_payload"]["outputs"]
    transcript = outputs["transcript"]
    assert (transcript["kind"], transcript["job_id"]) == ("transcript", job["id"])
    assert source in transcript["derived_from"]
    clips = outputs["clips"]
    assert len(clips) == 2 and clips[0]["score"] >= clips[1]["score"]
    for clip in clips:
        assert set(clip) >= {"clip_version_id", "start", "end", "duration", "score", "components", "reasons",
                             "title", "text"}
        assert 8 <= clip["duration"] <= 20 and clip["duration"] == pytest.approx(clip["end"] - clip["start"], abs=1e-3)
        assert clip["reasons"] and clip["title"]
    top = clips[0]
    bread = talk.spans["bread"]
    inside = max(0.0, min(top["end"], bread[1]) - max(top["start"], bread[0])) / top["duration"]
    assert inside >= 0.8, (top, bread)

    for clip in clips:
        version = client.get(f"/clip-versions/{clip['clip_version_id']}").json()
        assert version["project_id"] == PROJECT and version["name"] == clip["title"]
        meta = version["metadata"]
        assert meta["job_id"] == job["id"]
        keys = ("score", "start", "end", "text")
        assert {k: meta[k] for k in keys} == {k: clip[k] for k in keys}
        assert meta["components"] == clip["components"] and meta["reasons"] == clip["reasons"]
        video, title, captions = version["timeline"]["tracks"]
        shown = video["clips"][0]
        assert (shown["asset"], shown["in"], shown["out"]) == (source, clip["start"], clip["end"])
        assert title["type"] == "text" and captions["type"] == "captions"
        # Made in this job, the transcript is one asset: the output, and what the captions name.
        assert captions["transcript"] == job["result_payload"]["outputs"]["transcript"]["id"]
        assert captions["style"] == "word-highlight"
        assert version["timeline"]["canvas"] == {"aspect_ratio": "9:16", "height": 640, "fps": "10",
                                                 "background": "#000000"}

    renders = job["result_payload"]["chained_jobs"]["render"]
    assert len(renders) == 2
    for clip, render_id in zip(clips, renders, strict=True):
        render = wait_for(client, render_id, timeout=120)
        assert render["status"] == "completed", render["error_message"]
        assert render["clip_version_id"] == clip["clip_version_id"]
        video = render["result_payload"]["outputs"]["video"]
        assert (video["width"], video["height"]) == (360, 640)
        # The render's rule (frame_of: halves round up, 10.65 s -> 107 frames), not Python's half-to-even round.
        assert video["meta"]["frame_count"] == frame_of(Fraction(str(clip["end"])) - Fraction(str(clip["start"])), Fraction(10))
        rendered = client.get(f"/assets/{render['result_payload']['outputs']['timeline']['id']}/content").json()
        assert rendered["timeline"]["tracks"][2]["transcript"] == outputs["transcript"]["id"]
        version = client.get(f"/clip-versions/{clip['clip_version_id']}").json()
        assert [r["job_id"] for r in version["renders"]] == [render_id]


def check_reuse(client: TestClient[Any], source: str, first: dict[str, Any]) -> None:
    transcript_id = first["result_payload"]["outputs"]["transcript"]["id"]
    job = run(client, source_asset_id=source, transcript_asset_id=transcript_id, **SETTINGS)
    assert job["status"] == "completed", job["error_message"]
    assert any(m.startswith("vad: skipped") for m in messages(job)), messages(job)
    outputs = job["result_payload"]["outputs"]
    assert outputs["transcript"]["id"] == transcript_id and outputs["transcript"]["reused"] is True
    same = ("start", "end", "score", "components", "reasons", "title", "text")
    assert [{k: c[k] for k in same} for c in outputs["clips"]] == \
        [{k: c[k] for k in same} for c in first["result_payload"]["outputs"]["clips"]]
    version = client.get(f"/clip-versions/{outputs['clips'][0]['clip_version_id']}").json()
    assert version["timeline"]["tracks"][2]["transcript"] == transcript_id
    assert "chained_jobs" not in job["result_payload"]


def check_payload_problems(client: TestClient[Any], talk_video: bytes, source: str, first: dict[str, Any]) -> None:
    transcript_id = first["result_payload"]["outputs"]["transcript"]["id"]
    other = upload(client, talk_video, "other.mp4")

    def post(**payload: Any) -> dict[str, Any]:
        response = client.post("/jobs/?job_type=generate_clip", json={"project_id": PROJECT, **payload})
        assert response.status_code == 422, response.text
        (error,) = response.json()["detail"] if isinstance(response.json()["detail"], list) else [response.json()]
        return error

    error = post(source_asset_id=source, min_seconds=30, max_seconds=20)
    assert error["loc"] == ["body", "min_seconds"] and "must not be above max_seconds (20)" in error["msg"], error
    error = post(source_asset_id=other, transcript_asset_id=transcript_id)
    assert error["loc"] == ["body", "transcript_asset_id"] and f"is not a transcript of {other}" in error["msg"]
    error = post(source_asset_id=source, transcript_asset_id=source)
    assert error["loc"] == ["body", "transcript_asset_id"] and "not a transcript" in error["msg"]
    error = post(source_asset_id=source, transcript_asset_id="asset_nope")
    assert error["loc"] == ["body", "transcript_asset_id"] and "not found" in error["msg"]


def test_no_speech_and_a_short_source_complete_with_no_clips(client: TestClient[Any], tmp_path: Path) -> None:
    silent = cg.face_video(tmp_path / "silent.mp4", [cg.Shot(6.0, None, (90, 90, 90))], size=(160, 90),
                           audio=np.zeros(6 * sg.RATE, np.float32))
    job = run(client, source_asset_id=upload(client, silent.path.read_bytes(), "silent.mp4"), timeout=90)
    assert job["status"] == "completed", job["error_message"]
    assert job["result_payload"]["outputs"]["clips"] == []
    assert "No speech in the transcript: no clips" in messages(job)

    speech = sg.compose_sentences(list(sg.SENTENCES[:2]), [0.6])
    short = cg.face_video(tmp_path / "short.mp4", [cg.Shot(round(speech.duration, 1), None, (90, 90, 90))],
                          size=(160, 90), audio=speech.audio)
    job = run(client, source_asset_id=upload(client, short.path.read_bytes(), "short.mp4"), timeout=90)
    assert job["status"] == "completed", job["error_message"]
    assert job["result_payload"]["outputs"]["clips"] == []
    assert any("less than min_seconds (15 s): no clips" in m for m in messages(job)), messages(job)


def test_a_source_uri_is_a_422_asking_for_an_asset(client: TestClient[Any], media_root: Path,
                                                   talk_video: bytes) -> None:
    (media_root / "talk.mp4").write_bytes(talk_video)
    response = client.post("/jobs/?job_type=generate_clip", json={"project_id": PROJECT, "source_uri": "talk.mp4"})
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "source_uri"] and "give source_asset_id" in error["msg"], error


def test_the_job_type_is_listed_with_its_inputs(client: TestClient[Any]) -> None:
    graph = client.get("/graphs/generate_clip").json()
    inputs = graph["inputs"]
    assert inputs["min_seconds"]["default"] == 15 and inputs["max_seconds"]["default"] == 60
    assert inputs["max_clips"]["default"] == 10 and inputs["aspect_ratio"]["default"] == "9:16"
    assert inputs["captions"]["default"] == "word-highlight" and inputs["render"]["default"] is False
    assert inputs["transcript_asset_id"]["schema"]["type"] == "string"
    assert client.get("/schema/openapi.json").status_code == 200
