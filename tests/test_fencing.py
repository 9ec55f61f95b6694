"""Fenced job ownership: a dispatcher that lost its job (re-queued, claimed again by another) changes nothing.

Real parts: the session's Redis server and Dask LocalCluster, two real :class:`Dispatcher` instances in one
event loop, the ``parts`` graph of tests/retention_ops.py (chunks, then one output file).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from distributed import Client, LocalCluster
from redis import asyncio as aioredis

from operators.types import StoredFile
from scheduler.records.assets import AssetStore
from scheduler.dispatch.dispatcher import Dispatcher
from scheduler.errors import InvalidTransitionError, QueueUnavailableError
from scheduler.records.fencing import JobLostError, Lease
from scheduler.admission.graphs import GraphCatalog
from scheduler.dispatch.outputs import publish_outputs
from scheduler.dispatch.recovery import Recovery
from scheduler.wiring.redis_server import EmbeddedRedis
from scheduler.wiring.runtime import Runtime
from scheduler.settings import Settings
from scheduler.records.jobs import JobStore
from tests.retention_ops import add_parts_graph

PROJECT = "proj_fence"


@pytest.fixture()
def graphs_dir(graphs_dir: Path) -> Path:
    add_parts_graph(graphs_dir)
    return graphs_dir


async def _until(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# -- the store's fenced scripts -------------------------------------------------------------------
def test_a_stale_owner_is_refused_every_write(redis_url: str) -> None:
    async def scenario() -> None:
        redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
        store = JobStore(redis)
        job = await store.create("sleepy", {})
        stale = await store.claim_lease("d1")
        assert stale == Lease(job["id"], "d1", 1)
        await store.report(job["id"], progress=0.3, lease=stale)
        # d1 stopped heartbeating: recovery re-queues (fenced with what it saw), d2 claims attempt 2.
        assert await store.requeue(job["id"], "Re-queued: d1 stopped", lease=stale)
        fresh = await store.claim_lease("d2")
        assert fresh == Lease(job["id"], "d2", 2)
        await store.heartbeat("d2", 15, [fresh])

        refused = [
            store.complete(job["id"], {"outputs": {"stale": True}}, lease=stale),
            store.fail(job["id"], "stale failure", lease=stale),
            store.report(job["id"], progress=0.9, messages=["stale line"], lease=stale),
            store.confirm(stale, 15),
            store.requeue(job["id"], "stale requeue", lease=stale),
        ]
        for call in refused:
            with pytest.raises(JobLostError) as lost:
                await call
            assert lost.value.lease == stale
        assert await store.heartbeat("d1", 15, [stale]) == [job["id"]]
        assert await store.heartbeat("d2", 15, [fresh]) == []

        record = await store.get(job["id"])
        assert record["status"] == "in_progress" and record["error_message"] is None
        assert record["result_payload"]["progress"] == 0.3
        assert "stale line" not in [e["message"] for e in record["result_payload"]["log"]]
        held = await store.internal(job["id"])
        assert (held["owner"], held["attempts"]) == ("d2", "2")

        # The holder's own writes go through.
        assert await store.confirm(fresh, 15) == "in_progress"
        await store.complete(job["id"], {"outputs": {"fresh": True}}, lease=fresh)
        done = await store.get(job["id"])
        assert done["status"] == "completed" and done["result_payload"]["outputs"] == {"fresh": True}
        await redis.aclose()

    asyncio.run(scenario())


def test_requeue_of_a_job_claimed_again_is_refused(redis_url: str) -> None:
    """Between recovery's look (orphans) and its requeue, another recovery re-queued the job and d3 claimed it."""

    async def scenario() -> None:
        redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
        store = JobStore(redis)
        job = await store.create("sleepy", {})
        seen = await store.claim_lease("dead")
        assert seen is not None and [j for j, _ in await store.orphans()] == [job["id"]]
        assert await store.requeue(job["id"], "the other recovery", lease=seen)
        taken = await store.claim_lease("d3")
        assert taken is not None
        with pytest.raises(JobLostError, match="held by d3"):
            await store.requeue(job["id"], "late recovery", lease=seen)
        with pytest.raises(JobLostError, match="held by d3"):
            await store.fail(job["id"], "late recovery gives up", lease=seen, expect_dead=True)
        # d3 is alive: even its own lease cannot be re-queued by a recovery while its heartbeat lasts.
        await store.heartbeat("d3", 15, [taken])
        with pytest.raises(JobLostError, match="alive"):
            await store.requeue(job["id"], "d3 is alive", lease=taken)
        held = await store.internal(job["id"])
        assert (held["status"], held["owner"], held["attempts"]) == ("in_progress", "d3", "2")
        await redis.aclose()

    asyncio.run(scenario())


