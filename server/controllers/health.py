"""``/health/``: readiness, and diagnostics of Redis and the Dask cluster."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Controller, get

from scheduler.wiring.runtime import Runtime
from scheduler.settings import APP_NAME
from server.openapi import responses
from server.schemas import Diagnostics, Health

__all__ = ["HealthController"]


class HealthController(Controller):
    path = "/health"
    tags = ["health"]

    @get("/", summary="Readiness probe", operation_id="health", opt={"public": True},
         responses=responses(200, Health, description="The service answers"))
    async def health(self, runtime: Runtime) -> dict[str, Any]:
        return {"status": "ok", "app": APP_NAME, "environment": runtime.settings.app_env}

    @get("/diagnostics", summary="Redis and Dask cluster diagnostics", operation_id="diagnostics",
         opt={"public": True}, responses=responses(200, Diagnostics, description="Always 200: see status"))
    async def diagnostics(self, runtime: Runtime) -> dict[str, Any]:
        from scheduler.wiring.runtime import broker_display

        broker = broker_display(runtime.redis_url or runtime.settings.redis_url or "redis://localhost:6379/0")
        status = "ok"
        queue: dict[str, Any]
        try:
            assert runtime.redis is not None
            await asyncio.wait_for(runtime.redis.ping(), timeout=3)
            info = await asyncio.wait_for(runtime.redis.info(), timeout=3)
            queue = {
                "connected": True,
                "broker_url": broker,
                "redis_version": info.get("redis_version"),
                "connected_clients": info.get("connected_clients"),
            }
        except Exception as exc:  # noqa: BLE001  (diagnostics always answer 200)
            status = "degraded"
            queue = {"connected": False, "broker_url": broker, "error": str(exc) or type(exc).__name__}
        cluster = await runtime.cluster.info() if runtime.cluster is not None else {"connected": False, "error": "not started"}
        if not cluster.get("connected"):
            status = "degraded"
        body: dict[str, Any] = {
            "status": status,
            "app": APP_NAME,
            "environment": runtime.settings.app_env,
            "queue": queue,
            "cluster": cluster,
        }
        if runtime.dispatcher is not None:
            body["dispatcher"] = runtime.dispatcher.diagnostics()
            if any(state != "running" for state in body["dispatcher"]["loops"].values()):
                body["status"] = "degraded"
        return body
