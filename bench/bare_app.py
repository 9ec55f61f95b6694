"""The baseline of bench/api.py: a bare Litestar app whose ``GET /jobs/{job_id}`` is one redis ``GET``.

``python bench/bare_app.py --port P --redis-url URL`` serves it with uvicorn exactly as ``python -m server``
serves the real app (one process, no access log). The record it answers is the real server's JSON of that
job, copied by the benchmark to ``bare:job:<id>``: the same bytes over the same loopback, with nothing of
the real app (no auth middleware, no dependency injection, no Lua script, no record assembly). What the real
``GET /jobs/{id}`` achieves against this is the issue's "≥ 0.8× a bare Litestar + redis GET".
"""

from __future__ import annotations

import argparse

import uvicorn
from litestar import Litestar, Response, get
from litestar.exceptions import NotFoundException
from redis import asyncio as aioredis


def build(redis_url: str) -> Litestar:
    redis = aioredis.Redis.from_url(redis_url)

    @get("/jobs/{job_id:str}")
    async def get_job(job_id: str) -> Response[bytes]:
        body = await redis.get(f"bare:job:{job_id}")
        if body is None:
            raise NotFoundException(detail=f"Job {job_id} not found")
        return Response(body, media_type="application/json")

    @get("/health/")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return Litestar([get_job, health])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args()
    uvicorn.run(build(args.redis_url), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
