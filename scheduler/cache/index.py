"""The result cache's index in Redis: committed entries, their use order, their bytes, claims, counters.

- ``ave:cache:entry:<key>`` (string): an entry's :class:`~pipelines.cache.entries.Manifest` as JSON. Set once, by
  a script that refuses a second entry for the key (two jobs that both computed it: the first one stays).
- ``ave:cache:lru`` (sorted set): keys by the time each was last used (stored or served); eviction takes the
  oldest first, and, with ``CACHE_TTL_DAYS``, every key unused for longer.
- ``ave:cache:bytes`` (string): the bytes of every committed entry, moved by the same scripts.
- ``ave:cache:claim:<key>`` (string, TTL): who computes the key now (``SET NX PX``), kept alive by its holder
  while the task runs and given back by a compare-and-delete.
- ``ave:metrics:cache`` (hash): hits, misses, corrupt entries, evictions and the seconds hits saved.

Forgetting an entry (eviction, a corrupt one, ``DELETE /cache``) removes it from the index first, in one script;
its files go after. A job never reads an entry's files after that but through its own copies, so nothing a
running job uses is removed (:mod:`pipelines.cache.entries`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from operators.storage import Storage
from pipelines.cache.entries import CACHE_PREFIX, Manifest
from scheduler.records import keys
from scheduler.records.redis_calls import DELETE_IF_HELD, EXTEND_IF_HELD, guard

__all__ = ["RedisCacheIndex", "clear_cache"]

_COMMIT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('INCRBY', KEYS[3], ARGV[2])
return 1
"""
# Forget an entry (ARGV[1]: only if it is still the one in this folder; '' any); count it under ARGV[3] if set.
_DROP = """
local raw = redis.call('GET', KEYS[1])
if not raw then redis.call('ZREM', KEYS[2], ARGV[2]) return false end
local entry = cjson.decode(raw)
if ARGV[1] ~= '' and entry['folder'] ~= ARGV[1] then return false end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('DECRBY', KEYS[3], entry['bytes'])
if ARGV[3] ~= '' then redis.call('HINCRBY', KEYS[4], ARGV[3], 1) end
return raw
"""

class RedisCacheIndex:
    """:class:`pipelines.cache.index.CacheIndex` in Redis (``redis`` answers text), bounded by ``max_bytes`` and
    ``ttl_seconds`` (0: no age limit)."""

    def __init__(self, redis: Any, *, max_bytes: int, ttl_seconds: float) -> None:
        self.redis, self.max_bytes, self.ttl_seconds = redis, max_bytes, ttl_seconds
        self._commit = redis.register_script(_COMMIT)
        self._drop = redis.register_script(_DROP)
        self._release = redis.register_script(DELETE_IF_HELD)
        self._extend = redis.register_script(EXTEND_IF_HELD)

    async def lookup(self, key: str) -> Manifest | None:
        raw = await guard(self.redis.get(keys.cache_entry(key)))
        if raw is None:
            return None
        await guard(self.redis.zadd(keys.CACHE_LRU, {key: time.time()}, xx=True))
        return Manifest.from_json(raw)

    async def claim(self, key: str, token: str, ttl: float) -> bool:
        return bool(await guard(self.redis.set(keys.cache_claim(key), token, nx=True, px=max(1, int(ttl * 1000)))))

    async def claimed(self, key: str) -> bool:
        return bool(await guard(self.redis.exists(keys.cache_claim(key))))

    async def extend(self, key: str, token: str, ttl: float) -> bool:
        return bool(await guard(self._extend(keys=[keys.cache_claim(key)], args=[token, max(1, int(ttl * 1000))])))

    async def release(self, key: str, token: str) -> None:
        await guard(self._release(keys=[keys.cache_claim(key)], args=[token]))

    async def commit(self, manifest: Manifest) -> bool:
        done = await guard(self._commit(keys=[keys.cache_entry(manifest.key), keys.CACHE_LRU, keys.CACHE_BYTES],
                                        args=[manifest.to_json(), manifest.size, time.time(), manifest.key]))
        return bool(done)

    async def _forget(self, key: str, folder: str = "", counter: str = "") -> Manifest | None:
        raw = await guard(self._drop(keys=[keys.cache_entry(key), keys.CACHE_LRU, keys.CACHE_BYTES,
                                           keys.METRICS_CACHE], args=[folder, key, counter]))
        return Manifest.from_json(raw) if raw else None

    async def drop(self, manifest: Manifest) -> bool:
        return await self._forget(manifest.key, manifest.folder) is not None

    async def evict(self) -> list[Manifest]:
        gone: list[Manifest] = []
        if self.ttl_seconds > 0:
            stale = await guard(self.redis.zrangebyscore(keys.CACHE_LRU, "-inf", time.time() - self.ttl_seconds,
                                                         start=0, num=1000))
            gone += [m for key in stale if (m := await self._forget(key, counter="evictions")) is not None]
        while int(await guard(self.redis.get(keys.CACHE_BYTES)) or 0) > self.max_bytes:
            oldest = await guard(self.redis.zrange(keys.CACHE_LRU, 0, 0))
            if not oldest:
                break
            manifest = await self._forget(oldest[0], counter="evictions")
            if manifest is not None:
                gone.append(manifest)
        return gone

    async def count(self, *, hits: int = 0, misses: int = 0, saved: float = 0.0, corrupt: int = 0) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for field, value in (("hits", hits), ("misses", misses), ("corrupt", corrupt)):
                if value:
                    pipe.hincrby(keys.METRICS_CACHE, field, value)
            if saved:
                pipe.hincrbyfloat(keys.METRICS_CACHE, "saved_seconds", saved)
            await guard(pipe.execute())

    async def forget_all(self) -> tuple[int, int]:
        """Forget every entry (``DELETE /cache``): how many, and their bytes."""
        count = size = 0
        while batch := await guard(self.redis.zrange(keys.CACHE_LRU, 0, 499)):
            for key in batch:
                manifest = await self._forget(key)
                if manifest is not None:
                    count, size = count + 1, size + manifest.size
        return count, size


async def clear_cache(index: RedisCacheIndex, storage: Storage) -> dict[str, int]:
    """Empty the cache: every entry out of the index, then every file under ``cache/`` out of the media store."""
    count, size = await index.forget_all()

    def remove_files() -> int:
        paths = storage.files_under(CACHE_PREFIX)
        for path in paths:
            try:
                storage.delete(path)
            except FileNotFoundError:
                pass
        if storage.is_local:
            import shutil

            shutil.rmtree(storage.local_path(CACHE_PREFIX), ignore_errors=True)
        return len(paths)

    files = await asyncio.to_thread(remove_files)
    return {"entries": count, "bytes": size, "files": files}
