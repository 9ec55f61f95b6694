"""``/health/``: readiness, and diagnostics of Redis and the Dask cluster."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Controller, get
from litestar.di import Provide
from redis import asyncio as aioredis

from scheduler.dispatch.cluster import ClusterHandle
from scheduler.dispatch.dispatcher import Dispatcher
from scheduler.settings import APP_NAME, Settings
from server.deps import provide_cluster, provide_dispatcher, provide_redis, provide_redis_url, provide_settings
from server.openapi import responses
from server.schemas import Diagnostics, Health

__all__ = ["HealthController"]


class HealthController(Controller):
    path = "/health"
    tags = ["health"]
    dependencies = {
        "settings": Provide(provide_settings, sync_to_thread=False),
        "redis": Provide(provide_redis, sync_to_thread=False),
        "redis_url": Provide(provide_redis_url, sync_to_thread=False),
        "cluster": Provide(provide_cluster, sync_to_thread=False),
        "dispatcher": Provide(provide_dispatcher, sync_to_thread=False),
    }

    @get("/", summary="Readiness probe", operation_id="health", opt={"public": True},
         responses=responses(200, Health, description="The service answers"))
    async def health(self, settings: Settings) -> dict[str, Any]:
        return {"status": "ok", "app": APP_NAME, "environment": settings.app_env}

    @get("/diagnostics", summary="Redis and Dask cluster diagnostics", operation_id="diagnostics",
         opt={"public": True}, responses=responses(200, Diagnostics, description="Always 200: see status"))
    async def diagnostics(self, settings: Settings, redis: aioredis.Redis | None, redis_url: str,
                          cluster: ClusterHandle | None, dispatcher: Dispatcher | None) -> dict[str, Any]:
        from scheduler.wiring.runtime import broker_display

        broker = broker_display(redis_url or settings.redis_url or "redis://localhost:6379/0")
        status = "ok"
        queue: dict[str, Any]
        try:
            assert redis is not None
            await asyncio.wait_for(redis.ping(), timeout=3)
            info = await asyncio.wait_for(redis.info(), timeout=3)
            queue = {
                "connected": True,
                "broker_url": broker,
                "redis_version": info.get("redis_version"),
                "connected_clients": info.get("connected_clients"),
            }
        except Exception as exc:  # noqa: BLE001  (diagnostics always answer 200)
            status = "degraded"
            queue = {"connected": False, "broker_url": broker, "error": str(exc) or type(exc).__name__}
        found = await cluster.info() if cluster is not None else {"connected": False, "error": "not started"}
        if not found.get("connected"):
            status = "degraded"
        body: dict[str, Any] = {
            "status": status,
            "app": APP_NAME,
            "environment": settings.app_env,
            "queue": queue,
            "cluster": found,
        }
        if dispatcher is not None:
            body["dispatcher"] = dispatcher.diagnostics()
            if any(state != "running" for state in body["dispatcher"]["loops"].values()):
                body["status"] = "degraded"
        return body
