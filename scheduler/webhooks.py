"""Webhooks: a signed JSON POST to the job's ``callback_url`` when it ends, retried from Redis.

- The terminal transition (a Lua script in :mod:`scheduler.store`) enqueues the delivery in the
  same step as the status change: ``ave:webhook:<job_id>.<n>`` (a hash) and its due time in the
  sorted set ``ave:webhooks:due``. A crash between the two cannot lose a webhook.
- Every process with ``RUN_WEBHOOKS`` (API servers and dispatchers) runs a :class:`WebhookDeliverer`.
  It claims due deliveries atomically, pushing their score out by a lease (so a delivery is
  attempted by one process at a time, and a process that died mid-attempt only delays it),
  POSTs ``{"event": "job.completed"|"job.failed"|"job.cancelled", "job": <record>}`` with
  ``Webhook-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">``, and on a non-2xx answer or a
  timeout reschedules it ``base × factor^(attempt-1)`` seconds later (±20 % jitter), up to
  ``WEBHOOK_MAX_ATTEMPTS`` tries. Retries therefore survive a restart of every process.
- Every attempt is logged on the job (``GET /jobs/{id}/webhooks``); ``POST .../webhooks/replay``
  enqueues the job's terminal event again.
- SSRF guard: a callback URL must be http(s) and every address its host resolves to must be
  global (not loopback, link-local, private, shared, reserved, multicast or unspecified), unless
  ``WEBHOOK_ALLOW_PRIVATE``. It is checked at submission and again before each attempt, and
  redirects are not followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import random
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
from redis import asyncio as aioredis

from scheduler.errors import JobNotFoundError
from scheduler.settings import Settings
from scheduler.store import TERMINAL, WEBHOOK_KEY_PREFIX, WEBHOOKS_DUE_KEY, JobStore, guard, require_decoding
from scheduler.timefmt import now_ts

__all__ = [
    "EVENTS",
    "CallbackResolveError",
    "CallbackURLError",
    "ReplayRefusedError",
    "WebhookDeliverer",
    "WebhookStore",
    "address_allowed",
    "check_callback_url",
    "retry_delay",
    "sign",
    "verify",
]

_log = logging.getLogger("scheduler.webhooks")
EVENTS = {"completed": "job.completed", "failed": "job.failed", "cancelled": "job.cancelled"}
ATTEMPTS_KEPT = 200
MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT = 5.0
USER_AGENT = "ave-webhooks/0.1"

# KEYS: due ; ARGV: now-epoch, lease-until, limit
_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], member) end
return due
"""


class CallbackURLError(ValueError):
    """A callback URL that is malformed, or that resolves to an address webhooks may not reach."""


class CallbackResolveError(CallbackURLError):
    """The callback host did not resolve (perhaps for now: a delivery retries it)."""


class ReplayRefusedError(RuntimeError):
    """Nothing to replay: the job has no callback_url, or has not ended."""


