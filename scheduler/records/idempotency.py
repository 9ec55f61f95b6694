"""``Idempotency-Key``: a retried POST gets the original answer instead of creating a second resource.

One Redis string per key, ``ave:idem:<scope>:<route>:<sha256 of the key>`` (the scope is the caller's
token, hashed, when auth is on), in one of two states:

- ``P <owner> <fingerprint>``: a request holds the key and is working (``SET NX PX``: exactly one of any
  number of concurrent requests gets it; it expires after :attr:`IdempotencyStore.lock_ms` if that
  process dies);
- ``D <fingerprint> <status> <body>``: done; the original status code and response body, for
  ``IDEMPOTENCY_TTL_SECONDS`` (24 h).

A request whose key is held waits for the holder to finish and answers what it answered. The
fingerprint is the SHA-256 of the request (its query parameters and body): the same key with another
request is refused (:class:`IdempotencyMismatchError`). A request that fails (a 4xx or 5xx) releases the
key, so the client can correct it and retry with the same key.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from dataclasses import dataclass

from redis import asyncio as aioredis
from redis.client import NEVER_DECODE

from scheduler.records import keys
from scheduler.records.jobs import guard, require_decoding

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

# KEYS: key ; ARGV: expected pending value
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


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
    def __init__(self, redis: aioredis.Redis, *, ttl_seconds: int = 24 * 3600, lock_ms: int = 120_000,
                 wait_seconds: float = 30.0) -> None:
        self.redis = require_decoding(redis)
        self.ttl_ms = ttl_seconds * 1000
        self.lock_ms = lock_ms
        self.wait_seconds = wait_seconds
        self._finish = redis.register_script(_FINISH)
        self._release = redis.register_script(_RELEASE)

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

    async def refresh(self, reservation: Reservation) -> None:
        """Keep holding the key through a long request."""
        await guard(self.redis.pexpire(reservation.key, self.lock_ms))


def scope_of(token: str | None) -> str:
    """The namespace of a caller's keys: its token's hash with auth on, ``-`` with auth off."""
    return hashlib.sha256(token.encode()).hexdigest()[:32] if token else "-"
