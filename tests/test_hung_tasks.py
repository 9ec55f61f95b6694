"""A task hung past its deadline (in C code, or any call that never returns) does not keep its worker's thread.

Dask never interrupts a running task: a job that fails at a deadline releases its futures, but the thread runs
on. After HUNG_TASK_GRACE_SECONDS the worker that still runs the overdue task is restarted through its nanny
(pipelines/run/stuck.py), so the cluster does not lose a thread per such job. Real parts: the session's Redis
server, a LocalCluster of its own (one worker process with a nanny and one thread, so the hung task holds the
whole cluster), the app's dispatcher; and an in-process cluster, whose worker has no nanny.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from distributed import Client, LocalCluster
from litestar.testing import TestClient

from operators.storage import Storage
from pipelines.errors import JobFailedError
from pipelines.payload import bind_payload
from pipelines.run.runner import GraphRun, JobInfo
from scheduler.admission.graphs import GraphCatalog
from scheduler.settings import Settings
from server.app import create_app
from tests import hung_ops
from tests.conftest import wait_for, wait_until


@pytest.fixture()
def graphs_dir(graphs_dir: Path) -> Path:
    hung_ops.add_hung_graph(graphs_dir)
    return graphs_dir


def _workers(dask: Client) -> dict[str, str]:
    """worker address -> its nanny's address, as the scheduler sees them now."""
    return {addr: str(info.get("nanny")) for addr, info in dask.scheduler_info(n_workers=-1)["workers"].items()}


def _messages(client: TestClient[Any], job_id: str) -> list[str]:
    return [entry["message"] for entry in client.get(f"/jobs/{job_id}").json()["result_payload"]["log"]]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_the_worker_a_timed_out_task_still_holds_is_restarted_and_the_next_job_runs_at_once(
        redis_url: str, graphs_dir: Path, tmp_path: Path) -> None:
    records, logger = _Records(), logging.getLogger("pipelines.run.stuck")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                      memory_limit="2GiB", preload=["operators"]) as cluster, Client(cluster) as dask:
        before = _workers(dask)
        assert len(before) == 1 and None not in before.values()
        settings = Settings(redis_url=redis_url, dask_scheduler_address=cluster.scheduler_address,
                            data_dir=tmp_path / "data", graphs_dir=graphs_dir, max_running_jobs=2,
                            hung_task_grace_seconds=1)
        with TestClient(app=create_app(settings), timeout=30) as client:
            logger.addHandler(records)  # the app configures logging as it starts
            try:
                job = client.post("/jobs/?job_type=hung", json={}).json()
                done = wait_for(client, job["id"], timeout=15)
                assert done["status"] == "failed", done
                assert done["error_message"].startswith("The job's step 'stuck' ran past its 1s timeout"), done

                # The only worker's only thread still sleeps in the cancelled task (for 60 s): after the 1 s grace,
                # the nanny starts a fresh worker process in its place.
                after = wait_until(lambda: (now := _workers(dask)) and set(now) != set(before) and now, 20,
                                   "the worker that still ran the timed-out task to be restarted")
                assert list(after.values()) == list(before.values()), (before, after)  # the same nanny
                assert not set(after) & set(before), (before, after)  # a fresh worker
                lines = wait_until(lambda: [m for m in _messages(client, job["id"]) if m.startswith("Worker ")], 10,
                                   "the restart to be written in the job's log")
                assert f"Worker {next(iter(before))} still runs task stuck-" in lines[0], lines
                assert "restarting it" in lines[0], lines
                logged = [m for m in records.messages if "restarting it through its nanny" in m]
                assert logged and logged[0].startswith(f"job {job['id']}: "), logged

                # The cluster has its thread back: a job runs at once, not after the hung call's 60 s.
                started = time.monotonic()
                quick = client.post("/jobs/?job_type=hung", json={"seconds": 0.2}).json()
                assert wait_for(client, quick["id"], timeout=15)["status"] == "completed"
                assert time.monotonic() - started < 8
            finally:
                logger.removeHandler(records)


def test_a_worker_without_a_nanny_is_left_as_it_is_and_said_so(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """The job's own deadline (MAX_JOB_SECONDS) this time; the in-process worker has no nanny to restart it."""
    caplog.set_level(logging.INFO, logger="pipelines.run.stuck")
    folder = tmp_path / "graphs"
    folder.mkdir()
    hung_ops.add_hung_graph(folder)
    graph = GraphCatalog.load(folder).get("hung")

    async def scenario() -> list[str]:
        async with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0",
                                asynchronous=True) as cluster, Client(cluster, asynchronous=True) as client:
            lines: list[str] = []
            run = GraphRun(client, graph, JobInfo(id="job_hung", type="hung"), values=bind_payload(
                graph, {"seconds": 4}).values, storage=Storage(str(tmp_path / "media")), on_log=lines.append,
                max_seconds=0.5, hung_task_grace=1)
            started = time.monotonic()
            with pytest.raises(JobFailedError, match="ran past its 0.5s limit"):
                await asyncio.wait_for(run.run(), 10)
            assert time.monotonic() - started < 2.5  # the job's end does not wait for the check
            assert run.hung_check is not None
            await asyncio.wait_for(run.hung_check, 10)
            assert time.monotonic() - started < 3.5  # checked after the grace, while the task still sleeps
            return lines

    lines = asyncio.run(scenario())
    said = [line for line in lines if "no nanny" in line]
    assert said and said[0].startswith("Worker ") and "still runs task stuck-job_hung" in said[0], lines
    assert "cannot be restarted" in said[0], said
    logged = [r.getMessage() for r in caplog.records if "cannot be restarted" in r.getMessage()]
    assert logged and logged[0].startswith("job job_hung: "), logged