# -- the SSRF guard ------------------------------------------------------------------------
def address_allowed(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for a global unicast address; False for loopback, link-local, private, shared (100.64/10),
    reserved, multicast, unspecified and documentation ranges, also when IPv4-mapped or 6to4/NAT64-wrapped."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return address_allowed(ip.ipv4_mapped)
        if ip.sixtofour is not None:
            return address_allowed(ip.sixtofour)
        if ip in ipaddress.IPv6Network("64:ff9b::/96"):  # NAT64: the IPv4 address in the low 32 bits
            return address_allowed(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip.is_multicast or ip.is_unspecified or ip.is_loopback or ip.is_link_local or ip.is_reserved:
        return False
    return bool(ip.is_global) and not ip.is_private


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP literal in any spelling the resolver accepts (``127.1``, ``2130706433``, ``0x7f.0.0.1``)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def parse_callback_url(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of a well-formed http(s) URL, or CallbackURLError."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise CallbackURLError(f"callback_url must be an http(s) URL of at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise CallbackURLError(f"callback_url is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise CallbackURLError("callback_url must use http or https")
    host = parts.hostname
    if not host:
        raise CallbackURLError("callback_url has no host")
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80)


async def resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    literal = _literal(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT)
    except TimeoutError:
        raise CallbackResolveError(f"callback_url host {host} did not resolve in {RESOLVE_TIMEOUT:g}s") from None
    except (OSError, UnicodeError) as exc:
        raise CallbackResolveError(f"callback_url host {host} cannot be resolved: {exc}") from None
    found = []
    for info in infos:
        with contextlib.suppress(ValueError):
            found.append(ipaddress.ip_address(info[4][0].split("%", 1)[0]))
    if not found:
        raise CallbackResolveError(f"callback_url host {host} resolves to no address")
    return found


async def check_callback_url(url: str, *, allow_private: bool) -> str:
    """The URL, when webhooks may POST to it: every address its host resolves to must be global."""
    _, host, port = parse_callback_url(url)
    if allow_private:
        return url
    for ip in await resolve(host, port):
        if not address_allowed(ip):
            raise CallbackURLError(
                f"callback_url {host} resolves to {ip}, a loopback, link-local, private or reserved address: "
                "refused (set WEBHOOK_ALLOW_PRIVATE=true to allow it)"
            )
    return url


# -- signing -------------------------------------------------------------------------------
def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``Webhook-Signature`` header value: ``t=<unix>,v1=<hex HMAC-SHA256 of "t.body">``."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify(secret: str, header: str, body: bytes, *, tolerance: float = 300, now: float | None = None) -> bool:
    """Check a ``Webhook-Signature`` header, refusing signatures older (or newer) than ``tolerance`` seconds."""
    try:
        items = dict(part.split("=", 1) for part in header.split(","))
        t = int(items["t"])
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, items.get("v1", ""))


def retry_delay(attempt: int, *, base: float, factor: float, jitter: float = 0.2) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): ``base × factor^(attempt-1)`` ± jitter.

    With the defaults (5 s, ×5, 8 attempts) the last try comes about a day after the first.
    """
    delay = base * factor ** (attempt - 1)
    return delay * random.uniform(1 - jitter, 1 + jitter)


# -- the store -----------------------------------------------------------------------------
def _iso(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).isoformat()


class WebhookStore:
    """Deliveries, their due times and the attempts log, in Redis."""

    def __init__(self, redis: aioredis.Redis, store: JobStore) -> None:
        self.redis = require_decoding(redis)
        self.store = store
        self._claim = redis.register_script(_CLAIM)

    @staticmethod
    def key(delivery_id: str) -> str:
        return f"{WEBHOOK_KEY_PREFIX}{delivery_id}"

    @staticmethod
    def attempts_key(job_id: str) -> str:
        return f"ave:job:{job_id}:webhooks"

    async def claim(self, limit: int, lease: float) -> list[str]:
        now = time.time()
        ids = await guard(self._claim(keys=[WEBHOOKS_DUE_KEY], args=[now, now + lease, limit]))
        return list(ids)

    async def release(self, delivery_id: str) -> None:
        """Due again now (a process stopping mid-attempt hands it on)."""
        await guard(self.redis.zadd(WEBHOOKS_DUE_KEY, {delivery_id: time.time()}, xx=True))

    async def delivery(self, delivery_id: str) -> dict[str, str]:
        return await guard(self.redis.hgetall(self.key(delivery_id)))  # type: ignore[no-any-return]

    async def enqueue_replay(self, job_id: str) -> dict[str, Any]:
        """Enqueue the job's terminal event again (a new delivery, due now)."""
        fields = await self.store.internal(job_id)
        status, url = fields.get("status", ""), fields.get("callback_url") or ""
        if not url:
            raise ReplayRefusedError(f"Job {job_id} has no callback_url")
        if status not in TERMINAL:
            raise ReplayRefusedError(f"Job {job_id} is {status}: it has no final event to send yet")
        seq = await guard(self.redis.hincrby(self.store._key(job_id), "webhook_seq", 1))
        delivery_id = f"{job_id}.{seq}"
        now = now_ts()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key(delivery_id), mapping={
                "id": delivery_id, "job_id": job_id, "event": EVENTS[status], "url": url, "attempts": "0",
                "state": "pending", "created_at": now, "replay": "1", "next_attempt_at": now,
            })
            pipe.zadd(WEBHOOKS_DUE_KEY, {delivery_id: time.time()})
            await guard(pipe.execute())
        # A finished job expires (JOB_TTL_DAYS): its replayed delivery goes with it, as the first one does.
        left = await guard(self.redis.pttl(self.store._key(job_id)))
        if left and left > 0:
            await guard(self.redis.pexpire(self.key(delivery_id), left))
        return public_delivery(await self.delivery(delivery_id))

    async def record(self, delivery: dict[str, str], attempt: dict[str, Any], *, state: str,
                     next_epoch: float | None, body: str | None) -> None:
        """Log an attempt and move the delivery on, in one transaction."""
        delivery_id, job_id = delivery["id"], delivery["job_id"]
        fields: dict[str, str] = {
            "attempts": str(attempt["attempt"]), "state": state, "last_status": str(attempt["status_code"] or ""),
            "last_error": attempt["error"] or "", "last_attempt_at": attempt["at"],
            "next_attempt_at": _iso(next_epoch) if next_epoch is not None else "",
        }
        if body is not None:
            fields["body"] = body
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key(delivery_id), mapping=fields)
            pipe.rpush(self.attempts_key(job_id), json.dumps(attempt, separators=(",", ":")))
            pipe.ltrim(self.attempts_key(job_id), -ATTEMPTS_KEPT, -1)
            if next_epoch is None:
                pipe.zrem(WEBHOOKS_DUE_KEY, delivery_id)
            else:
                pipe.zadd(WEBHOOKS_DUE_KEY, {delivery_id: next_epoch})
            await guard(pipe.execute())

    async def finish_missing(self, delivery_id: str) -> None:
        await guard(self.redis.zrem(WEBHOOKS_DUE_KEY, delivery_id))

    async def listing(self, job_id: str) -> dict[str, Any]:
        """``GET /jobs/{id}/webhooks``: the callback URL, each delivery and every attempt, oldest first."""
        fields = await self.store.internal(job_id)
        count = int(fields.get("webhook_seq") or 0)
        deliveries = []
        for n in range(max(1, count - 49), count + 1):
            delivery = await self.delivery(f"{job_id}.{n}")
            if delivery:
                deliveries.append(public_delivery(delivery))
        attempts = [json.loads(x) for x in await guard(self.redis.lrange(self.attempts_key(job_id), 0, -1))]
        return {"job_id": job_id, "callback_url": fields.get("callback_url") or None,
                "deliveries": deliveries, "attempts": attempts}