def test_asset_records_are_written_only_while_the_lease_holds(redis_url: str) -> None:
    """Redis itself checks the lease with each asset record a run publishes: a stale run's write, however
    late it arrives, stores nothing; a retried write of the same run overwrites its record (one asset)."""

    async def scenario() -> None:
        redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
        store, assets = JobStore(redis), AssetStore(redis)
        job = await store.create("sleepy", {})
        stale = await store.claim_lease("d1")
        assert stale is not None and await store.requeue(job["id"], "Re-queued: d1 stopped", lease=stale)
        fresh = await store.claim_lease("d2")
        assert fresh is not None
        output = {"video": StoredFile(path=f"jobs/{job['id']}/out.mp4", kind="video", content_type="video/mp4",
                                      size=10)}

        def publish(lease: Lease) -> Awaitable[Any]:
            return publish_outputs(output, assets, project_id=PROJECT, job_id=job["id"],
                                   write=lambda commands: store.fenced_write(lease, commands),
                                   id_seed=f"{job['id']}.a{lease.attempt}")

        with pytest.raises(JobLostError, match="held by d2"):
            await publish(stale)
        assert await assets.list(PROJECT) == []
        first = await publish(fresh)
        again = await publish(fresh)  # as after a reply lost in a Redis outage
        assert first["video"]["id"] == again["video"]["id"]
        listed = await assets.list(PROJECT)
        assert [a["id"] for a in listed] == [first["video"]["id"]] and listed[0]["job_id"] == job["id"]
        await store.cancel(job["id"])
        with pytest.raises(InvalidTransitionError):
            await store.fenced_write(fresh, [["SET", "ave:test:never", "1"]])
        assert await redis.get("ave:test:never") is None
        await redis.aclose()

    asyncio.run(scenario())


def test_a_requeued_job_goes_back_to_its_place_in_the_queue(redis_url: str) -> None:
    """An interrupted job was already under way: it runs before the jobs submitted after it, not after."""

    async def scenario() -> None:
        redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
        store = JobStore(redis, queue_name=f"place-{time.monotonic_ns()}")
        first = await store.create("sleepy", {})
        later = [await store.create("sleepy", {}) for _ in range(2)]
        lease = await store.claim_lease("d1")
        assert lease is not None and lease.job_id == first["id"]
        assert await store.requeue(first["id"], "Re-queued: d1 stopped", lease=lease)
        order = [(await store.claim_lease("d2")) for _ in range(3)]
        assert [lease.job_id for lease in order if lease] == [first["id"], *(j["id"] for j in later)]
        await redis.aclose()

    asyncio.run(scenario())


def test_a_claim_whose_reply_was_lost_is_requeued_by_its_own_dispatcher(redis_url: str) -> None:
    """Redis ran d1's claim but its answer never came (killed as it answered): the job is in_progress under
    d1, whose heartbeat lives, and d1 does not run it. d1's recovery re-queues it on its second look."""

    async def scenario() -> None:
        redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
        store = JobStore(redis)
        lost_reply, running = await store.create("sleepy", {}), await store.create("sleepy", {})
        lease = await store.claim_lease("d1")  # the reply "lost": d1 never adds it to what it runs
        assert lease is not None and lease.job_id == lost_reply["id"]
        assert await store.claim_lease("d1") is not None  # the job d1 does run
        await store.heartbeat("d1", 15)
        recovery = Recovery(store, "d1", max_attempts=3)
        # First look: possibly a claim whose answer is on its way; left alone.
        assert await recovery.run([running["id"]]) == []
        assert await store.holder(lost_reply["id"]) == ("in_progress", "d1", 1)
        assert await recovery.run([running["id"]]) == [lost_reply["id"]]
        assert await store.status(lost_reply["id"]) == "queued"
        assert await store.holder(running["id"]) == ("in_progress", "d1", 1)
        log = [e["message"] for e in (await store.get(lost_reply["id"]))["result_payload"]["log"]]
        assert any("never learnt" in m and "attempt 1 of 3" in m for m in log), log
        # Claimed again (attempt 2) and run by d1 this time: a stray seen with another attempt is not one.
        again = await store.claim_lease("d1")
        assert again == Lease(lost_reply["id"], "d1", 2)
        assert await recovery.run([running["id"], lost_reply["id"]]) == []
        assert await store.holder(lost_reply["id"]) == ("in_progress", "d1", 2)
        await redis.aclose()

    asyncio.run(scenario())


