"""Following a job without downloading it again and again: ETag/304 while it is unchanged, and only new log lines."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from tests.conftest import wait_for


def test_unchanged_is_304_and_log_since_gives_only_newer_entries(client: TestClient[Any]) -> None:
    job = client.post("/jobs/?job_type=fanout", json={"items": [1, 2, 3]}).json()
    done = wait_for(client, job["id"])
    full = client.get(f"/v1/jobs/{job['id']}")
    etag = full.headers["etag"]
    assert full.json() == done  # the documented record, unchanged by the extension
    again = client.get(f"/v1/jobs/{job['id']}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert client.get(f"/jobs/{job['id']}", headers={"If-None-Match": 'W/"0-0"'}).status_code == 200

    log = done["result_payload"]["log"]
    assert len(log) >= 3
    since = log[-3]["timestamp"]
    newer = client.get(f"/jobs/{job['id']}", params={"log_since": since}).json()
    assert newer["result_payload"]["log"] == [e for e in log if e["timestamp"] > since]
    assert 0 < len(newer["result_payload"]["log"]) < len(log)
    assert {k: v for k, v in newer.items() if k != "result_payload"} == \
        {k: v for k, v in done.items() if k != "result_payload"}
    assert client.get(f"/jobs/{job['id']}", params={"log_since": log[-1]["timestamp"]}).json()[
        "result_payload"]["log"] == []
