"""One job's side of the cache: a key per cached task, a hit served or the right to compute it, the entry stored.

For each task of a ``cache: true`` node the runner asks :meth:`JobCache.obtain` before submitting anything:

1. **Hit:** the index has the key's entry; its files are checked (size, SHA-256) and put in this job's folder
   (:func:`~pipelines.cache.entries.restore_entry`), and the value is the task's result. No task runs.
2. **Miss:** this job claims the key (one holder at a time, with a TTL) and the runner submits the task; when it
   finishes, :meth:`JobCache.stored` writes the entry, commits it, releases the claim and evicts past the cap.
3. **Someone else is computing it** (another job holds the claim): wait, looking again every 50-500 ms, until
   its entry is committed (a hit) or its claim is given back or expires (then claim it and compute).

So two jobs that miss the same key at once compute it once. A corrupt entry (a file whose size or hash differs)
is dropped and counted, never served, and the task computes it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from operators.registry import OperatorSpec
from operators.storage import Storage
from pipelines.cache.entries import EntryUnusable, delete_entry, restore_entry, store_entry
from pipelines.cache.identity import CacheKeyError, FileIdentities, derive_key
from pipelines.cache.index import CacheIndex

__all__ = ["CLAIM_REFRESH", "CLAIM_TTL", "Hit", "JobCache"]

_log = logging.getLogger("pipelines.cache")

#: Seconds a claim lives unless its holder keeps it alive (every CLAIM_REFRESH seconds while its task runs): a
#: dispatcher that died leaves its claims to expire this soon, and the jobs waiting on them compute the keys.
CLAIM_TTL, CLAIM_REFRESH = 30.0, 10.0
_POLL_FIRST, _POLL_MAX = 0.05, 0.5


@dataclass(frozen=True, slots=True)
class Hit:
    """A task served from the cache: its result (with paths in this job's folder) and the seconds it saved."""

    value: Any
    seconds: float


class JobCache:
    """The cache as one job's run uses it; counts what it served."""

    def __init__(self, index: CacheIndex, storage: Storage, job_id: str, log: Callable[[str], None]) -> None:
        self.index, self.storage, self.job_id, self._log_line = index, storage, job_id, log
        self.files = FileIdentities(storage)
        #: Each cached node's key (a list for a fan-out; None where a task has none): inputs of the nodes after it.
        self.keys: dict[str, Any] = {}
        self.hits = self.misses = 0
        self.saved = 0.0
        self.hit_nodes: dict[str, int] = {}
        self._claims: dict[str, str] = {}
        self._refresher: asyncio.Task[None] | None = None

    # -- keys -----------------------------------------------------------------------------------
    async def key(self, op: OperatorSpec, params: Any, inputs: Mapping[str, Any], *, node: str) -> str | None:
        """The task's key, or None (logged) when its inputs have no canonical form: it then runs uncached."""
        assert op.version is not None  # the loader refuses cache: true on an operator without one

        def derive() -> str:
            narrowed = op.cache_key(**inputs) if op.cache_key is not None else inputs
            return derive_key(op.name, op.version or 0, params, narrowed, self.files)

        try:
            return await asyncio.to_thread(derive)
        except (CacheKeyError, TypeError, ValueError, KeyError, AttributeError) as exc:
            self._log_line(f"{node}: no cache key ({exc}); it runs uncached")
            return None

    # -- hit, miss or wait ---------------------------------------------------------------------------
    async def obtain(self, node: str, key: str) -> Hit | None:
        """A hit, or None once this job holds the claim on ``key`` and must compute it (see the module).
        The index unreachable, the task is computed (the cache never fails a job)."""
        try:
            return await self._obtain(node, key)
        except Exception as exc:  # noqa: BLE001
            _log.warning("job %s: the cache index failed (%s); %s computes without it", self.job_id, exc, node)
            return None

    async def _obtain(self, node: str, key: str) -> Hit | None:
        delay, waited = _POLL_FIRST, False
        while True:
            manifest = await self.index.lookup(key)
            if manifest is not None:
                try:
                    value = await asyncio.to_thread(restore_entry, self.storage, manifest, job_id=self.job_id)
                except EntryUnusable as exc:
                    await self._drop_unusable(node, manifest, exc)
                else:
                    self.hits += 1
                    self.saved += manifest.seconds
                    self.hit_nodes[node] = self.hit_nodes.get(node, 0) + 1
                    await self.index.count(hits=1, saved=manifest.seconds)
                    return Hit(value, manifest.seconds)
            token = f"{self.job_id}:{uuid.uuid4().hex[:8]}"
            if await self.index.claim(key, token, CLAIM_TTL):
                self._claims[key] = token
                if self._refresher is None or self._refresher.done():
                    self._refresher = asyncio.create_task(self._keep_claims(), name=f"cache-claims-{self.job_id}")
                self.misses += 1
                await self.index.count(misses=1)
                return None
            if not waited:
                waited = True
                self._log_line(f"{node}: another job is computing the same result ({key[:12]}); waiting for it")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, _POLL_MAX)

    async def _drop_unusable(self, node: str, manifest: Any, exc: Exception) -> None:
        self._log_line(f"{node}: cache entry {manifest.key[:12]} is unusable ({exc}); computing it again")
        _log.warning("job %s: cache entry %s unusable: %s", self.job_id, manifest.key, exc)
        if await self.index.drop(manifest):
            await self.index.count(corrupt=1)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(delete_entry, self.storage, manifest.folder)

    # -- storing ---------------------------------------------------------------------------------
    async def stored(self, op: OperatorSpec, key: str, value: Any, seconds: float) -> None:
        """Store a computed result under ``key``, commit it, give the claim back, evict past the cap.

        The cache is an optimisation: a failure here is logged and the job goes on.
        """
        try:
            manifest = await asyncio.to_thread(store_entry, self.storage, key, value, job_id=self.job_id,
                                               op=op.name, seconds=seconds)
            if manifest.size > self.index.max_bytes:  # it would evict everything, itself last
                await asyncio.to_thread(delete_entry, self.storage, manifest.folder)
            elif not await self.index.commit(manifest):  # another job's entry was first: keep it
                await asyncio.to_thread(delete_entry, self.storage, manifest.folder)
            for gone in await self.index.evict():
                await asyncio.to_thread(delete_entry, self.storage, gone.folder)
        except Exception as exc:  # noqa: BLE001
            _log.warning("job %s: storing cache entry %s failed: %s", self.job_id, key, exc, exc_info=True)
        finally:
            await self._release(key)

    async def release(self, key: str) -> None:
        """Give back the claim on ``key`` without storing anything (its task failed)."""
        await self._release(key)

    async def _release(self, key: str) -> None:
        token = self._claims.pop(key, None)
        if token is not None:
            with contextlib.suppress(Exception):
                await self.index.release(key, token)

    async def _keep_claims(self) -> None:
        """Keep this job's claims alive while it holds any (its tasks run); ends when none is left."""
        while self._claims:
            await asyncio.sleep(CLAIM_REFRESH)
            for key, token in list(self._claims.items()):
                try:
                    await self.index.extend(key, token, CLAIM_TTL)
                except Exception as exc:  # noqa: BLE001  (Redis away: the claim may lapse; both jobs compute)
                    _log.debug("job %s: could not extend the claim on %s: %s", self.job_id, key, exc)

    async def close(self) -> None:
        """Give back every claim this job still holds (its tasks failed or were cancelled)."""
        for key in list(self._claims):
            await self._release(key)
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refresher

    # -- reporting --------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        return {"hits": self.hits, "misses": self.misses, "seconds_saved": round(self.saved, 2)}

    def describe(self) -> str:
        """The job log's line: what the cache served, per node, and the seconds that saved."""
        served = ", ".join(f"{node} {n}" for node, n in sorted(self.hit_nodes.items())) or "nothing"
        return (f"Cache: {self.hits} of {self.hits + self.misses} cached tasks served from the cache ({served}), "
                f"about {self.saved:.1f}s of work saved; {self.misses} computed")


