"""Who computes a cache key: claims in a real Redis, two jobs' caches on one index and one media store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis import asyncio as aioredis

from operators.storage import Storage
from operators.types import StoredFile
from pipelines.cache import node as cache_node
from pipelines.cache.node import JobCache
from operators.registry import OperatorRegistry
from scheduler.cache.index import RedisCacheIndex


def _op() -> object:
    registry = OperatorRegistry()
    return registry.register("t.op", lambda value: value, version=1)


async def _caches(redis_url: str, root: Path) -> tuple[aioredis.Redis, JobCache, JobCache]:
    redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    index = RedisCacheIndex(redis, max_bytes=10**9, ttl_seconds=0)
    storage = Storage(str(root))
    return redis, JobCache(index, storage, "job_a", lambda _: None), JobCache(index, storage, "job_b", lambda _: None)


def test_a_waiting_job_gets_the_first_ones_entry_with_its_own_copy(redis_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        redis, a, b = await _caches(redis_url, tmp_path)
        try:
            assert await a.obtain("n", "k1") is None  # a computes it
            waiting = asyncio.create_task(b.obtain("n", "k1"))
            await asyncio.sleep(0.3)
            assert not waiting.done()  # b waits for a's entry
            (tmp_path / "jobs" / "job_a").mkdir(parents=True)
            (tmp_path / "jobs" / "job_a" / "out.bin").write_bytes(b"result bytes")
            made = StoredFile(path="jobs/job_a/out.bin", kind="x", content_type="application/octet-stream", size=12)
            await a.stored(_op(), "k1", made, 1.5)  # type: ignore[arg-type]
            hit = await asyncio.wait_for(waiting, 5)
            assert hit is not None and hit.value.path == "jobs/job_b/out.bin" and hit.seconds == 1.5
            assert (tmp_path / "jobs" / "job_b" / "out.bin").read_bytes() == b"result bytes"
            (tmp_path / "jobs" / "job_a" / "out.bin").unlink()  # deleting the first job leaves the entry whole
            assert (await b.obtain("n", "k1")) is not None
            assert (a.misses, b.hits) == (1, 2)
        finally:
            await a.close()
            await b.close()
            await redis.aclose()

    asyncio.run(scenario())


def test_a_claim_lives_while_its_holder_renews_it_and_lapses_when_it_dies(redis_url: str, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_node, "CLAIM_TTL", 0.5)
    monkeypatch.setattr(cache_node, "CLAIM_REFRESH", 0.1)

    async def scenario() -> None:
        redis, a, b = await _caches(redis_url, tmp_path)
        try:
            assert await a.obtain("n", "k2") is None
            await asyncio.sleep(1.5)  # three TTLs: a renews it
            assert not await b.index.claim("k2", "someone", 0.5)
            assert a._refresher is not None
            a._refresher.cancel()  # a's dispatcher dies: nobody renews or releases the claim
            started = asyncio.get_running_loop().time()
            assert await asyncio.wait_for(b.obtain("n", "k2"), 5) is None  # b computes it, once the claim lapsed
            assert 0.1 < asyncio.get_running_loop().time() - started < 2.0
        finally:
            await b.close()
            await redis.aclose()

    asyncio.run(scenario())
