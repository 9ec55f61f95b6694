"""The API reference's examples, against a real Redis, a real LocalCluster and real media."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from litestar.testing import TestClient

from tests.conftest import wait_for
from tests.mediagen import make_clip

TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00$")
JOB_KEYS = {
    "id", "created_at", "updated_at", "clip_version_id", "job_type", "status", "queue_name", "priority",
    "payload", "result_payload", "error_message", "started_at", "completed_at",
}


def _clip(media_root: Path, name: str = "in.mp4") -> str:
    make_clip(media_root / name, seconds=1.0, size=(160, 120), fps="30", audio=True, bframes=False)
    return name


def test_health_with_and_without_trailing_slash(client: TestClient[Any]) -> None:
    expected = {"status": "ok", "app": "AI Video Editor Backend", "environment": "development"}
    for path in ("/health/", "/health"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.json() == expected


def test_diagnostics_connected(client: TestClient[Any], redis_url: str) -> None:
    body = client.get("/health/diagnostics").json()
    assert body["status"] == "ok"
    assert body["app"] == "AI Video Editor Backend" and body["environment"] == "development"
    queue = body["queue"]
    assert set(queue) == {"connected", "broker_url", "redis_version", "connected_clients"}
    assert queue["connected"] is True
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    assert queue["broker_url"] == f"127.0.0.1:{port}/0"
    assert re.match(r"^\d+\.\d+\.\d+$", queue["redis_version"])
    assert isinstance(queue["connected_clients"], int) and queue["connected_clients"] >= 1
    cluster = body["cluster"]
    assert cluster["connected"] is True and cluster["workers"] == 2 and cluster["threads"] == 2
    assert cluster["scheduler_address"].startswith("tcp://")
    assert "dashboard_link" in cluster


def test_create_job_matches_reference(client: TestClient[Any], media_root: Path) -> None:
    source = _clip(media_root)
    payload = {"project_id": "proj_123", "source_uri": source, "transcript": False, "note": "kept as is"}
    response = client.post("/jobs/?job_type=ingest&priority=5", json=payload)
    assert response.status_code == 202, response.text
    job = response.json()
    assert set(job) == JOB_KEYS
    assert re.match(r"^job_[0-9a-f]+$", job["id"])
    assert job["status"] == "queued"
    assert job["queue_name"] == "ai-video-editor-jobs"
    assert job["priority"] == 5 and job["job_type"] == "ingest" and job["clip_version_id"] is None
    assert job["payload"] == payload
    assert job["result_payload"] is None and job["error_message"] is None
    assert job["started_at"] is None and job["completed_at"] is None
    assert TS.match(job["created_at"]) and TS.match(job["updated_at"])

    fetched = client.get(f"/jobs/{job['id']}")
    assert fetched.status_code == 200
    assert set(fetched.json()) == JOB_KEYS
    # clip_version_id associates the job with an existing clip version (one must exist).
    upload = client.post("/assets/?project_id=proj_123&filename=in.mp4", content=(media_root / source).read_bytes())
    timeline = {"tracks": [{"type": "video", "clips": [{"asset": upload.json()["id"]}]}]}
    cv = client.post("/clip-versions/", json={"project_id": "proj_123", "timeline": timeline}).json()["id"]
    no_slash = client.post(f"/jobs?job_type=ingest&clip_version_id={cv}", json=payload)
    assert no_slash.status_code == 202 and no_slash.json()["clip_version_id"] == cv
    assert no_slash.json()["priority"] == 0
    missing = client.post("/jobs/?job_type=ingest&clip_version_id=cv_1", json=payload)
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["query", "clip_version_id"]


def test_ingest_job_end_to_end(client: TestClient[Any], media_root: Path) -> None:
    source = _clip(media_root)
    job = client.post("/jobs/?job_type=ingest", json={"project_id": "p", "source_uri": source}).json()
    statuses: list[str] = []
    done = wait_for(client, job["id"], seen=lambda r: statuses.append(r["status"]))
    assert done["status"] == "completed", done["error_message"]
    seen = list(dict.fromkeys(statuses))  # each status once, in the order first polled
    assert seen == ["queued", "in_progress", "completed"][-len(seen):], statuses  # only ever forward
    assert seen[-2:] == ["in_progress", "completed"], statuses  # a job of several tasks is seen running
    assert done["result_payload"]["progress"] == 1.0
    log = done["result_payload"]["log"]
    assert log and all(TS.match(e["timestamp"]) and e["message"] for e in log)
    info = done["result_payload"]["outputs"]["media_info"]
    assert info["video"]["width"] == 160 if "video" in info else any(s.get("width") == 160 for s in info["streams"])
    for key in ("started_at", "completed_at", "updated_at"):
        assert TS.match(done[key])
    assert done["started_at"] <= done["completed_at"]
    assert done["error_message"] is None


def test_unknown_job(client: TestClient[Any]) -> None:
    response = client.get("/jobs/job_789")
    assert response.status_code == 404
    assert response.json() == {"detail": "Job job_789 not found"}


def test_unknown_and_unavailable_job_types(client: TestClient[Any], settings: Any, tmp_path: Path) -> None:
    response = client.post("/jobs/?job_type=ingset", json={})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail[0]["loc"] == ["query", "job_type"]
    assert "Did you mean 'ingest'" in detail[0]["msg"]

    # A documented job type whose graph is not installed (here: only ingest's is) is "not available yet".
    import shutil

    from server.app import create_app

    few = tmp_path / "few_graphs"
    few.mkdir()
    shutil.copy(Path(settings.graphs_dir) / "ingest.yaml", few / "ingest.yaml")
    with TestClient(app=create_app(settings.model_copy(update={"graphs_dir": few})), timeout=30) as other:
        response = other.post("/jobs/?job_type=export", json={"project_id": "p"})
    assert response.status_code == 422
    assert "not available yet" in response.json()["detail"][0]["msg"]

    missing = client.post("/jobs/", json={})
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["query", "job_type"]


def test_bad_priority_and_bodies(client: TestClient[Any], media_root: Path) -> None:
    source = _clip(media_root)
    body = {"project_id": "p", "source_uri": source}
    response = client.post("/jobs/?job_type=ingest&priority=high", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "priority"]

    response = client.post("/jobs/?job_type=ingest", json=[1, 2])
    assert response.status_code == 422
    assert set(response.json()) == {"detail"}

    response = client.post("/jobs/?job_type=ingest", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code in (400, 422)
    assert set(response.json()) == {"detail"}


def test_payload_checked_against_graph_inputs(client: TestClient[Any], media_root: Path) -> None:
    source = _clip(media_root)
    response = client.post("/jobs/?job_type=ingest", json={"source_uri": source})
    assert response.status_code == 422
    assert ["body", "project_id"] in [e["loc"] for e in response.json()["detail"]]

    response = client.post("/jobs/?job_type=ingest", json={"project_id": "p", "source_uri": source, "transcript": "yes"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "transcript"]

    response = client.post("/jobs/?job_type=ingest", json={"project_id": "p"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "source_uri"]

    response = client.post("/jobs/?job_type=ingest", json={"project_id": "p", "source_uri": "missing.mp4"})
    assert response.status_code == 422
    assert "does not exist" in response.json()["detail"][0]["msg"]

    response = client.post("/jobs/?job_type=ingest", json={"project_id": "p", "source_asset_id": "asset_456"})
    assert response.status_code == 422
    assert response.json()["detail"][0] == {
        "loc": ["body", "source_asset_id"], "msg": "Asset asset_456 not found", "type": "value_error"}


def test_paths_outside_media_root_are_refused(client: TestClient[Any], media_root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(b"x")
    (media_root / "escape.mp4").symlink_to(outside)
    for uri in ("/etc/passwd", "../secret.mp4", "a/../../secret.mp4", "escape.mp4"):
        response = client.post("/jobs/?job_type=ingest", json={"project_id": "p", "source_uri": uri})
        assert response.status_code == 422, uri
        error = response.json()["detail"][0]
        assert error["loc"] == ["body", "source_uri"]
        assert "media root" in error["msg"]


def test_list_jobs_newest_first_and_filtered(client: TestClient[Any]) -> None:
    ids = [client.post("/jobs/?job_type=sleepy", json={"tag": str(i)}).json()["id"] for i in range(3)]
    listed = client.get("/jobs/?job_type=sleepy&limit=10").json()
    assert [j["id"] for j in listed] == list(reversed(ids))
    assert client.get("/jobs/?status=bogus").status_code == 422
    for job_id in ids:
        wait_for(client, job_id)
    completed = client.get("/jobs?status=completed&job_type=sleepy").json()
    assert set(ids) <= {j["id"] for j in completed} and {j["status"] for j in completed} == {"completed"}
    assert not {j["id"] for j in client.get("/jobs?status=queued").json()} & set(ids)


def test_openapi_schema(client: TestClient[Any]) -> None:
    schema = client.get("/schema/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    # The document lists the stable /v1/ routes; the unprefixed ones answer the same (tests/test_api_hardening.py).
    assert "/v1/jobs" in paths
    assert any(p.startswith("/v1/jobs/{job_id}") for p in paths)


def test_server_starts_and_answers_health_without_redis(settings: Any) -> None:
    """Redis unreachable from the start: the server still serves /health/, reports degraded and 503s."""
    from server.app import create_app

    down = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    with TestClient(app=create_app(down), timeout=30) as client:
        assert client.get("/health/").json()["status"] == "ok"
        body = client.get("/health/diagnostics").json()
        assert body["status"] == "degraded"
        assert body["queue"]["connected"] is False and body["queue"]["broker_url"] == "127.0.0.1:1/0"
        assert body["queue"]["error"]
        response = client.post("/jobs/?job_type=sleepy", json={})
        assert response.status_code == 503
        assert response.json()["detail"].startswith("Failed to enqueue job: Queue connection error: ")
