"""``DELETE /cache``: empty the result cache (every entry's index record, then its files under ``cache/``)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, delete
from litestar.di import Provide
from redis import asyncio as aioredis

from operators.storage import Storage
from scheduler.cache.index import RedisCacheIndex, clear_cache
from scheduler.errors import QueueUnavailableError, StorageUnavailableError
from scheduler.settings import Settings
from server.deps import provide_redis, provide_settings, provide_storage
from server.openapi import responses
from server.schemas import CacheCleared

__all__ = ["CacheController"]


class CacheController(Controller):
    path = "/cache"
    tags = ["cache"]
    dependencies = {"redis": Provide(provide_redis, sync_to_thread=False),
                    "settings": Provide(provide_settings, sync_to_thread=False),
                    "storage": Provide(provide_storage, sync_to_thread=False)}

    @delete("/", status_code=200, summary="Empty the result cache", operation_id="clearCache",
            responses=responses(200, CacheCleared, 401, 503, description="What was removed"))
    async def clear(self, redis: aioredis.Redis | None, settings: Settings, storage: Storage) -> dict[str, Any]:
        """Forget every cache entry and delete its files. Jobs running now keep what they were served (their own
        copies); a job that was computing an entry stores it again when it finishes."""
        if redis is None:
            raise QueueUnavailableError("Redis is not connected")
        index = RedisCacheIndex(redis, max_bytes=settings.cache_max_bytes, ttl_seconds=settings.cache_ttl_days * 86400)
        try:
            return await clear_cache(index, storage)
        except OSError as exc:
            raise StorageUnavailableError(f"deleting the cache's files failed: {exc}") from exc
