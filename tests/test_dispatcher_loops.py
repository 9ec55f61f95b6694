"""The dispatcher's background loops survive what kills them: a supervisor logs, restarts and shows them."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient
from redis.exceptions import ResponseError

from scheduler.records.jobs import JobStore
from scheduler.settings import Settings
from server.app import create_app
from tests.conftest import wait_for, wait_until


def test_a_watch_loop_killed_by_a_redis_error_comes_back_and_still_notices_a_cancel(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    failures = {"left": 3, "seen": 0}
    holder = JobStore.holder

    async def read_only_replica(self: JobStore, job_id: str) -> Any:
        # What a Redis failover answers for a while: an error no loop expects (not a connection error).
        if failures["left"] > 0:
            failures["left"] -= 1
            failures["seen"] += 1
            raise ResponseError("READONLY You can't write against a read only replica.")
        return await holder(self, job_id)

    with TestClient(app=create_app(settings), timeout=30) as client:
        job = client.post("/jobs/?job_type=sleepy", json={"seconds": 30}).json()
        wait_for(client, job["id"], statuses=("in_progress",))
        monkeypatch.setattr(JobStore, "holder", read_only_replica)
        dispatcher = client.app.state.runtime.dispatcher
        wait_until(lambda: any(s.startswith("restarting: ResponseError") for s in dispatcher.loops.values()) or None,
                   10, "the watch loop to die and be reported")
        assert client.get("/health/diagnostics").json()["dispatcher"]["loops"]["watch_loop"].startswith(
            "restarting: ResponseError: READONLY") or failures["left"] == 0
        assert client.post(f"/jobs/{job['id']}/cancel").status_code == 200
        # The restarted loop notices the cancel: the job leaves the dispatcher long before its 30 s nap ends.
        wait_until(lambda: (not dispatcher.running_jobs) or None, 15, "the cancelled job to be let go")
        wait_until(lambda: dispatcher.loops.get("watch_loop") == "running" or None, 5, "the loop to run again")
        diagnostics = client.get("/health/diagnostics").json()
    assert failures["seen"] == 3
    assert diagnostics["dispatcher"]["loops"] == {"claim_loop": "running", "heartbeat_loop": "running",
                                                  "watch_loop": "running", "flush_loop": "running"}
