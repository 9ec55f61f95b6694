"""What the graph runner needs of the cache's index: a shared, atomic record of the committed entries.

The runner (``pipelines``) never talks to Redis itself; the scheduler passes an implementation
(:class:`scheduler.cache.index.RedisCacheIndex`). Every method is atomic on its own in the shared store, so any
number of dispatchers on any number of machines share one cache.
"""

from __future__ import annotations

from typing import Protocol

from pipelines.cache.entries import Manifest

__all__ = ["CacheIndex"]


class CacheIndex(Protocol):
    #: The cap on the entries' bytes (an entry larger than it is not kept).
    max_bytes: int

    async def lookup(self, key: str) -> Manifest | None:
        """The committed entry of ``key`` (marking it used, for LRU eviction), or None."""

    async def claim(self, key: str, token: str, ttl: float) -> bool:
        """Take the right to compute ``key`` for ``ttl`` seconds (one holder at a time); whether it was free."""

    async def claimed(self, key: str) -> bool:
        """Whether someone holds the right to compute ``key`` now."""

    async def extend(self, key: str, token: str, ttl: float) -> bool:
        """Keep the claim ``ttl`` seconds more, if ``token`` still holds it; whether it did."""

    async def release(self, key: str, token: str) -> None:
        """Give the claim back, if ``token`` still holds it."""

    async def commit(self, manifest: Manifest) -> bool:
        """Record a stored entry; False when the key already has one (the first one stays)."""

    async def drop(self, manifest: Manifest) -> bool:
        """Forget this entry if the index still holds this very one (a corrupt entry); whether it did."""

    async def evict(self) -> list[Manifest]:
        """Forget entries past the size cap (least recently used first) or past their age; their files go next."""

    async def count(self, *, hits: int = 0, misses: int = 0, saved: float = 0.0, corrupt: int = 0) -> None:
        """Add to the shared hit, miss and corrupt-entry counters and the seconds hits saved (metrics)."""
