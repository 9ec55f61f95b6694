"""``GET /metrics``: Prometheus text format, read from the counts every process keeps in Redis."""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from litestar.di import Provide
from prometheus_client import CONTENT_TYPE_LATEST
from redis import asyncio as aioredis

from scheduler.admission.graphs import GraphCatalog
from scheduler.records.jobs import JobStore
from scheduler.records.metrics import render, snapshot
from server.deps import provide_catalog, provide_redis, provide_store

__all__ = ["metrics_handler"]


def metrics_handler(*, public: bool) -> Any:
    """The handler; ``public`` (``METRICS_PUBLIC``) serves it without a token while auth is on."""

    async def metrics(redis: aioredis.Redis | None, store: JobStore, catalog: GraphCatalog) -> Response[bytes]:
        """Jobs submitted, completed, failed and cancelled by type, queue depth, running jobs, job durations,
        task retries and Redis errors, counted across every API server and dispatcher."""
        if redis is None:
            data: dict[str, Any] = {"up": False}
        else:
            data = await snapshot(redis, store.queue_key)
        return Response(render(data, catalog.graphs), media_type=CONTENT_TYPE_LATEST)

    return get("/metrics", name="metrics", summary="Prometheus metrics", tags=["metrics"], opt={"public": public},
               media_type=CONTENT_TYPE_LATEST, operation_id="getMetrics", dependencies={
                   "redis": Provide(provide_redis, sync_to_thread=False),
                   "store": Provide(provide_store, sync_to_thread=False),
                   "catalog": Provide(provide_catalog, sync_to_thread=False),
               })(metrics)
