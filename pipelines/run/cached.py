"""The runner's use of the result cache (mixed into :class:`~pipelines.run.runner.GraphRun`).

Every task of a node goes through :meth:`CachedNodes._obtain`. For a ``cache: true`` node it first computes the
task's key in this process from what the node's inputs are (:meth:`_key_inputs`): payload values, ``$item``, the
results this process holds, the *keys* of cached nodes upstream (known before those nodes finish), and the values
of other upstream nodes, fetched. A hit puts the stored value on the cluster as data (``scatter``: no task runs,
and the nodes after it read it as they read any result); a miss submits the task as usual, and the result is
stored in the cache as soon as it finishes (:meth:`_store_when_done`, a task of its own: another job may be
waiting for that entry while this one still waits for one of the other's, so storing never waits for the rest of
the node).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from distributed import Client, Future, as_completed

from pipelines.cache.identity import Upstream
from pipelines.cache.node import JobCache
from pipelines.graph import Node
from pipelines.refs import Collect, Literal_, Ref, map_tree, walk_refs
from pipelines.run.deadlines import Deadlines
from pipelines.run.task import access
from pipelines.run.values import SKIPPED, FutureItem, JobInfo, Mapped, resolve_value

__all__ = ["CachedNodes"]


class CachedNodes:
    """The cache's part of a graph run; the runner provides the attributes below."""

    client: Client
    job: JobInfo
    values: dict[str, Any]
    cache: JobCache | None
    _handles: dict[str, Any]
    _results: dict[str, Any]
    _kept: frozenset[str]
    _weights: dict[str, float]
    _to_store: dict[str, tuple[Node, str, float]]
    _storing: set[asyncio.Task[None]]
    _scattered: list[Future]
    #: Upstream results fetched for keys, once per node however many tasks of a fan-out ask.
    _fetched: dict[str, asyncio.Future[Any]]
    deadlines: Deadlines

    def _submit(self, node: Node, handles: dict[str, Any], *, key: str, weight: float, item: Any = None,
                index: int | None = None, count: int | None = None) -> Future:
        raise NotImplementedError

    async def _fetch(self, future: Future) -> Any:
        raise NotImplementedError

    async def _obtain(self, node: Node, handles: dict[str, Any], *, key: str, weight: float, item: Any = None,
                      index: int | None = None, count: int | None = None) -> Future:
        """The future of one task of ``node``: submitted, or (a cache hit) its stored result put on the cluster."""
        cache_key = None
        if self.cache is not None and node.cache:
            try:
                inputs = await self._key_inputs(node, item, index)
            except Exception:  # noqa: BLE001  an upstream failed: submitted uncached, the task reports it as usual
                inputs = None
            if inputs is not None:
                cache_key = await self.cache.key(node.op, node.bind_params(self.values), inputs, node=node.name)
            if node.map is None:
                self.cache.keys[node.name] = cache_key
            else:
                self.cache.keys.setdefault(node.name, [None] * (count or 0))[index or 0] = cache_key
            if cache_key is not None:
                hit = await self.cache.obtain(node.name, cache_key)
                if hit is not None:
                    [future] = await self.client.scatter([hit.value], hash=False)
                    self._weights[str(future.key)] = weight
                    self._scattered.append(future)
                    return future
        future = self._submit(node, handles, key=key, weight=weight, item=item, index=index, count=count)
        if cache_key is not None:
            self._to_store[key] = (node, cache_key, time.monotonic())
            stored = asyncio.create_task(self._store_when_done(future), name=f"cache-store-{key}")
            self._storing.add(stored)
            stored.add_done_callback(self._storing.discard)
        return future

    def _started(self, key: str) -> None:
        """A task started on its worker: its deadline's clock starts, and a cached task's seconds are counted."""
        self.deadlines.start(key)
        if key in self._to_store:
            node, cache_key, _ = self._to_store[key]
            self._to_store[key] = (node, cache_key, time.monotonic())

    async def _store_when_done(self, future: Future) -> None:
        """When a computed task of a cached node finishes, its result into the cache; a failed task's claim back."""
        async for _ in as_completed([future], loop=self.client.loop):
            pass
        node, cache_key, started = self._to_store.pop(str(future.key))
        if self.cache is None:
            return
        if future.status != "finished":
            await self.cache.release(cache_key)  # the job fails with the task's error; another job may try
            return
        try:
            result = await self._fetch(future)
        except Exception:  # noqa: BLE001  (the node's own fetch reports it)
            await self.cache.release(cache_key)
            return
        await self.cache.stored(node.op, cache_key, result, time.monotonic() - started)

    async def _cache_closed(self, *, stored: bool) -> None:
        """The run's end: wait for its entries to be stored (or, when it failed, stop storing), give back its
        claims, and log what the cache served."""
        if self.cache is None:
            return
        pending = list(self._storing)
        if not stored:
            for task in pending:
                task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self.cache.close()
        if stored and (self.cache.hits or self.cache.misses):
            self._emit_log(self.cache.describe())

    # -- what the key is made of --------------------------------------------------------------------
    async def _key_inputs(self, node: Node, item: Any, index: int | None) -> dict[str, Any]:
        names = {(r.ref if isinstance(r, Collect) else r).name for r in walk_refs(list(node.inputs.values()))
                 if (r.ref if isinstance(r, Collect) else r).scope == "node"}
        if isinstance(item, FutureItem) and node.map is not None:
            names.add(node.map.name)
        known = {name: await self._identity(name) for name in sorted(names)}

        def leaf(value: Any) -> Any:
            if isinstance(value, Literal_):
                return value.value
            if isinstance(value, Collect):
                found = known[value.ref.name]
                return [] if found is None else [_at(v, value.ref.path) for v in found]
            if isinstance(value, Ref) and value.scope == "node":
                return _at(known[value.name], value.path)
            if isinstance(value, Ref) and value.scope == "item":
                if isinstance(item, FutureItem) and node.map is not None:
                    return _at(known[node.map.name][index or 0], value.path)
                return access(item, value.path)
            return resolve_value(value, values=self.values, job=self.job)

        return {name: map_tree(parsed, leaf) for name, parsed in node.inputs.items()}

    async def _identity(self, name: str) -> Any:
        """What an upstream node's result counts as in a key: its key if cached, else its value."""
        handle = await self._handles[name]
        if handle is SKIPPED:
            return None
        keys = self.cache.keys.get(name) if self.cache is not None else None
        if isinstance(keys, str):
            return Upstream(keys)
        if isinstance(keys, list) and all(isinstance(k, str) for k in keys):
            return [Upstream(k) for k in keys]
        if name in self._kept:
            result = await self._results[name]
            return result.items if isinstance(result, Mapped) else result
        if name not in self._fetched:
            handles = handle if isinstance(handle, list) else [handle]
            fetched = asyncio.gather(*(self._fetch(f) for f in handles))
            self._fetched[name] = fetched
        values = await asyncio.shield(self._fetched[name])  # one waiter cancelled leaves the others theirs
        return values if isinstance(handle, list) else values[0]


def _at(value: Any, path: tuple[str, ...]) -> Any:
    if isinstance(value, Upstream):
        return Upstream(value.key, value.path + path)
    return access(value, path)
