"""``GET /metrics``: Prometheus text format, read from the counts every process keeps in Redis."""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from prometheus_client import CONTENT_TYPE_LATEST

from scheduler.records.metrics import render, snapshot
from scheduler.wiring.runtime import Runtime

__all__ = ["metrics_handler"]


def metrics_handler(*, public: bool) -> Any:
    """The handler; ``public`` (``METRICS_PUBLIC``) serves it without a token while auth is on."""

    async def metrics(runtime: Runtime) -> Response[bytes]:
        """Jobs submitted, completed, failed and cancelled by type, queue depth, running jobs, job durations,
        task retries and Redis errors, counted across every API server and dispatcher."""
        if runtime.redis is None:
            data: dict[str, Any] = {"up": False}
        else:
            data = await snapshot(runtime.redis, runtime.store.queue_key)
        return Response(render(data, runtime.catalog.graphs), media_type=CONTENT_TYPE_LATEST)

    return get("/metrics", name="metrics", summary="Prometheus metrics", tags=["metrics"], opt={"public": public},
               media_type=CONTENT_TYPE_LATEST, operation_id="getMetrics")(metrics)
