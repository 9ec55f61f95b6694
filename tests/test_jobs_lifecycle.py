"""Jobs from queue to end: progress, priority, cancelling, failures and recovery."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis as redis_sync
from distributed import LocalCluster
from litestar.testing import TestClient

from scheduler.settings import Settings
from scheduler.records.jobs import JobStore
from server.app import create_app
from tests.conftest import wait_for, wait_until
from tests.steps_ops import Gate


def test_fanout_progress_moves_and_never_goes_down(client: TestClient[Any], settings: Settings) -> None:
    """Each task of the fan-out ends when the test opens its gate (test.steps), one at a time; after each,
    the job's progress is exactly its share: (1 + tasks done) / 8 (steps_fanout's weights: listed 1, each 6,
    joined 1, and joined waits on a gate too), whatever the speed of the machine."""
    job = client.post("/jobs/?job_type=steps_fanout", json={"items": [1, 2, 3, 4, 5, 6]}).json()
    gates = [Gate(Path(settings.media_url), job["id"], f"each-{i}") for i in range(6)]
    joined = Gate(Path(settings.media_url), job["id"], "joined")
    closed = list(range(6))
    seen: list[float] = []

    def progress() -> float:
        record = client.get(f"/jobs/{job['id']}").json()
        if record["result_payload"]:
            seen.append(record["result_payload"]["progress"])
        return seen[-1] if seen else 0.0

    def running() -> list[int]:
        """The tasks that have started and wait on their gates."""
        return [i for i in closed if gates[i].runs]

    try:
        for done in range(7):
            if done:
                # Only a task that runs can end: the others wait for one of the two workers.
                item = wait_until(running, 30, "a task of the fan-out to start")[-1]  # not always the first
                gates[item].open(1)
                closed.remove(item)
            expected = (1 + done) / 8
            reached = wait_until(lambda e=expected: (p := progress()) >= e - 1e-9 and p, 30, f"progress {expected}")
            assert reached == pytest.approx(expected), f"{done} tasks done: {seen}"
        joined.open(1)
        done_record = wait_for(client, job["id"], seen=lambda r: seen.append(r["result_payload"]["progress"])
                               if r["result_payload"] else None)
    finally:
        for gate in (*gates, joined):
            gate.open_all()
    assert done_record["status"] == "completed", done_record["error_message"]
    assert done_record["result_payload"]["outputs"] == {"joined": [1, 2, 3, 4, 5, 6]}
    assert seen == sorted(seen), f"progress went down: {seen}"
    assert all(0.0 <= p <= 1.0 for p in seen) and seen[-1] == 1.0
    assert [gate.runs for gate in (*gates, joined)] == [1] * 7
    messages = [e["message"] for e in done_record["result_payload"]["log"]]
    assert "each: 6 parallel tasks" in messages
    progress_lines = [m for m in messages if m.startswith("each: ") and " done" in m]
    assert progress_lines == [f"each: {k}/6 done" for k in range(1, 7)], progress_lines


def test_operator_failure_ends_failed_with_message(client: TestClient[Any]) -> None:
    job = client.post("/jobs/?job_type=broken", json={}).json()
    done = wait_for(client, job["id"])
    assert done["status"] == "failed"
    assert done["error_message"] == "The input is not usable: test failure (step 'boom')"
    assert done["completed_at"] is not None
    assert "Traceback" not in done["error_message"]


def test_cancel_running_job_stops_its_tasks(client: TestClient[Any], dask_cluster: LocalCluster) -> None:
    job = client.post("/jobs/?job_type=sleepy", json={"seconds": 30}).json()
    wait_for(client, job["id"], statuses=("in_progress",))
    response = client.post(f"/jobs/{job['id']}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["completed_at"] is not None
    # The Dask task is released: no key of this job stays on the scheduler.
    deadline = time.monotonic() + 10
    from distributed import Client

    with Client(dask_cluster.scheduler_address, timeout=10) as observer:
        while time.monotonic() < deadline:
            keys = observer.run_on_scheduler(lambda dask_scheduler: list(map(str, dask_scheduler.tasks)))
            if not any(job["id"] in k for k in keys):
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"tasks of {job['id']} still on the scheduler: {keys}")
        # The running operator stops at its next progress report, so the worker is free for
        # the next job long before the 30 s the task would have taken.
        while time.monotonic() < deadline:
            busy = observer.run(lambda dask_worker: len(dask_worker.state.executing))
            if not any(busy.values()):
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"a worker is still running the cancelled task: {busy}")
    final = client.get(f"/jobs/{job['id']}").json()
    assert final["status"] == "cancelled"
    again = client.post(f"/jobs/{job['id']}/cancel")
    assert again.status_code == 409
    assert again.json() == {"detail": f"Job {job['id']} is already cancelled"}
    assert client.post("/jobs/job_nope/cancel").status_code == 404


def test_priority_order_higher_first_fifo_within(settings: Settings) -> None:
    quiet = settings.model_copy(update={"run_dispatcher": False})
    with TestClient(app=create_app(quiet)) as client:
        order = [("a", 0), ("b", 5), ("c", 0), ("d", 10), ("e", -1), ("f", 5)]
        ids = {tag: client.post(f"/jobs/?job_type=sleepy&priority={p}", json={"tag": tag, "seconds": 0}).json()["id"]
               for tag, p in order}
    busy = settings.model_copy(update={"max_running_jobs": 1})
    with TestClient(app=create_app(busy)) as client:
        finished = [wait_for(client, job_id) for job_id in ids.values()]
    started = sorted(finished, key=lambda r: r["started_at"])
    assert [r["payload"]["tag"] for r in started] == ["d", "b", "f", "a", "c", "e"]


def test_store_transitions_are_guarded(redis_url: str) -> None:
    async def scenario() -> None:
        from redis import asyncio as aioredis

        from scheduler.errors import InvalidTransitionError

        redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
        store = JobStore(redis)
        job = await store.create("sleepy", {})
        assert await store.claim("d1") == job["id"]
        await store.report(job["id"], progress=0.5, messages=["half"])
        await store.report(job["id"], progress=0.2)
        assert (await store.get(job["id"]))["result_payload"]["progress"] == 0.5
        await store.complete(job["id"], {"outputs": {}})
        for action in (store.cancel(job["id"]), store.fail(job["id"], "late")):
            try:
                await action
            except InvalidTransitionError as exc:
                assert exc.current == "completed"
            else:
                raise AssertionError("a finished job changed status")
        assert (await store.get(job["id"]))["status"] == "completed"
        # The log keeps only the newest entries.
        small = JobStore(redis, log_limit=10)
        other = await small.create("sleepy", {})
        await small.claim("d1")
        await small.report(other["id"], messages=[f"m{i}" for i in range(25)])
        log = (await small.get(other["id"]))["result_payload"]["log"]
        assert [e["message"] for e in log] == [f"m{i}" for i in range(15, 25)]
        await redis.aclose()

    asyncio.run(scenario())


def test_dispatcher_restart_requeues_then_fails_after_max_attempts(settings: Settings, redis_url: str) -> None:
    """A job left in_progress by a dead dispatcher is re-queued, and failed after MAX_JOB_ATTEMPTS."""

    async def orphan(job_type: str, payload: dict[str, Any], attempts: int) -> str:
        from redis import asyncio as aioredis

        redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
        store = JobStore(redis)
        job = await store.create(job_type, payload)
        for _ in range(attempts):
            claimed = await store.claim("dead-dispatcher")
            assert claimed == job["id"]
            if _ < attempts - 1:
                await store.requeue(job["id"], "simulated restart")
        await redis.aclose()
        return job["id"]

    retried = asyncio.run(orphan("sleepy", {"tag": "again", "seconds": 0}, attempts=1))
    exhausted = asyncio.run(orphan("sleepy", {"tag": "never", "seconds": 0}, attempts=settings.max_job_attempts))
    with TestClient(app=create_app(settings)) as client:
        done = wait_for(client, retried)
        assert done["status"] == "completed"
        assert done["result_payload"]["outputs"] == {"tag": "again"}
        assert any("Re-queued" in e["message"] for e in done["result_payload"]["log"])
        failed = wait_for(client, exhausted)
        assert failed["status"] == "failed"
        assert f"interrupted {settings.max_job_attempts} times" in failed["error_message"]
    client_sync = redis_sync.Redis.from_url(redis_url)
    assert client_sync.hlen("ave:running") == 0
    client_sync.close()


def test_redis_outage_gives_503_and_recovers_without_losing_jobs(
    tmp_path: Path, dask_cluster: LocalCluster, graphs_dir: Path
) -> None:
    """A job's task ends on Dask while Redis is down: its result is kept and written once Redis is back.

    The task waits on a gate (test.steps) the test opens only once Redis is down, and the test sees the
    task end before it starts Redis again: the job certainly finished during the outage.
    """
    from scheduler.wiring.redis_server import EmbeddedRedis, _free_port

    port = _free_port()
    server = EmbeddedRedis(tmp_path / "outage", port=port)
    server.start()
    settings = Settings(redis_url=server.url, dask_scheduler_address=dask_cluster.scheduler_address,
                        data_dir=tmp_path / "data", graphs_dir=graphs_dir)
    gate: Gate | None = None
    try:
        with TestClient(app=create_app(settings)) as client:
            long_job = client.post("/jobs/?job_type=steps", json={"tag": "survivor"}).json()
            gate = Gate(Path(settings.media_url), long_job["id"], "step")
            wait_for(client, long_job["id"], statuses=("in_progress",))
            wait_until(lambda: gate.runs, 30, "the job's task to start on Dask")
            outage_began = datetime.now(UTC)
            server.stop()

            response = client.post("/jobs/?job_type=sleepy", json={})
            assert response.status_code == 503
            detail = response.json()["detail"]
            assert detail.startswith("Failed to enqueue job: Queue connection error: ")
            assert str(port) in detail and detail.endswith(".")
            assert set(response.json()) == {"detail"}

            diagnostics = client.get("/health/diagnostics")
            assert diagnostics.status_code == 200
            body = diagnostics.json()
            assert body["status"] == "degraded"
            assert body["queue"]["connected"] is False
            assert body["queue"]["broker_url"] == f"127.0.0.1:{port}/0"
            assert body["queue"]["error"]
            assert client.get("/health/").json()["status"] == "ok"
            assert client.get(f"/jobs/{long_job['id']}").status_code == 503

            gate.open(1)  # the task ends on Dask now, while Redis is down
            assert wait_until(lambda: gate.exit, 30, "the task to end during the outage") == "finished"
            assert client.get(f"/jobs/{long_job['id']}").status_code == 503, "Redis is still down"
            server.start()
            done = wait_for(client, long_job["id"], timeout=60)
            seen_done = datetime.now(UTC)
            assert done["status"] == "completed", done
            assert done["error_message"] is None
            assert done["result_payload"]["outputs"] == {"tag": "survivor"}
            assert done["result_payload"]["progress"] == 1.0
            # Started before the outage; finished during it, written as soon as Redis answered again.
            assert datetime.fromisoformat(done["started_at"]) < outage_began
            assert outage_began < datetime.fromisoformat(done["completed_at"]) <= seen_done, done
            assert gate.runs == 1, "the result was kept, not computed again after the outage"
            later = client.post("/jobs/?job_type=sleepy", json={"seconds": 0})
            assert later.status_code == 202
            assert wait_for(client, later.json()["id"])["status"] == "completed"
    finally:
        if gate is not None:
            gate.open_all()
        server.stop()


def test_worker_crash_costs_the_task_not_the_job(client: TestClient[Any], dask_cluster: LocalCluster) -> None:
    job = client.post("/jobs/?job_type=crashy", json={"tag": "alive"}).json()
    done = wait_for(client, job["id"], timeout=120)
    assert done["status"] == "completed", done["error_message"]
    assert done["result_payload"]["outputs"] == {"tag": "alive", "joined": [1, 2, 3]}
    assert any(e["message"] == "Survived a worker crash" for e in done["result_payload"]["log"])
    dask_cluster.wait_for_workers(2, timeout=60)  # the nanny restarts the dead worker


def test_an_unexpected_error_keeps_its_traceback_out_of_the_message_and_in_the_logs(settings: Settings) -> None:
    logs = {}
    for flag in (False, True):
        records: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.emit = records.append  # type: ignore[method-assign]
        with TestClient(app=create_app(settings.model_copy(update={"job_log_tracebacks": flag})), timeout=30) as client:
            # Attached once the app configured logging (its dictConfig replaces the handlers it finds).
            logging.getLogger("pipelines.run.runner").addHandler(handler)
            try:
                job = client.post("/jobs/?job_type=unexpected", json={}).json()
                done = wait_for(client, job["id"])
            finally:
                logging.getLogger("pipelines.run.runner").removeHandler(handler)
        assert done["status"] == "failed"
        # Short and human: no traceback in the message, whatever the setting.
        assert done["error_message"] == ("Internal error in step 'divide': ZeroDivisionError: division by zero. The "
                                         "job can be submitted again; if it fails the same way, please report it")
        logs[flag] = "\n".join(e["message"] for e in done["result_payload"]["log"])
        # The dispatcher's log has the traceback, with the job id.
        lines = [r.getMessage() for r in records if job["id"] in r.getMessage()]
        assert any("Traceback" in m and "in _ratio" in m for m in lines), lines
    assert "Traceback" not in logs[False]
    assert "Traceback of task divide-" in logs[True] and "in _ratio" in logs[True] and "ZeroDivisionError" in logs[True]
