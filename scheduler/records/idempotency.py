"""``Idempotency-Key``: a retried POST gets the original answer instead of creating a second resource.

One Redis string per key, ``ave:idem:<scope>:<route>:<sha256 of the key>`` (the scope is the caller's
token, hashed, when auth is on), in one of two states:

- ``P <owner> <fingerprint>``: a request holds the key and is working (``SET NX PX``: exactly one of any
  number of concurrent requests gets it). It lasts :attr:`IdempotencyStore.lock_ms`, and the request holding
  it extends it every third of that while it works (:meth:`IdempotencyStore.holding`: compare-and-extend,
  so only while the key is still its own), however long the work takes (a probe of a large S3 source);
  if that process dies, the key expires ``lock_ms`` later;
- ``D <fingerprint> <status> <body>``: done; the original status code and response body, for
  ``IDEMPOTENCY_TTL_SECONDS`` (24 h).

A request whose key is held waits for the holder to finish and answers what it answered. The
fingerprint is the SHA-256 of the request (its query parameters and body): the same key with another
request is refused (:class:`IdempotencyMismatchError`). A request that fails (a 4xx or 5xx) releases the
key, so the client can correct it and retry with the same key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from redis import asyncio as aioredis
from redis.client import NEVER_DECODE

from scheduler.errors import QueueUnavailableError
from scheduler.records import keys
from scheduler.records.jobs import guard, require_decoding
from scheduler.records.redis_calls import DELETE_IF_HELD, EXTEND_IF_HELD

__all__ = [
    "IdempotencyBusyError",
    "IdempotencyMismatchError",
    "IdempotencyStore",
    "Reservation",
    "StoredResponse",
    "scope_of",
]


# KEYS: key ; ARGV: expected pending value, done value, ttl ms
_FINISH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""



_log = logging.getLogger("scheduler.records.idempotency")


class IdempotencyMismatchError(ValueError):
    """The key was used for another request (other parameters or another body)."""


class IdempotencyBusyError(RuntimeError):
    """The request holding the key did not finish in time."""


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status_code: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Reservation:
    """This request holds the key: call :meth:`IdempotencyStore.finish` or :meth:`IdempotencyStore.release`."""

    key: str
    value: str


class IdempotencyStore:
    """The keys' records. ``lock_ms``: how long a held key lasts without being extended (the request holding
    it extends it, see :meth:`holding`); ``wait_seconds``: how long a request waits for the holder of its
    key before it gives up (:class:`IdempotencyBusyError`, which the API answers 409)."""

    def __init__(self, redis: aioredis.Redis, *, ttl_seconds: int = 24 * 3600, lock_ms: int = 120_000,
                 wait_seconds: float = 30.0) -> None:
        self.redis = require_decoding(redis)
        self.ttl_ms = ttl_seconds * 1000
        self.lock_ms = lock_ms
        self.wait_seconds = wait_seconds
        self._finish = redis.register_script(_FINISH)
        self._release = redis.register_script(DELETE_IF_HELD)
        self._extend = redis.register_script(EXTEND_IF_HELD)

    @staticmethod
    def fingerprint(*parts: bytes | str) -> str:
        digest = hashlib.sha256()
        for part in parts:
            data = part.encode() if isinstance(part, str) else part
            digest.update(len(data).to_bytes(8, "big"))
            digest.update(data)
        return digest.hexdigest()

    @staticmethod
    def redis_key(scope: str, route: str, key: str) -> str:
        return keys.idempotency(scope, route, hashlib.sha256(key.encode()).hexdigest())

    async def begin(self, scope: str, route: str, key: str, fingerprint: str) -> Reservation | StoredResponse:
        """Hold the key (a :class:`Reservation`), or the response of the request that held it first.

        Raises :class:`IdempotencyMismatchError` when the key belongs to another request, and
        :class:`IdempotencyBusyError` when its holder is still working after ``wait_seconds``.
        """
        redis_key = self.redis_key(scope, route, key)
        value = f"P {secrets.token_hex(8)} {fingerprint}"
        deadline = time.monotonic() + self.wait_seconds
        delay = 0.005
        while True:
            if await guard(self.redis.set(redis_key, value, nx=True, px=self.lock_ms)):
                return Reservation(redis_key, value)
            # The stored answer is bytes (a response body): read undecoded, whatever the body holds.
            raw = await guard(self.redis.execute_command("GET", redis_key, **{NEVER_DECODE: True}))
            if raw is None:
                continue  # released (or expired) in between: try to take it
            state, rest = raw[:1], raw[2:]
            if state == b"D":
                stored_fp, status, body = rest.split(b" ", 2)
                if stored_fp.decode() != fingerprint:
                    raise IdempotencyMismatchError(key)
                return StoredResponse(int(status), body)
            held_fp = rest.split(b" ", 1)[1].decode()
            if held_fp != fingerprint:
                raise IdempotencyMismatchError(key)
            if time.monotonic() > deadline:
                raise IdempotencyBusyError(key)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    async def finish(self, reservation: Reservation, status_code: int, body: bytes) -> None:
        """Keep the response for the key's lifetime (only while this request still holds it)."""
        fingerprint = reservation.value.rsplit(" ", 1)[1]
        done = b"D " + fingerprint.encode() + b" " + str(status_code).encode() + b" " + body
        await guard(self._finish(keys=[reservation.key], args=[reservation.value, done, self.ttl_ms]))

    async def release(self, reservation: Reservation) -> None:
        """Give the key up after a failed request, so that a retry runs afresh."""
        await guard(self._release(keys=[reservation.key], args=[reservation.value]))

    async def refresh(self, reservation: Reservation) -> bool:
        """Extend the key by ``lock_ms``, only while this request still holds it (one script: compare and
        extend); False once it does not (finished, released, or expired and taken by another request)."""
        return bool(await guard(self._extend(keys=[reservation.key], args=[reservation.value, self.lock_ms])))

    @contextlib.asynccontextmanager
    async def holding(self, reservation: Reservation) -> AsyncIterator[None]:
        """Keep holding the key while the body runs: a background task extends it every third of
        ``lock_ms``, and stops when the body ends (however it ends) or the key is no longer this request's."""
        task = asyncio.create_task(self._keep(reservation), name="idempotency-hold")
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)  # its end, not a cancel of this request's own

    async def _keep(self, reservation: Reservation) -> None:
        interval = self.lock_ms / 3000
        while True:
            await asyncio.sleep(interval)
            try:
                if not await self.refresh(reservation):
                    return
            except QueueUnavailableError as exc:  # Redis away for a moment: try again at the next tick
                _log.warning("could not extend an Idempotency-Key lock: %s", exc)
            except Exception:  # noqa: BLE001  (the request's work goes on whatever happens here)
                _log.exception("extending an Idempotency-Key lock failed")
                return


def scope_of(token: str | None) -> str:
    """The namespace of a caller's keys: its token's hash with auth on, ``-`` with auth off."""
    return hashlib.sha256(token.encode()).hexdigest()[:32] if token else "-"