def public_delivery(d: dict[str, str]) -> dict[str, Any]:
    return {
        "id": d.get("id"),
        "event": d.get("event"),
        "url": d.get("url"),
        "state": d.get("state"),
        "replay": d.get("replay") == "1",
        "attempts": int(d.get("attempts") or 0),
        "created_at": d.get("created_at") or None,
        "last_attempt_at": d.get("last_attempt_at") or None,
        "last_status_code": int(d["last_status"]) if d.get("last_status") else None,
        "last_error": d.get("last_error") or None,
        "next_attempt_at": d.get("next_attempt_at") or None if d.get("state") == "pending" else None,
    }


# -- the deliverer -------------------------------------------------------------------------
class WebhookDeliverer:
    """Claims due deliveries and POSTs them; one per process, any number of processes."""

    def __init__(self, webhooks: WebhookStore, settings: Settings, *, poll_seconds: float = 0.1,
                 concurrency: int = 16, worker: str | None = None) -> None:
        self.webhooks = webhooks
        self.store = webhooks.store
        self.settings = settings
        self.poll_seconds = poll_seconds
        self.concurrency = concurrency
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self.lease = settings.webhook_timeout_seconds + 5
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            timeout=self.settings.webhook_timeout_seconds, follow_redirects=False, trust_env=False,
            headers={"User-Agent": USER_AGENT},
        )
        self._task = asyncio.create_task(self._loop(), name="webhooks")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for delivery_id, task in list(self._inflight.items()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            with contextlib.suppress(Exception):
                await self.webhooks.release(delivery_id)  # the next process takes it at once
        if self._client is not None:
            await self._client.aclose()

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                free = self.concurrency - len(self._inflight)
                if free > 0:
                    for delivery_id in await self.webhooks.claim(free, self.lease):
                        if delivery_id not in self._inflight:
                            task = asyncio.create_task(self._attempt(delivery_id))
                            self._inflight[delivery_id] = task
                            task.add_done_callback(lambda _t, d=delivery_id: self._inflight.pop(d, None))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001  (Redis down: try again later)
                _log.debug("webhook claim failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.poll_seconds)

    async def _attempt(self, delivery_id: str) -> None:
        try:
            await self._deliver(delivery_id)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001  (the lease makes it due again)
            _log.exception("webhook delivery %s failed unexpectedly", delivery_id)

    async def _deliver(self, delivery_id: str) -> None:
        delivery = await self.webhooks.delivery(delivery_id)
        if not delivery or delivery.get("state") != "pending":
            await self.webhooks.finish_missing(delivery_id)
            return
        body = delivery.get("body")
        new_body = None
        if not body:
            try:
                record = await self.store.get(delivery["job_id"])
            except JobNotFoundError:
                await self.webhooks.finish_missing(delivery_id)
                return
            # Frozen at the first attempt: every retry sends the same bytes (with a new signature).
            body = new_body = json.dumps({"event": delivery["event"], "job": record}, separators=(",", ":"))
        attempt_no = int(delivery.get("attempts") or 0) + 1
        started = time.time()
        status_code: int | None = None
        error: str | None = None
        permanent = False
        try:
            await check_callback_url(delivery["url"], allow_private=self.settings.webhook_allow_private)
            data = body.encode()
            secret = self.settings.webhook_secret or ""
            headers = {
                "Content-Type": "application/json",
                "Webhook-Id": delivery_id,
                "Webhook-Attempt": str(attempt_no),
                "Webhook-Signature": sign(secret, data),
            }
            assert self._client is not None
            response = await self._client.post(delivery["url"], content=data, headers=headers)
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
        except CallbackResolveError as exc:
            error = str(exc)  # DNS may come back: retried
        except CallbackURLError as exc:
            error, permanent = f"refused: {exc}", True
        except httpx.TimeoutException:
            error = f"timed out after {self.settings.webhook_timeout_seconds:g}s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        ok = error is None
        if ok:
            state, next_epoch = "delivered", None
        elif permanent or attempt_no >= self.settings.webhook_max_attempts:
            state, next_epoch = "failed", None
        else:
            state = "pending"
            next_epoch = time.time() + retry_delay(attempt_no, base=self.settings.webhook_retry_base_seconds,
                                                   factor=self.settings.webhook_retry_factor)
        attempt = {
            "delivery_id": delivery_id,
            "event": delivery["event"],
            "attempt": attempt_no,
            "at": _iso(started),
            "status_code": status_code,
            "error": error,
            "duration_ms": round((time.time() - started) * 1000, 1),
            "next_attempt_at": _iso(next_epoch) if next_epoch is not None else None,
            "worker": self.worker,
        }
        await self.webhooks.record(delivery, attempt, state=state, next_epoch=next_epoch, body=new_body)
        log = _log.info if ok else _log.warning
        log("webhook %s %s attempt %d -> %s", delivery_id, delivery["event"], attempt_no,
            status_code if ok else error)

