"""Webhooks: a signed JSON POST to the job's ``callback_url`` when it ends, retried from Redis.

- The terminal transition (a Lua script in :mod:`scheduler.records.jobs`) enqueues the delivery in the
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
- SSRF guard (:mod:`scheduler.notify.webhook_guard`): a callback URL must be http(s) and every address its
  host resolves to must be global, unless ``WEBHOOK_ALLOW_PRIVATE``. It is checked at submission and
  again before each attempt, and redirects are not followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import time
from typing import Any

import httpx
from redis import asyncio as aioredis

from scheduler.errors import JobNotFoundError
from scheduler.settings import Settings
from scheduler.records.jobs import TERMINAL, WEBHOOK_KEY_PREFIX, WEBHOOKS_DUE_KEY, JobStore, guard, require_decoding
from scheduler.records.timefmt import now_ts
from scheduler.notify.webhook_guard import CallbackResolveError, CallbackURLError, check_callback_url, sign

__all__ = ["EVENTS", "ReplayRefusedError", "WebhookDeliverer", "WebhookStore", "retry_delay"]

_log = logging.getLogger("scheduler.notify.webhooks")
EVENTS = {"completed": "job.completed", "failed": "job.failed", "cancelled": "job.cancelled"}
ATTEMPTS_KEPT = 200
USER_AGENT = "ave-webhooks/0.1"

# KEYS: due ; ARGV: now-epoch, lease-until, limit
_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], member) end
return due
"""


class ReplayRefusedError(RuntimeError):
    """Nothing to replay: the job has no callback_url, or has not ended."""


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

