"""Clip versions through the HTTP API: create, version, read, list, errors, and downstream updates."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis as redis_sync
from litestar.testing import TestClient

from scheduler.settings import Settings
from tests.conftest import wait_for
from tests.mediagen import make_clip

TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00$")
KEYS = ["id", "clip_id", "version", "project_id", "name", "timeline", "metadata", "renders", "exports",
        "created_at", "updated_at"]
PROJECT = "proj_cv"


@pytest.fixture(scope="session")
def clip_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_clip(tmp_path_factory.mktemp("cv") / "a.mp4", seconds=1.0).read_bytes()


def _asset(client: TestClient[Any], clip_bytes: bytes, project_id: str = PROJECT) -> str:
    response = client.post(f"/assets/?project_id={project_id}&filename=a.mp4", content=clip_bytes)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _timeline(asset_id: str) -> dict[str, Any]:
    return {"canvas": {"width": 320, "height": 240, "fps": 30},
            "tracks": [{"type": "video", "clips": [{"asset": asset_id, "in": 0, "out": 1}]}]}


def _create(client: TestClient[Any], asset_id: str, **body: Any) -> dict[str, Any]:
    body.setdefault("project_id", PROJECT)
    body.setdefault("timeline", _timeline(asset_id))
    response = client.post("/clip-versions/", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _loc(response: Any) -> list[Any]:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail, detail
    return list(detail[0]["loc"])


def _wait_for_log(client: TestClient[Any], job_id: str, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = client.get(f"/jobs/{job_id}").json()["result_payload"] or {}
        if any(text in entry["message"] for entry in result.get("log", [])):
            return
        assert time.monotonic() < deadline, f"job {job_id} never logged {text!r}"
        time.sleep(0.05)


def test_create_then_get(client: TestClient[Any], clip_bytes: bytes) -> None:
    asset_id = _asset(client, clip_bytes)
    record = _create(client, asset_id, name="First cut", metadata={"note": "hi"})
    assert list(record) == KEYS
    assert re.fullmatch(r"cv_[0-9a-f]{24}", record["id"]) and re.fullmatch(r"clip_[0-9a-f]{24}", record["clip_id"])
    assert record["version"] == 1 and record["project_id"] == PROJECT and record["name"] == "First cut"
    assert record["metadata"] == {"note": "hi"} and record["renders"] == [] and record["exports"] == []
    assert TS.match(record["created_at"]) and record["updated_at"] == record["created_at"]
    assert record["timeline"]["tracks"][0]["clips"][0]["asset"] == asset_id

    fetched = client.get(f"/clip-versions/{record['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == record


def test_versions_of_one_clip_count_up(client: TestClient[Any], clip_bytes: bytes) -> None:
    asset_id = _asset(client, clip_bytes)
    first = _create(client, asset_id)
    second = _create(client, asset_id, clip_id=first["clip_id"])
    third = _create(client, asset_id, clip_id=first["clip_id"], name="v3")
    assert [first["version"], second["version"], third["version"]] == [1, 2, 3]
    assert len({first["id"], second["id"], third["id"]}) == 3
    assert {second["clip_id"], third["clip_id"]} == {first["clip_id"]}
    other = _create(client, asset_id)
    assert other["version"] == 1 and other["clip_id"] != first["clip_id"]
    assert client.get(f"/clip-versions/{first['id']}").json()["version"] == 1  # earlier versions unchanged


def test_concurrent_saves_get_distinct_consecutive_versions(client: TestClient[Any], clip_bytes: bytes) -> None:
    asset_id = _asset(client, clip_bytes)
    first = _create(client, asset_id)
    with ThreadPoolExecutor(max_workers=8) as pool:
        records = list(pool.map(lambda _: _create(client, asset_id, clip_id=first["clip_id"]), range(12)))
    assert sorted(r["version"] for r in records) == list(range(2, 14))
    listed = client.get(f"/clip-versions/?clip_id={first['clip_id']}&limit=100").json()
    assert [r["version"] for r in listed] == list(range(13, 0, -1))


def test_unknown_clip_version_is_404(client: TestClient[Any]) -> None:
    response = client.get("/clip-versions/cv_nope")
    assert response.status_code == 404
    assert response.json() == {"detail": "Clip version cv_nope not found"}


def test_list_newest_first_with_filters(client: TestClient[Any], clip_bytes: bytes) -> None:
    asset_id = _asset(client, clip_bytes)
    other_asset = _asset(client, clip_bytes, project_id="proj_other")
    a1 = _create(client, asset_id)
    b1 = _create(client, asset_id)
    a2 = _create(client, asset_id, clip_id=a1["clip_id"])
    elsewhere = _create(client, other_asset, project_id="proj_other")

    def ids(query: str) -> list[str]:
        response = client.get(f"/clip-versions/{query}")
        assert response.status_code == 200, response.text
        return [r["id"] for r in response.json()]

    assert ids(f"?project_id={PROJECT}") == [a2["id"], b1["id"], a1["id"]]
    assert ids(f"?clip_id={a1['clip_id']}") == [a2["id"], a1["id"]]
    assert ids(f"?project_id={PROJECT}&clip_id={a1['clip_id']}") == [a2["id"], a1["id"]]
    assert ids(f"?project_id=proj_other&clip_id={a1['clip_id']}") == []
    assert ids(f"?project_id={PROJECT}&limit=2") == [a2["id"], b1["id"]]
    assert ids("?project_id=proj_other") == [elsewhere["id"]]
    assert ids("") == [elsewhere["id"], a2["id"], b1["id"], a1["id"]]
    assert ids("?project_id=proj_none") == []
    assert _loc(client.get("/clip-versions/?limit=0")) == ["query", "limit"]


def test_bad_bodies_are_422_naming_the_field(client: TestClient[Any], clip_bytes: bytes) -> None:
    asset_id = _asset(client, clip_bytes)
    timeline = _timeline(asset_id)
    assert _loc(client.post("/clip-versions/", json={"timeline": timeline})) == ["body", "project_id"]
    assert _loc(client.post("/clip-versions/", json={"project_id": PROJECT})) == ["body", "timeline"]
    assert _loc(client.post("/clip-versions/", json={"project_id": PROJECT, "timeline": [1]})) == ["body", "timeline"]
    assert _loc(client.post("/clip-versions/", json={"project_id": PROJECT, "timeline": timeline,
                                                     "metadata": "x"})) == ["body", "metadata"]
    assert _loc(client.post("/clip-versions/", json={"project_id": PROJECT, "timeline": timeline,
                                                     "colour": "red"})) == ["body", "colour"]
    assert _loc(client.post("/clip-versions/", json=[1, 2])) == ["body"]

    bad_clip = {**timeline, "tracks": [{"type": "video", "clips": [{"asset": asset_id, "in": "soon", "out": 1}]}]}
    loc = _loc(client.post("/clip-versions/", json={"project_id": PROJECT, "timeline": bad_clip}))
    assert loc[:6] == ["body", "timeline", "tracks", 0, "clips", 0], loc
    assert client.get(f"/clip-versions/?project_id={PROJECT}").json() == []  # nothing stored


def test_clip_id_unknown_or_of_another_project_is_422(client: TestClient[Any], clip_bytes: bytes) -> None:
    asset_id = _asset(client, clip_bytes)
    other_asset = _asset(client, clip_bytes, project_id="proj_other")
    theirs = _create(client, other_asset, project_id="proj_other")

    unknown = client.post("/clip-versions/", json={"project_id": PROJECT, "clip_id": "clip_nope",
                                                   "timeline": _timeline(asset_id)})
    assert _loc(unknown) == ["body", "clip_id"]
    assert "clip_nope" in unknown.json()["detail"][0]["msg"]

    foreign = client.post("/clip-versions/", json={"project_id": PROJECT, "clip_id": theirs["clip_id"],
                                                   "timeline": _timeline(asset_id)})
    assert _loc(foreign) == ["body", "clip_id"]
    assert client.get(f"/clip-versions/?project_id={PROJECT}").json() == []
    assert [r["version"] for r in client.get(f"/clip-versions/?clip_id={theirs['clip_id']}").json()] == [1]


def test_completed_job_appends_its_outputs_to_the_clip_version(client: TestClient[Any], clip_bytes: bytes) -> None:
    asset_id = _asset(client, clip_bytes)
    cv = _create(client, asset_id)
    job = client.post(f"/jobs/?job_type=cv_echo&clip_version_id={cv['id']}", json={"project_id": PROJECT})
    assert job.status_code == 202, job.text
    done = wait_for(client, job.json()["id"], timeout=60)
    assert done["status"] == "completed", done["error_message"]
    published = done["result_payload"]["outputs"]["file"]

    record = client.get(f"/clip-versions/{cv['id']}").json()
    assert record["exports"] == [] and len(record["renders"]) == 1
    render = record["renders"][0]
    assert render["job_id"] == done["id"] and TS.match(render["created_at"])
    assert render["outputs"] == {"file": published}
    assert client.get(render["outputs"]["file"]["url"]).content == b"hello"
    assert record["updated_at"] > record["created_at"]
    assert {k: record[k] for k in KEYS if k not in ("renders", "updated_at")} == \
        {k: cv[k] for k in KEYS if k not in ("renders", "updated_at")}

    again = client.post(f"/jobs/?job_type=cv_echo&clip_version_id={cv['id']}", json={"project_id": PROJECT}).json()
    assert wait_for(client, again["id"], timeout=60)["status"] == "completed"
    renders = client.get(f"/clip-versions/{cv['id']}").json()["renders"]
    assert [r["job_id"] for r in renders] == [done["id"], again["id"]]


def test_job_whose_clip_version_vanished_still_completes(client: TestClient[Any], clip_bytes: bytes,
                                                         settings: Settings) -> None:
    asset_id = _asset(client, clip_bytes)
    cv = _create(client, asset_id)
    job = client.post(f"/jobs/?job_type=cv_echo&clip_version_id={cv['id']}",
                      json={"project_id": PROJECT, "delay": 1.5}).json()
    # Delete it once the operator runs: a job naming a missing clip version is refused before that.
    _wait_for_log(client, job["id"], "Writing in")
    redis = redis_sync.Redis.from_url(settings.redis_url)
    try:
        redis.delete(f"ave:clip_version:{cv['id']}")
    finally:
        redis.close()
    done = wait_for(client, job["id"], timeout=60)
    assert done["status"] == "completed", done["error_message"]
    messages = [e["message"] for e in done["result_payload"]["log"]]
    assert any(cv["id"] in m and "no longer exists" in m for m in messages), messages
    assert client.get(f"/clip-versions/{cv['id']}").status_code == 404


def test_clip_version_id_is_kept_on_the_job(client: TestClient[Any], clip_bytes: bytes) -> None:
    """A graph without ``clip_version`` leaves the clip version alone."""
    asset_id = _asset(client, clip_bytes)
    cv = _create(client, asset_id)
    job = client.post(f"/jobs/?job_type=sleepy&clip_version_id={cv['id']}", json={"seconds": 0}).json()
    assert job["clip_version_id"] == cv["id"]
    assert wait_for(client, job["id"], timeout=60)["status"] == "completed"
    assert client.get(f"/clip-versions/{cv['id']}").json() == cv