# -- two real dispatchers --------------------------------------------------------------------------
class _Two:
    """A runtime (the app's wiring, without its dispatcher) and Dask client for two Dispatchers in one loop."""

    def __init__(self, settings: Settings, graphs_dir: Path) -> None:
        self.settings = settings
        self.runtime = Runtime(settings=settings, catalog=GraphCatalog.load(graphs_dir))
        self.runtime.storage_root_ready()
        self.runtime.open_redis()
        self.client: Client | None = None
        self.dispatchers: list[Dispatcher] = []

    async def start(self, address: str) -> None:
        self.client = await Client(address, asynchronous=True)

    async def dispatcher(self, owner: str) -> Dispatcher:
        assert self.client is not None
        dispatcher = Dispatcher(self.runtime.service, self.client, self.settings, owner=owner)
        await dispatcher.start()
        self.dispatchers.append(dispatcher)
        return dispatcher

    async def close(self) -> None:
        for dispatcher in self.dispatchers:
            await dispatcher.stop()
        if self.client is not None:
            await self.client.close()
        await self.runtime.close()

    async def scheduler_keys(self, job_id: str) -> list[str]:
        assert self.client is not None
        keys = await self.client.run_on_scheduler(lambda dask_scheduler: [str(k) for k in dask_scheduler.tasks])
        return [k for k in keys if job_id in k]


def _freeze(dispatcher: Dispatcher) -> None:
    """Stop every loop of the dispatcher (claim, heartbeat, watch, flush) but not its jobs: a dispatcher whose
    Redis writes hang, while its graph keeps running on Dask."""
    for task in dispatcher._tasks:
        task.cancel()


def test_a_stale_dispatcher_that_finishes_its_graph_publishes_nothing(
        settings: Settings, graphs_dir: Path, dask_cluster: LocalCluster, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="scheduler.dispatch.dispatcher")
    media = Path(settings.media_url)

    async def scenario() -> None:
        two = _Two(settings, graphs_dir)
        await two.start(dask_cluster.scheduler_address)
        store, assets = two.runtime.store, two.runtime.assets
        try:
            version = await two.runtime.clip_versions.create(project_id=PROJECT, timeline={"tracks": []})
            job = await two.runtime.service.submit("parts", {"project_id": PROJECT, "seconds": 2.0},
                                                   clip_version_id=version["id"])
            job_id = job["id"]
            stale = await two.dispatcher("d1-stale")
            await _until(lambda: _held_by(store, job_id, "d1-stale"), 20, "d1 to claim the job")
            _freeze(stale)
            await store.release_owner("d1-stale")  # its heartbeat lapses

            fresh = await two.dispatcher("d2")  # recovers at once: re-queues the job, then claims attempt 2
            await _until(lambda: _held_by(store, job_id, "d2"), 20, "d2 to take the job over")
            await _until(lambda: _status_is(store, job_id, "completed"), 60, "d2 to complete the job")
            # The stale run finished its graph too (2 s, like d2's), was refused at its pre-publish check.
            await _until(lambda: _no_jobs(stale), 20, "the stale run to end")
            await _until(lambda: _no_keys(two, job_id), 20, "the job's tasks to leave the scheduler")

            record = await store.get(job_id)
            fields = await store.internal(job_id)
            assert (fields["owner"], fields["attempts"]) == ("d2", "2")
            published = await assets.list(PROJECT)
            assert [a["job_id"] for a in published] == [job_id], "exactly one set of outputs is registered"
            assert record["result_payload"]["outputs"]["file"]["id"] == published[0]["id"]
            renders = (await two.runtime.clip_versions.get(version["id"]))["renders"]
            assert [r["outputs"]["file"]["id"] for r in renders] == [published[0]["id"]], renders
            messages = [e["message"] for e in record["result_payload"]["log"]]
            assert sum("Graph 'parts' finished" in m for m in messages) == 1, messages
            assert any("Re-queued: dispatcher d1-stale stopped" in m for m in messages)
            assert fresh.running_jobs == []
            # d2's run ended: its intermediates went, the published output stays readable.
            assert not (media / "jobs" / job_id / "chunks").exists()
            assert (media / published[0]["path"]).read_text().startswith("hello (attempt ")
        finally:
            await two.close()

    asyncio.run(scenario())
    lost = [r.getMessage() for r in caplog.records if "lost job" in r.getMessage()]
    assert lost and "d1-stale" in lost[0] and "publishing nothing" in lost[0], lost


