"""Webhooks: a signed JSON POST to the job's ``callback_url`` when it ends, retried from Redis.

- The terminal transition (a Lua script in :mod:`scheduler.records.jobs`) enqueues the delivery in the
  same step as the status change: ``ave:webhook:<job_id>.<n>`` (a hash) and its due time in the
  sorted set ``ave:webhooks:due``. A crash between the two cannot lose a webhook.
- Every process with ``RUN_WEBHOOKS`` (API servers and dispatchers) runs a :class:`WebhookDeliverer`.
  It claims due deliveries atomically, pushing their score out by a lease and writing a claim token on
  each (so a delivery is attempted by one process at a time, and a process that died mid-attempt only
  delays it), POSTs ``{"event": "job.completed"|"job.failed"|"job.cancelled", "job": <record>}`` with
  ``Webhook-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">``, and on a non-2xx answer or a
  timeout reschedules it ``base × factor^(attempt-1)`` seconds later (±20 % jitter), up to
  ``WEBHOOK_MAX_ATTEMPTS`` tries. Retries therefore survive a restart of every process.
- One attempt never outlives its claim: a single deadline, before the lease ends, bounds all of it
  (resolve, connect, send, read; httpx's timeouts are per phase, so a server trickling its answer would
  outlast them), and the attempt is recorded only while its token is still on the delivery: a late
  attempt writes nothing, and cannot overwrite the attempt count of the process that claimed it next.
- Every attempt is logged on the job (``GET /jobs/{id}/webhooks``); ``POST .../webhooks/replay``
  enqueues the job's terminal event again.
- SSRF guard (:mod:`scheduler.notify.webhook_guard`): a callback URL must be http(s) and every address its
  host resolves to must be global, unless ``WEBHOOK_ALLOW_PRIVATE``. It is checked at submission and
  again, with one lookup, in each attempt, which then connects only to those addresses (never resolving
  the name again: DNS rebinding); redirects are not followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import ssl
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from redis import asyncio as aioredis
from redis.exceptions import ResponseError

from scheduler.errors import JobNotFoundError, QueueUnavailableError
from scheduler.settings import Settings
from scheduler.notify import webhook_scripts as scripts
from scheduler.records import keys
from scheduler.records.jobs import JobStore, guard, require_decoding
from scheduler.timefmt import now_ts
from scheduler.notify.webhook_guard import (CallbackResolveError, CallbackURLError, PinnedTransport, sign,
                                            vet_callback_url)

__all__ = ["EVENTS", "Claim", "ReplayRefusedError", "WebhookDeliverer", "WebhookStore", "retry_delay"]

_log = logging.getLogger("scheduler.notify.webhooks")
EVENTS = {"completed": "job.completed", "failed": "job.failed", "cancelled": "job.cancelled"}
ATTEMPTS_KEPT = 200
USER_AGENT = "ave-webhooks/0.1"
LEASE_SPARE = 5.0  # seconds a claim outlives the attempt's timeout: to read the delivery and record the attempt
RECORD_SPARE = 2.0  # an attempt's deadline falls this long before its claim ends, to leave time to record it

@dataclass(frozen=True, slots=True)
class Claim:
    """Deliveries claimed together: each is this claimer's (its token on it) until ``until`` (epoch seconds)."""

    ids: list[str]
    token: str
    until: float


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
        self._claim = redis.register_script(scripts.CLAIM)
        self._replay = redis.register_script(scripts.REPLAY)
        self._record = redis.register_script(scripts.RECORD)
        self._release = redis.register_script(scripts.RELEASE)

    key = staticmethod(keys.webhook)
    attempts_key = staticmethod(keys.job_webhooks)

    async def claim(self, limit: int, lease: float) -> Claim:
        """Up to ``limit`` due deliveries, each this claimer's for ``lease`` seconds (a new token each call)."""
        now, token = time.time(), uuid.uuid4().hex
        due = await guard(self.redis.zrangebyscore(keys.WEBHOOKS_DUE, "-inf", now, start=0, num=limit))
        if not due:
            return Claim(ids=[], token=token, until=now + lease)
        ids = await guard(self._claim(keys=[keys.WEBHOOKS_DUE, *map(keys.webhook, due)],
                                      args=[now, now + lease, token, *due]))
        return Claim(ids=list(ids), token=token, until=now + lease)

    async def release(self, delivery_id: str, token: str) -> bool:
        """Due again now (a process stopping mid-attempt hands it on), if the claim is still ``token``'s."""
        now = time.time()
        done = await guard(self._release(keys=[self.key(delivery_id), keys.WEBHOOKS_DUE],
                                         args=[token, delivery_id, now]))
        return bool(done)

    async def delivery(self, delivery_id: str) -> dict[str, str]:
        return await guard(self.redis.hgetall(self.key(delivery_id)))  # type: ignore[no-any-return]

    async def enqueue_replay(self, job_id: str) -> dict[str, Any]:
        """Enqueue the job's terminal event again (a new delivery, due now)."""
        for _ in range(10):  # RETRY: another replay of the same job took the next number meanwhile
            seq = int(await guard(self.redis.hget(keys.job(job_id), "webhook_seq")) or 0)
            delivery_id = f"{job_id}.{seq + 1}"
            try:
                await guard(self._replay(keys=[keys.job(job_id), keys.webhook(delivery_id), keys.WEBHOOKS_DUE],
                                         args=[seq, delivery_id, "job.", now_ts(), time.time()]))
                break
            except ResponseError as exc:
                text = str(exc)
                if "NOTFOUND" in text:
                    raise JobNotFoundError(job_id) from None
                if "NOURL" in text:
                    raise ReplayRefusedError(f"Job {job_id} has no callback_url") from None
                if "BADSTATE" in text:
                    status = text.split("BADSTATE", 1)[1].strip()
                    raise ReplayRefusedError(f"Job {job_id} is {status}: it has no final event to send yet") from None
                if "RETRY" not in text:
                    raise
        else:
            raise QueueUnavailableError(f"job {job_id}: its webhook deliveries kept changing")
        return public_delivery(await self.delivery(delivery_id))

    async def record(self, delivery: dict[str, str], attempt: dict[str, Any], *, token: str, state: str,
                     next_epoch: float | None, body: str | None) -> bool:
        """Log an attempt and move the delivery on, in one step; only while the claim is still ``token``'s.

        False (and nothing written) for a late attempt: another process has claimed the delivery since, and
        its attempt, not this one, owns the attempt count and the delivery's state.
        """
        delivery_id, job_id = delivery["id"], delivery["job_id"]
        fields: dict[str, str] = {
            "attempts": str(attempt["attempt"]), "state": state, "last_status": str(attempt["status_code"] or ""),
            "last_error": attempt["error"] or "", "last_attempt_at": attempt["at"],
            "next_attempt_at": _iso(next_epoch) if next_epoch is not None else "",
        }
        if body is not None:
            fields["body"] = body
        args: list[Any] = [token, delivery_id, json.dumps(attempt, separators=(",", ":")), ATTEMPTS_KEPT,
                           "" if next_epoch is None else repr(next_epoch)]
        for name, value in fields.items():
            args += [name, value]
        done = await guard(self._record(keys=[self.key(delivery_id), self.attempts_key(job_id), keys.WEBHOOKS_DUE],
                                        args=args))
        return bool(done)

    async def finish_missing(self, delivery_id: str) -> None:
        await guard(self.redis.zrem(keys.WEBHOOKS_DUE, delivery_id))

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
        self.lease = settings.webhook_timeout_seconds + LEASE_SPARE
        self._inflight: dict[str, tuple[asyncio.Task[None], str]] = {}  # delivery id: its attempt, claim token
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._ssl: ssl.SSLContext | None = None

    async def start(self) -> None:
        # One TLS context (the CA bundle read once) for every attempt's own client, pinned to its addresses.
        self._ssl = httpx.create_ssl_context(trust_env=False)
        self._task = asyncio.create_task(self._loop(), name="webhooks")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for delivery_id, (task, token) in list(self._inflight.items()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            with contextlib.suppress(Exception):
                await self.webhooks.release(delivery_id, token)  # the next process takes it at once

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                free = self.concurrency - len(self._inflight)
                if free > 0:
                    claim = await self.webhooks.claim(free, self.lease)
                    for delivery_id in claim.ids:
                        if delivery_id not in self._inflight:
                            task = asyncio.create_task(self._attempt(delivery_id, claim))
                            self._inflight[delivery_id] = (task, claim.token)
                            task.add_done_callback(lambda _t, d=delivery_id: self._inflight.pop(d, None))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001  (Redis down: try again later)
                _log.debug("webhook claim failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.poll_seconds)

    async def _attempt(self, delivery_id: str, claim: Claim) -> None:
        try:
            await self._deliver(delivery_id, claim)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001  (the lease makes it due again)
            _log.exception("webhook delivery %s failed unexpectedly", delivery_id)

    async def _body(self, delivery: dict[str, str]) -> tuple[str, str | None] | None:
        """The body to send, and the same when it is new (to freeze it); None when the job is gone."""
        if delivery.get("body"):
            return delivery["body"], None
        try:
            record = await self.store.get(delivery["job_id"])
        except JobNotFoundError:
            return None
        # Frozen at the first attempt: every retry sends the same bytes (with a new signature).
        body = json.dumps({"event": delivery["event"], "job": record}, separators=(",", ":"))
        return body, body

    async def _deliver(self, delivery_id: str, claim: Claim) -> None:
        delivery = await self.webhooks.delivery(delivery_id)
        bodies = await self._body(delivery) if delivery and delivery.get("state") == "pending" else None
        if bodies is None:
            await self.webhooks.finish_missing(delivery_id)
            return
        # The whole attempt ends while the claim still holds, with time left to record it; none left (the
        # reads above were slow): no attempt, and the lease makes the delivery due again.
        budget = min(self.settings.webhook_timeout_seconds, claim.until - RECORD_SPARE - time.time())
        if budget <= 0:
            return
        attempt_no = int(delivery.get("attempts") or 0) + 1
        started = time.time()
        status_code, error, permanent = await self._post(delivery_id, delivery["url"], bodies[0], attempt_no, budget)
        state, next_epoch = self._outcome(error, permanent, attempt_no)
        attempt = {
            "delivery_id": delivery_id, "event": delivery["event"], "attempt": attempt_no, "at": _iso(started),
            "status_code": status_code, "error": error, "duration_ms": round((time.time() - started) * 1000, 1),
            "next_attempt_at": _iso(next_epoch) if next_epoch is not None else None, "worker": self.worker,
        }
        if not await self.webhooks.record(delivery, attempt, token=claim.token, state=state,
                                          next_epoch=next_epoch, body=bodies[1]):
            _log.warning("webhook %s attempt %d ended after its claim passed to another process: not recorded",
                         delivery_id, attempt_no)
            return
        log = _log.info if error is None else _log.warning
        log("webhook %s %s attempt %d -> %s", delivery_id, delivery["event"], attempt_no,
            status_code if error is None else error)

    def _outcome(self, error: str | None, permanent: bool, attempt_no: int) -> tuple[str, float | None]:
        """The delivery's next state, and when it is due again (None: never)."""
        if error is None:
            return "delivered", None
        if permanent or attempt_no >= self.settings.webhook_max_attempts:
            return "failed", None
        return "pending", time.time() + retry_delay(attempt_no, base=self.settings.webhook_retry_base_seconds,
                                                    factor=self.settings.webhook_retry_factor)

    async def _post(self, delivery_id: str, url: str, body: str, attempt_no: int,
                    budget: float) -> tuple[int | None, str | None, bool]:
        """One attempt within ``budget`` seconds: ``(status code, error, permanent)``."""
        try:
            async with asyncio.timeout(budget):
                status_code = await self._send(delivery_id, url, body.encode(), attempt_no)
        except CallbackResolveError as exc:
            return None, str(exc), False  # DNS may come back: retried
        except CallbackURLError as exc:
            return None, f"refused: {exc}", True
        except (TimeoutError, httpx.TimeoutException):
            return None, f"timed out after {round(budget, 2):g}s", False
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, False
        return status_code, None if 200 <= status_code < 300 else f"HTTP {status_code}", False

    async def _send(self, delivery_id: str, url: str, data: bytes, attempt_no: int) -> int:
        """Resolve and check the host once, then POST over a connection to one of those addresses."""
        target = await vet_callback_url(url, allow_private=self.settings.webhook_allow_private)
        headers = {
            "Content-Type": "application/json",
            "Webhook-Id": delivery_id,
            "Webhook-Attempt": str(attempt_no),
            "Webhook-Signature": sign(self.settings.webhook_secret or "", data),
        }
        if self._ssl is None:
            raise RuntimeError("WebhookDeliverer.start() was not called")
        # A client per attempt: its pool connects to this attempt's vetted addresses and nowhere else.
        async with httpx.AsyncClient(
            transport=PinnedTransport(target, ssl_context=self._ssl), timeout=self.settings.webhook_timeout_seconds,
            follow_redirects=False, trust_env=False, headers={"User-Agent": USER_AGENT},
        ) as client:
            response = await client.post(url, content=data, headers=headers)
        return response.status_code
