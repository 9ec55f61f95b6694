"""Jobs that propose clip versions (``NewClipVersion`` outputs), and chains that run once per item."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient

from tests.conftest import wait_for
from tests.mediagen import make_clip

PROJECT = "proj_proposals"


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_clip(tmp_path_factory.mktemp("proposals") / "a.mp4", seconds=1.0).read_bytes()


def _run(client: TestClient[Any], clip_bytes: bytes, **payload: Any) -> dict[str, Any]:
    asset = client.post(f"/assets/?project_id={PROJECT}&filename=a.mp4", content=clip_bytes).json()["id"]
    response = client.post("/jobs/?job_type=proposals", json={"project_id": PROJECT, "asset": asset, **payload})
    assert response.status_code == 202, response.text
    job = wait_for(client, response.json()["id"], timeout=60)
    assert job["status"] == "completed", job["error_message"]
    return job


def test_proposed_clip_versions_are_created_in_the_project(client: TestClient[Any], clip_bytes: bytes) -> None:
    job = _run(client, clip_bytes, count=3)
    clips = job["result_payload"]["outputs"]["clips"]
    assert [c["score"] for c in clips] == [90, 89, 88]
    versions = [client.get(f"/clip-versions/{c['clip_version_id']}").json() for c in clips]
    assert [v["name"] for v in versions] == ["Clip 1", "Clip 2", "Clip 3"]
    assert all(v["project_id"] == PROJECT and v["version"] == 1 for v in versions)
    assert [v["metadata"] for v in versions] == [{"score": 90 - i, "job_id": job["id"]} for i in range(3)]
    assert "chained_jobs" not in job["result_payload"]


def test_a_for_each_chain_renders_every_proposed_clip(client: TestClient[Any], clip_bytes: bytes) -> None:
    job = _run(client, clip_bytes, count=2, render=True)
    clips = job["result_payload"]["outputs"]["clips"]
    renders = job["result_payload"]["chained_jobs"]["render"]
    assert len(renders) == 2
    for clip, render_id in zip(clips, renders, strict=True):
        render = wait_for(client, render_id, timeout=90)
        assert render["status"] == "completed", render["error_message"]
        assert render["clip_version_id"] == clip["clip_version_id"]
        version = client.get(f"/clip-versions/{clip['clip_version_id']}").json()
        assert [r["job_id"] for r in version["renders"]] == [render_id]
        assert render["result_payload"]["outputs"]["video"]["meta"]["frame_count"] == 15