def test_a_completion_whose_reply_was_lost_keeps_its_outputs(
        settings: Settings, graphs_dir: Path, dask_cluster: LocalCluster) -> None:
    """The final write reached Redis, its answer did not (Redis went away): the retry finds the job completed
    under this very lease, and the dispatcher keeps what it published instead of rolling it back.

    A wrapper drops the first answer: a real server cannot be killed at that instant reliably."""

    async def scenario() -> None:
        two = _Two(settings, graphs_dir)
        await two.start(dask_cluster.scheduler_address)
        store = two.runtime.store
        real_complete, calls = store.complete, []

        async def complete_then_lose_the_reply(job_id: str, result: dict[str, Any], **kwargs: Any) -> None:
            calls.append(job_id)
            await real_complete(job_id, result, **kwargs)
            if len(calls) == 1:
                raise QueueUnavailableError("Connection closed by server.")

        store.complete = complete_then_lose_the_reply  # type: ignore[method-assign]
        try:
            job = await two.runtime.service.submit("parts", {"project_id": PROJECT})
            await two.dispatcher("d1")
            await _until(lambda: _status_is(store, job["id"], "completed"), 60, "the job to complete")
            await _until(lambda: _no_jobs(two.dispatchers[0]), 20, "the run to end")
            assert len(calls) == 2, calls
            record = await store.get(job["id"])
            published = await two.runtime.assets.list(PROJECT)
            assert [a["id"] for a in published] == [record["result_payload"]["outputs"]["file"]["id"]]
            assert (Path(settings.media_url) / published[0]["path"]).is_file()
        finally:
            await two.close()

    asyncio.run(scenario())


def test_a_dispatcher_that_sees_its_job_taken_stops_its_tasks(
        settings: Settings, graphs_dir: Path, dask_cluster: LocalCluster) -> None:
    async def scenario() -> None:
        two = _Two(settings, graphs_dir)
        await two.start(dask_cluster.scheduler_address)
        store = two.runtime.store
        try:
            job = await two.runtime.service.submit("parts", {"project_id": PROJECT, "seconds": 30.0})
            job_id = job["id"]
            first = await two.dispatcher("d1")
            lease = await _until(lambda: _held_by(store, job_id, "d1"), 20, "d1 to claim the job")
            await _until(lambda: _has_keys(two, job_id), 20, "the job's task on the scheduler")
            first._tasks[0].cancel()  # d1 takes no more jobs (else it claims this one again at once)
            # As recovery would after d1's heartbeat lapsed: the job is re-queued under d1 (attempt 1).
            await store.release_owner("d1")
            assert await store.requeue(job_id, "Re-queued: d1 looked dead", lease=lease)
            # d1 notices (its watch loop, else its heartbeat) and cancels its Dask task well before its 30 s.
            await _until(lambda: _no_keys(two, job_id), 10, "attempt 1's task to be cancelled")
            await _until(lambda: _no_jobs(first), 10, "d1 to drop the job")
            record = await store.get(job_id)
            assert record["status"] == "queued", "the stale run wrote a final state"
            assert record["completed_at"] is None and record["error_message"] is None
            assert await two.runtime.assets.list(PROJECT) == []
            # The chunks it wrote stay: they are the next attempt's to overwrite (and delete).
            assert (Path(settings.media_url) / "jobs" / job_id / "chunks" / "part-0.bin").is_file()
            await store.cancel(job_id, message="done with this test")
        finally:
            await two.close()

    asyncio.run(scenario())


async def _held_by(store: JobStore, job_id: str, owner: str, attempt: int | None = None) -> Lease | None:
    held = await store.holder(job_id)
    if held is None or held[0] != "in_progress" or held[1] != owner or (attempt and held[2] != attempt):
        return None
    return Lease(job_id, owner, held[2])


async def _status_is(store: JobStore, job_id: str, status: str) -> bool:
    return await store.status(job_id) == status


async def _no_jobs(dispatcher: Dispatcher) -> bool:
    return not dispatcher.running_jobs


async def _has_keys(two: _Two, job_id: str) -> bool:
    return bool(await two.scheduler_keys(job_id))


async def _no_keys(two: _Two, job_id: str, attempt: int | None = None) -> bool:
    keys = await two.scheduler_keys(job_id)
    if attempt == 1:  # attempt 1's keys name the job id alone; later ones add ".a<n>"
        keys = [k for k in keys if ".a" not in k.split(job_id, 1)[1]]
    return not keys


def test_a_read_after_redis_restarted_does_not_fail_on_a_stale_connection(tmp_path: Path) -> None:
    """The pooled connection to the old server fails its first command: a read is sent once more (a 503
    for GET /jobs/{id} just after Redis came back, seen in the chaos runs); a write is not (it might run twice)."""
    async def read_across_a_restart(server: EmbeddedRedis) -> None:
        redis = aioredis.Redis.from_url(server.url, decode_responses=True)
        store = JobStore(redis)
        job = await store.create("sleepy", {})
        assert (await store.get(job["id"]))["status"] == "queued"  # the pool now holds a connection
        server.stop()
        server.start()
        assert (await store.get(job["id"]))["status"] == "queued"  # the data survived: the same folder
        await redis.aclose()

    with socket.socket() as probe:  # a fixed port: the restarted server must be where the pool points
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = EmbeddedRedis(tmp_path / "redis", port=port)
    server.start()
    try:
        asyncio.run(read_across_a_restart(server))
    finally:
        server.stop()
