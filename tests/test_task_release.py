"""A finished job leaves nothing on the cluster: its futures are released when it ends, not by the GC."""

from __future__ import annotations

import gc
import time
from typing import Any

from distributed import Client, LocalCluster
from litestar.testing import TestClient

from tests.conftest import wait_for


def _tasks_of(cluster: LocalCluster, job_ids: list[str]) -> list[str]:
    with Client(cluster.scheduler_address, timeout=10) as client:
        keys = client.run_on_scheduler(lambda dask_scheduler: [str(k) for k in dask_scheduler.tasks])
    return [k for k in keys if any(j in k for j in job_ids)]


def test_finished_jobs_hold_no_tasks_on_the_scheduler(client: TestClient[Any], dask_cluster: LocalCluster) -> None:
    gc.disable()  # what the garbage collector would free must not be what makes this pass
    try:
        ids = [client.post("/jobs/?job_type=fanout", json={"items": [1, 2, 3]}).json()["id"] for _ in range(3)]
        ids.append(client.post("/jobs/?job_type=deadline", json={}).json()["id"])  # one that fails
        for job_id in ids:
            assert wait_for(client, job_id, timeout=60)["status"] in ("completed", "failed")
        deadline = time.monotonic() + 5
        while (left := _tasks_of(dask_cluster, ids)) and time.monotonic() < deadline:
            time.sleep(0.1)  # the client tells the scheduler asynchronously
        assert left == [], left
    finally:
        gc.enable()
