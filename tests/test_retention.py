"""Retention: finished jobs expire (JOB_TTL_DAYS), intermediates go when a job ends, DELETE /jobs/{id}.

Real parts: the session's Redis and Dask LocalCluster, the app in a TestClient, the ``parts`` graph of
tests/retention_ops.py (two chunks under ``jobs/<id>/chunks/``, then one published output file).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_sync
from litestar.testing import TestClient

from scheduler.settings import Settings
from server.app import create_app
from tests.conftest import wait_for, wait_until
from tests.retention_ops import add_parts_graph

PROJECT = "proj_keep"
TTL_SECONDS = 2.0


@pytest.fixture()
def graphs_dir(graphs_dir: Path) -> Path:
    add_parts_graph(graphs_dir)
    return graphs_dir


@pytest.fixture()
def client(settings: Settings) -> Iterator[TestClient[Any]]:
    with TestClient(app=create_app(settings), timeout=30) as test_client:
        yield test_client


def _submit(client: TestClient[Any], **payload: Any) -> str:
    response = client.post("/jobs/?job_type=parts", json={"project_id": PROJECT, **payload})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _job_files(settings: Settings, job_id: str) -> list[str]:
    folder = Path(settings.media_url) / "jobs" / job_id
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_intermediates_go_when_a_job_completes_and_its_output_stays(client: TestClient[Any],
                                                                     settings: Settings) -> None:
    job_id = _submit(client, text="kept")
    done = wait_for(client, job_id)
    assert done["status"] == "completed", done["error_message"]
    asset = done["result_payload"]["outputs"]["file"]
    wait_until(lambda: _job_files(settings, job_id) == ["out/result.txt"], 10, "the chunks to be deleted")
    content = client.get(f"/assets/{asset['id']}/content")
    assert content.status_code == 200 and content.text == "kept (attempt 1)"


@pytest.mark.parametrize("how", ["failed", "cancelled"])
def test_intermediates_go_when_a_job_fails_or_is_cancelled(client: TestClient[Any], settings: Settings,
                                                           how: str) -> None:
    job_id = _submit(client, fail=how == "failed", seconds=0.5 if how == "failed" else 30)
    if how == "cancelled":
        wait_until(lambda: len(_job_files(settings, job_id)) == 2, 30, "the chunks to be written")
        assert client.post(f"/jobs/{job_id}/cancel").status_code == 200
    done = wait_for(client, job_id)
    assert done["status"] == how
    wait_until(lambda: not (Path(settings.media_url) / "jobs" / job_id).exists(), 10, "the job's folder to go")
    assert client.get(f"/assets/?project_id={PROJECT}").json() == []


def test_finished_jobs_and_their_logs_expire_and_leave_every_listing(settings: Settings) -> None:
    short = settings.model_copy(update={"job_ttl_days": TTL_SECONDS / 86400})
    redis = redis_sync.Redis.from_url(settings.redis_url, decode_responses=True)
    with TestClient(app=create_app(short), timeout=30) as client:
        job_id = _submit(client, text="outlives its job")
        done = wait_for(client, job_id)
        assert done["status"] == "completed" and done["result_payload"]["log"]
        asset_id = done["result_payload"]["outputs"]["file"]["id"]
        assert client.get(f"/jobs/{job_id}").status_code == 200  # and now its JSON is cached too
        assert [j["id"] for j in client.get("/jobs/").json()] == [job_id]
        assert 0 < redis.pttl(f"ave:job:{job_id}") <= TTL_SECONDS * 1000
        assert 0 < redis.pttl(f"ave:job:{job_id}:log") <= TTL_SECONDS * 1000
        # A polling client's cached JSON of the record never outlives the record.
        assert 0 < redis.pttl(f"ave:job:{job_id}:json") <= TTL_SECONDS * 1000

        gone = wait_until(lambda: client.get(f"/jobs/{job_id}").status_code == 404, TTL_SECONDS + 5, "the job to expire")
        assert gone and client.get(f"/jobs/{job_id}").json() == {"detail": f"Job {job_id} not found"}
        assert client.get("/jobs/").json() == [] and client.get("/v1/jobs/?status=completed").json() == []
        assert not redis.exists(f"ave:job:{job_id}:log", f"ave:job:{job_id}:json")
        # The housekeeping loop (every 5 s) drops it from the indexes too.
        wait_until(lambda: redis.zscore("ave:jobs", job_id) is None, 15, "the listing index to be swept")
        assert redis.zscore("ave:jobs:expiry", job_id) is None
        # What it published stays.
        assert client.get(f"/assets/{asset_id}/content").text == "outlives its job (attempt 1)"
    redis.close()


def test_delete_a_finished_job_keeps_its_assets(client: TestClient[Any], settings: Settings) -> None:
    job_id = _submit(client, text="deleted job's output")
    done = wait_for(client, job_id)
    asset = done["result_payload"]["outputs"]["file"]
    wait_until(lambda: _job_files(settings, job_id) == ["out/result.txt"], 10, "the chunks to be deleted")
    # A late write (a task still running after a cancel) is deleted with the job.
    stray = Path(settings.media_url) / "jobs" / job_id / "chunks" / "late.bin"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"late")

    response = client.delete(f"/v1/jobs/{job_id}")
    assert response.status_code == 204 and response.content == b""
    assert client.get(f"/jobs/{job_id}").json() == {"detail": f"Job {job_id} not found"}
    assert job_id not in [j["id"] for j in client.get("/jobs/").json()]
    assert _job_files(settings, job_id) == ["out/result.txt"]
    assert client.get(f"/assets/{asset['id']}/content").text == "deleted job's output (attempt 1)"
    again = client.delete(f"/jobs/{job_id}")
    assert again.status_code == 404 and again.json() == {"detail": f"Job {job_id} not found"}


def test_delete_refuses_a_job_that_has_not_finished(client: TestClient[Any]) -> None:
    job_id = _submit(client, seconds=30)
    wait_for(client, job_id, statuses=("in_progress",))
    response = client.delete(f"/jobs/{job_id}")
    assert response.status_code == 409
    assert response.json() == {"detail": f"Job {job_id} is in_progress: only a finished job can be deleted; "
                                         f"cancel it first (POST /jobs/{job_id}/cancel)"}
    assert client.get(f"/jobs/{job_id}").json()["status"] == "in_progress"
    assert client.post(f"/jobs/{job_id}/cancel").status_code == 200
    wait_for(client, job_id)
    assert client.delete(f"/jobs/{job_id}").status_code == 204
    assert client.delete("/v1/jobs/job_nope").json() == {"detail": "Job job_nope not found"}
