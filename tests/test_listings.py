"""Listings cost about their own length, whatever the store holds; asset updates are atomic (real Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis import asyncio as aioredis

from scheduler.records import keys
from scheduler.records.assets import AssetStore
from scheduler.records.fencing import Lease
from scheduler.records.jobs import JobStore

T = TypeVar("T")


def _run(redis_url: str, scenario: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    async def main() -> T:
        redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            return await scenario(redis)
        finally:
            await redis.aclose()

    return asyncio.run(main())


async def _cost(redis: aioredis.Redis, call: Callable[[], Awaitable[T]]) -> tuple[T, int, int]:
    """``call()``'s result, the job records it read (calls of the read script) and the bytes Redis sent back
    (from INFO: this test's connection alone talks to the server meanwhile)."""
    before, stats = await redis.info("commandstats"), await redis.info("stats")
    result = await call()
    after, stats_after = await redis.info("commandstats"), await redis.info("stats")
    reads = after.get("cmdstat_evalsha", {}).get("calls", 0) - before.get("cmdstat_evalsha", {}).get("calls", 0)
    sent = stats_after["total_net_output_bytes"] - stats["total_net_output_bytes"]
    return result, reads, sent


def test_a_job_listing_page_costs_its_own_length(redis_url: str) -> None:
    async def scenario(redis: aioredis.Redis) -> dict[str, Any]:
        await redis.flushdb()
        store = JobStore(redis, queue_name="listing")
        old = [await store.create("ingest", {"n": i}) for i in range(5)]
        for job in old:  # the five oldest jobs fail: a status filter must not scan the 1,500 newer ones
            lease = await store.claim_lease("d1")
            assert lease is not None and lease.job_id == job["id"]
            await store.fail(job["id"], "boom", lease=Lease(job["id"], "d1", 1))
        for i in range(1500):
            await store.create("render" if i % 2 else "export", {"n": i})
        newest = await store.list(limit=10)
        failed, failed_cmds, _ = await _cost(redis, lambda: store.list(status="failed", limit=10))
        page, page_cmds, _ = await _cost(redis, lambda: store.list(limit=10))
        typed, typed_cmds, _ = await _cost(redis, lambda: store.list(job_type="ingest", limit=3))
        return {"newest": newest, "failed": failed, "failed_cmds": failed_cmds, "page": page,
                "page_cmds": page_cmds, "typed": typed, "typed_cmds": typed_cmds}

    got = _run(redis_url, scenario)
    assert [j["payload"]["n"] for j in got["newest"]] == list(range(1499, 1489, -1))
    assert [j["status"] for j in got["failed"]] == ["failed"] * 5
    assert [j["payload"]["n"] for j in got["failed"]] == [4, 3, 2, 1, 0]
    assert [j["payload"]["n"] for j in got["typed"]] == [4, 3, 2]
    # Each page reads its own records (scanning every job for the 5 failed ones read 1,505).
    assert (got["page_cmds"], got["failed_cmds"], got["typed_cmds"]) == (10, 5, 3)


def test_an_expired_job_is_skipped_and_leaves_the_type_index(redis_url: str) -> None:
    async def scenario(redis: aioredis.Redis) -> tuple[list[str], int]:
        await redis.flushdb()
        store = JobStore(redis, queue_name="listing")
        jobs = [await store.create("transcribe", {"n": i}) for i in range(3)]
        await redis.delete(keys.job(jobs[1]["id"]))  # as if its record had expired
        listed = await store.list(job_type="transcribe", limit=10)
        return [j["id"] for j in listed], await redis.zcard(keys.jobs_of_type("transcribe"))

    listed, left = _run(redis_url, scenario)
    assert len(listed) == 2 and left == 2


def test_an_asset_listing_page_reads_only_that_page(redis_url: str) -> None:
    async def scenario(redis: aioredis.Redis) -> dict[str, Any]:
        await redis.flushdb()
        assets = AssetStore(redis)
        for i in range(2000):
            await assets.create(path=f"uploads/{i}.mp4", kind="video" if i % 10 else "audio",
                                content_type="video/mp4", size=i, project_id="p_big", filename=f"{i}.mp4")
        page, _, sent = await _cost(redis, lambda: assets.list("p_big", limit=10))
        audio = await assets.list("p_big", kind="audio", limit=3)
        return {"page": page, "sent": sent, "audio": audio}

    got = _run(redis_url, scenario)
    assert [a["size"] for a in got["page"]] == list(range(1999, 1989, -1))
    assert [a["size"] for a in got["audio"]] == [1990, 1980, 1970]
    # Reading every record of the project to sort them sends ~500 KB; a page of 10, a few KB.
    assert got["sent"] < 20_000, got["sent"]


def test_concurrent_asset_updates_lose_nothing_and_keep_the_kind_index(redis_url: str) -> None:
    async def scenario(redis: aioredis.Redis) -> tuple[dict[str, Any], list[str], list[str]]:
        await redis.flushdb()
        assets = AssetStore(redis)
        record = await assets.create(path="uploads/a.json", kind="text", content_type="application/json",
                                     size=1, project_id="p_upd")
        others = [aioredis.Redis.from_url(redis_url, decode_responses=True) for _ in range(8)]
        try:
            await asyncio.gather(*(AssetStore(others[i % 8]).update(record["id"], **{f"field_{i}": i})
                                   for i in range(40)))
        finally:
            for other in others:
                await other.aclose()
        await assets.update(record["id"], kind="transcript")
        return (await assets.get(record["id"]), [a["id"] for a in await assets.list("p_upd", kind="transcript")],
                [a["id"] for a in await assets.list("p_upd", kind="text")])

    final, transcripts, texts = _run(redis_url, scenario)
    assert all(final.get(f"field_{i}") == i for i in range(40)), final
    assert transcripts == [final["id"]] and texts == []


def test_pages_follow_the_link_header_to_the_end_without_repeats(client: Any) -> None:
    for i in range(7):
        assert client.post("/jobs/?job_type=sleepy", json={"seconds": 0, "tag": f"t{i}", "project_id": "p_pages"}
                           ).status_code == 202
    assert client.post("/jobs/?job_type=sleepy", json={"seconds": 0, "project_id": "p_other"}).status_code == 202
    seen: list[str] = []
    url: str | None = "/v1/jobs/?project_id=p_pages&limit=3"
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.text
        seen += [job["payload"]["tag"] for job in response.json()]
        link = response.headers.get("link")
        url = link.split(">", 1)[0].lstrip("<") if link else None
        assert url is None or ('rel="next"' in link and "limit=3" in url and "project_id=p_pages" in url)
    assert seen == [f"t{i}" for i in range(6, -1, -1)]
    foreign = client.get("/jobs/?cursor=not-a-cursor")  # names no record: nothing comes after it
    assert foreign.status_code == 200 and foreign.json() == [] and "link" not in foreign.headers
