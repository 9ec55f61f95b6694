"""Brand kits in Redis: one JSON record each, and a per-project index by creation time.

A record: ``id`` (``bk_…``), ``project_id``, ``name``, ``fonts`` (font asset ids of the project, the first
one the default of captions and titles), ``colors`` (``primary``, ``accent``, ``text``, ``background``, each
``#RRGGBB`` or null), ``logo`` (an image asset id or null), ``created_at``. Records do not change; a kit is
replaced by posting a new one and deleting the old.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from redis import asyncio as aioredis

from scheduler.brand import keys
from scheduler.records.redis_calls import guard, require_decoding
from scheduler.timefmt import now_ts

__all__ = ["BrandKitNotFoundError", "BrandKitStore"]


class BrandKitNotFoundError(LookupError):
    def __init__(self, kit_id: str) -> None:
        self.kit_id = kit_id
        super().__init__(f"Brand kit {kit_id} not found")

    def __str__(self) -> str:
        return f"Brand kit {self.kit_id} not found"


class BrandKitStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = require_decoding(redis)

    async def create(self, *, project_id: str, name: str | None, fonts: list[str], colors: dict[str, str | None],
                     logo: str | None) -> dict[str, Any]:
        record = {"id": f"bk_{secrets.token_hex(12)}", "project_id": project_id, "name": name, "fonts": fonts,
                  "colors": colors, "logo": logo, "created_at": now_ts()}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.brand_kit(record["id"]), json.dumps(record))
            pipe.zadd(keys.project_brand_kits(project_id), {record["id"]: time.time()})
            await guard(pipe.execute())
        return record

    async def get(self, kit_id: str) -> dict[str, Any]:
        raw = await guard(self.redis.get(keys.brand_kit(kit_id)))
        if raw is None:
            raise BrandKitNotFoundError(kit_id)
        return json.loads(raw)  # type: ignore[no-any-return]

    async def list(self, project_id: str, *, limit: int = 50) -> list[dict[str, Any]]:
        """A project's brand kits, newest first."""
        ids = await guard(self.redis.zrevrange(keys.project_brand_kits(project_id), 0, limit - 1))
        if not ids:
            return []
        raws = await guard(self.redis.mget([keys.brand_kit(i) for i in ids]))
        return [json.loads(raw) for raw in raws if raw is not None]

    async def delete(self, kit_id: str) -> None:
        """Remove a kit (:class:`BrandKitNotFoundError` when there is none); timelines naming it are then refused."""
        record = await self.get(kit_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.brand_kit(kit_id))
            pipe.zrem(keys.project_brand_kits(record["project_id"]), kit_id)
            await guard(pipe.execute())
