"""The Redis job store: job records, the priority queue, progress and logs.

Layout (prefix ``ave:``):
- ``job:<id>``        hash of the record's fields (JSON for structured ones)
- ``job:<id>:log``    list of ``{timestamp, message}``, trimmed to the newest N
- ``queue:<name>``    sorted set; score = -priority * 2**32 + sequence, so ZPOPMIN
                      gives the highest priority first and FIFO within a priority
- ``jobs``            sorted set of every job by creation time, for listing
- ``running``         hash job id -> dispatcher id, for recovery after a crash
- ``wake``            list a dispatcher blocks on, so a new job starts at once
- ``events:<id>``     pub/sub channel: ``"<rev> <status>"`` after every change of the job
                      (``rev`` counts the job's changes; the SSE event id)
- ``webhooks:due``    sorted set of webhook deliveries by due time (see scheduler/notify/webhooks.py)
- ``jobs:expiry``     sorted set of finished jobs by the time their record expires (retention)
- ``dispatcher:<id>`` a dispatcher's heartbeat, a key with a TTL

Every status change runs in a Lua script (:mod:`scheduler.records.jobs_lua`) that checks the current status
first, so two dispatchers (or a dispatcher and a cancel) can never both win a transition, and the
dispatcher's lease (owner and attempt, :mod:`scheduler.records.fencing`), so a dispatcher that lost its job can
change nothing of it. The same script bumps the job's ``rev`` and publishes it, and a terminal transition of
a job with a ``callback_url`` enqueues its webhook: a change is never written without its notification.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from types import EllipsisType
from typing import Any, TypeVar

from redis import asyncio as aioredis
from redis.exceptions import ResponseError

from scheduler.records import jobs_lua as lua
from scheduler.errors import InvalidTransitionError, JobNotFoundError
from scheduler.records.fencing import JobLostError, Lease
from scheduler.records.job_record import public_record
from scheduler.records.redis_calls import decode_json, guard, guard_read, raw_script, require_decoding, to_json
from scheduler.records.metrics import SUBMITTED_KEY
from scheduler.settings import QUEUE_NAME
from scheduler.records.timefmt import now_ts

__all__ = ["ACTIVE", "EVENTS_PREFIX", "JobStore", "STATUSES", "TERMINAL", "guard", "require_decoding"]

STATUSES = ("pending", "queued", "in_progress", "completed", "failed", "cancelled")
TERMINAL = frozenset({"completed", "failed", "cancelled"})
ACTIVE = frozenset({"pending", "queued", "in_progress"})
PRIORITY_LIMIT = 1_000_000
_P = "ave:"
EVENTS_PREFIX = f"{_P}events:"
WEBHOOKS_DUE_KEY = f"{_P}webhooks:due"
WEBHOOK_KEY_PREFIX = f"{_P}webhook:"
EXPIRY_KEY = f"{_P}jobs:expiry"
T = TypeVar("T")

#: Seconds a record's cached JSON is kept (clients poll a job while it runs; then it is only memory).
JSON_CACHE_SECONDS = 60


def _fence(lease: Lease | None, *, expect_dead: bool = False) -> list[str]:
    """The fence arguments of a script: owner, attempt, whether the owner's heartbeat must be gone."""
    if lease is None:
        return ["", "", "0"]
    return [lease.owner, str(lease.attempt), "1" if expect_dead else "0"]


class JobStore:
    """Job records and the queue, over one redis-py asyncio client (``decode_responses=True``).

    ``ttl_seconds`` (``JOB_TTL_DAYS``; 0 keeps them forever): how long a finished job, its log and its webhook
    deliveries stay. They expire in Redis (``PEXPIRE`` in the terminal transition), so nothing has to run for
    them to go; :meth:`sweep` then drops expired ids from the listing index, reading only the index of expiry
    times (``jobs:expiry``) rather than scanning the listing, and :meth:`list` skips an id whose record is gone,
    so a listing never shows a ghost even between sweeps.
    """

    def __init__(self, redis: aioredis.Redis, *, queue_name: str = QUEUE_NAME, log_limit: int = 300,
                 ttl_seconds: float = 0) -> None:
        self.redis = require_decoding(redis)
        self.queue_name = queue_name
        self.log_limit = log_limit
        self.ttl_ms = max(0, round(ttl_seconds * 1000))
        self._queue_key = f"{_P}queue:{queue_name}"
        self._transition = redis.register_script(lua.TRANSITION)
        self._claim = redis.register_script(lua.CLAIM)
        self._report = redis.register_script(lua.REPORT)
        self._requeue = redis.register_script(lua.REQUEUE)
        self._heartbeat = redis.register_script(lua.HEARTBEAT)
        self._confirm = redis.register_script(lua.CONFIRM)
        self._fenced_write = redis.register_script(lua.FENCED_WRITE)
        self._delete = redis.register_script(lua.DELETE)
        self._sweep = redis.register_script(lua.SWEEP)
        self._read = redis.register_script(lua.READ)
        self._read_cached = redis.register_script(lua.READ_CACHED)
        self._cache = redis.register_script(lua.CACHE)

    # -- keys -------------------------------------------------------------------------
    @property
    def queue_key(self) -> str:
        return self._queue_key

    @staticmethod
    def _key(job_id: str) -> str:
        return f"{_P}job:{job_id}"

    @staticmethod
    def _log_key(job_id: str) -> str:
        return f"{_P}job:{job_id}:log"

    @staticmethod
    def _owner_key(owner: str) -> str:
        return f"{_P}dispatcher:{owner}"

    @staticmethod
    def channel(job_id: str) -> str:
        """The pub/sub channel that carries ``"<rev> <status>"`` after every change of the job."""
        return f"{EVENTS_PREFIX}{job_id}"

    async def _score(self, priority: int) -> int:
        seq = await self.redis.incr(f"{_P}seq")
        return -priority * 2**32 + seq

    # -- create and read --------------------------------------------------------------
    async def create(self, job_type: str, payload: dict[str, Any], *, priority: int = 0,
                     clip_version_id: str | None = None, callback_url: str | None = None) -> dict[str, Any]:
        """Store a new job and put it on the queue: ``pending`` then ``queued``, in one transaction.

        ``callback_url`` stays internal (not in the record): its webhook is enqueued by the terminal transition.
        """
        if not -PRIORITY_LIMIT <= priority <= PRIORITY_LIMIT:
            raise ValueError(f"priority must be between {-PRIORITY_LIMIT} and {PRIORITY_LIMIT}")
        job_id = f"job_{secrets.token_hex(12)}"
        now = now_ts()
        fields = {
            "id": job_id,
            "job_type": job_type,
            "status": "queued",
            "priority": str(priority),
            "clip_version_id": to_json(clip_version_id),
            "payload": to_json(payload),
            "created_at": now,
            "updated_at": now,
            "started_at": "",
            "completed_at": "",
            "error_message": "",
            "progress": "0",
            "result": "",
            "attempts": "0",
            "owner": "",
            "rev": "0",
            "eta": "null",
            "callback_url": callback_url or "",
        }

        async def write() -> None:
            score = await self._score(priority)
            async with self.redis.pipeline(transaction=True) as pipe:
                # queue_score: its place in the queue, which a requeue after an interruption gives it back.
                pipe.hset(self._key(job_id), mapping={**fields, "queue_score": str(score)})
                pipe.zadd(self._queue_key, {job_id: score})
                pipe.zadd(f"{_P}jobs", {job_id: _epoch(now)})
                pipe.hincrby(SUBMITTED_KEY, job_type, 1)
                pipe.lpush(f"{_P}wake", "1")
                pipe.ltrim(f"{_P}wake", 0, 0)
                await pipe.execute()

        await guard(write())
        return public_record(fields, [], self.queue_name)

    async def get(self, job_id: str) -> dict[str, Any]:
        """The job record with exactly the reference's fields."""
        return (await self.snapshot(job_id))[0]

    async def get_json(self, job_id: str, encode: Callable[[Any], bytes]) -> bytes:
        """``encode(record)``, from the record's cached JSON when it has not changed since (one round trip and
        no decoding: what a polling client asks for again and again); else read, encoded and cached."""
        key = self._key(job_id)
        raw = await guard_read(lambda: raw_script(self.redis, self._read_cached,
                                                  [key, self._log_key(job_id), f"{key}:json"], []))
        if not raw:
            raise JobNotFoundError(job_id)
        if raw[:1] == b"{":
            return raw  # type: ignore[no-any-return]
        record, rev = self._parse(raw.decode())
        body = encode(record)
        await guard(self._cache(keys=[key, f"{key}:json"], args=[str(rev), body, JSON_CACHE_SECONDS]))
        return body

    async def snapshot(self, job_id: str) -> tuple[dict[str, Any], int]:
        """The job record and its ``rev`` (how many changes it has had), read together."""
        raw = await guard_read(lambda: self._read(keys=[self._key(job_id), self._log_key(job_id)]))
        if not raw:
            raise JobNotFoundError(job_id)
        return self._parse(raw)

    def _parse(self, raw: str) -> tuple[dict[str, Any], int]:
        values = raw.split("\0", len(lua.READ_FIELDS))
        fields = dict(zip(lua.READ_FIELDS, values))
        log_text = values[-1]
        log = decode_json(f"[{log_text.replace(chr(10), ',')}]") if log_text else []
        return public_record(fields, log, self.queue_name), int(fields.get("rev") or 0)

    async def status(self, job_id: str) -> str | None:
        return await guard(self.redis.hget(self._key(job_id), "status"))  # type: ignore[no-any-return]

    async def holder(self, job_id: str) -> tuple[str, str, int] | None:
        """``(status, owner, attempt)`` of a job, or None when it does not exist (one cheap read)."""
        status, owner, attempts = await guard(self.redis.hmget(self._key(job_id), ["status", "owner", "attempts"]))
        if status is None:
            return None
        return status, owner or "", int(attempts or 0)

    async def internal(self, job_id: str) -> dict[str, str]:
        """Raw fields, including ``attempts`` and ``owner``."""
        fields = await guard(self.redis.hgetall(self._key(job_id)))
        if not fields:
            raise JobNotFoundError(job_id)
        return fields  # type: ignore[no-any-return]

    async def list(self, *, status: str | None = None, job_type: str | None = None,
                   limit: int = 50) -> list[dict[str, Any]]:
        """Newest first, filtered by status and job type (a job whose record expired is skipped)."""
        found: list[dict[str, Any]] = []
        start, page = 0, max(50, limit * 2)
        while len(found) < limit:
            ids = await guard(self.redis.zrevrange(f"{_P}jobs", start, start + page - 1))
            if not ids:
                break
            start += page
            for job_id in ids:
                try:
                    record = await self.get(job_id)
                except JobNotFoundError:
                    continue
                if status and record["status"] != status:
                    continue
                if job_type and record["job_type"] != job_type:
                    continue
                found.append(record)
                if len(found) >= limit:
                    break
        return found

    # -- transitions ------------------------------------------------------------------
    async def _move(self, job_id: str, allowed: Iterable[str], to: str, *, message: str | None = None,
                    lease: Lease | None = None, expect_dead: bool = False, **fields: str) -> str:
        flat: list[str] = []
        for k, v in fields.items():
            flat += [k, v]
        now = now_ts()
        entry = to_json({"timestamp": now, "message": message}) if message else ""
        owner_key = self._owner_key(lease.owner) if lease is not None else self._key(job_id)
        try:
            return await guard(  # type: ignore[no-any-return]
                self._transition(
                    keys=[self._key(job_id), self._queue_key, f"{_P}running", self._log_key(job_id),
                          WEBHOOKS_DUE_KEY, EXPIRY_KEY, owner_key],
                    args=[",".join(allowed), to, now, _epoch(now), self.channel(job_id), entry, self.log_limit,
                          WEBHOOK_KEY_PREFIX, *_fence(lease, expect_dead=expect_dead), self.ttl_ms,
                          len(fields), *flat],
                )
            )
        except ResponseError as exc:
            raise self._refusal(exc, job_id, to, lease) from None

    @staticmethod
    def _refusal(exc: ResponseError, job_id: str, to: str, lease: Lease | None) -> Exception:
        """The named error of a script's refusal (NOTFOUND, BADSTATE <status>, LOST <owner> <attempt>, ALIVE)."""
        text = str(exc)
        if "NOTFOUND" in text:
            return JobNotFoundError(job_id)
        if "BADSTATE" in text:
            return InvalidTransitionError(job_id, text.split("BADSTATE", 1)[1].strip(), to)
        if lease is not None and ("LOST" in text or "ALIVE" in text):
            return JobLostError.from_reply(lease, text)
        return exc

    async def claim(self, owner: str) -> str | None:
        """Take the next queued job (highest priority, oldest first) and mark it in_progress."""
        lease = await self.claim_lease(owner)
        return lease.job_id if lease is not None else None

    async def claim_lease(self, owner: str) -> Lease | None:
        """:meth:`claim`, answering the lease (owner and the attempt this claim made) that fences later writes."""
        now = now_ts()
        got = await guard(self._claim(keys=[self._queue_key, f"{_P}running"], args=[now, owner, _P, _epoch(now)]))
        if not got:
            return None
        return Lease(job_id=got[0], owner=owner, attempt=int(got[1]))

    async def wait_for_work(self, timeout: float) -> None:
        """Block until a job is enqueued or ``timeout`` passes."""
        await guard(self.redis.blpop([f"{_P}wake"], timeout=timeout))

    async def complete(self, job_id: str, result: dict[str, Any], *, lease: Lease | None = None,
                       keep: Iterable[str] = ()) -> None:
        """``keep``: the storage paths of the assets it published (what retention must not delete)."""
        now = now_ts()
        await self._move(job_id, ["in_progress"], "completed", lease=lease, completed_at=now, progress="1",
                         result=to_json(result), published_paths=to_json(sorted(keep)))

    async def fail(self, job_id: str, message: str, result: dict[str, Any] | None = None,
                   allowed: Iterable[str] = ("in_progress",), *, lease: Lease | None = None,
                   expect_dead: bool = False, keep: Iterable[str] = ()) -> None:
        """``expect_dead`` (recovery): refused unless the lease's owner has no heartbeat any more."""
        # No NUL in the stored message: the record is read back NUL-separated (see READ).
        fields = {"completed_at": now_ts(), "error_message": message.replace("\0", ""),
                  "published_paths": to_json(sorted(keep))}
        if result is not None:
            fields["result"] = to_json(result)
        await self._move(job_id, allowed, "failed", lease=lease, expect_dead=expect_dead, **fields)

    async def cancel(self, job_id: str, message: str | None = None) -> str:
        """Cancel a job that has not finished; return the status it had.

        ``message`` is logged in the same transition, so the terminal notification already carries it.
        """
        return await self._move(job_id, ["pending", "queued", "in_progress"], "cancelled", message=message,
                                completed_at=now_ts())

    async def requeue(self, job_id: str, message: str, *, lease: Lease | None = None,
                      expect_dead: bool = True) -> bool:
        """Put an interrupted in_progress job back on the queue (recovery only).

        With ``lease`` (what recovery saw: the dead dispatcher and its attempt) it is refused with
        :class:`JobLostError` when the job is held otherwise by now, or (``expect_dead``) when that
        dispatcher is alive again.
        """
        fields = await self.internal(job_id)
        # Back where it was submitted (ahead of the jobs queued after it): it was already under way.
        score = int(fields.get("queue_score") or 0) or await guard(self._score(int(fields.get("priority") or 0)))
        entry = to_json({"timestamp": now_ts(), "message": message})
        owner_key = self._owner_key(lease.owner) if lease is not None else self._key(job_id)
        try:
            done = await guard(self._requeue(
                keys=[self._key(job_id), self._queue_key, f"{_P}running", self._log_key(job_id), owner_key],
                args=[now_ts(), score, entry, self.log_limit, self.channel(job_id),
                      *_fence(lease, expect_dead=expect_dead)],
            ))
        except ResponseError as exc:
            raise self._refusal(exc, job_id, "queued", lease) from None
        if done:
            await guard(self.redis.lpush(f"{_P}wake", "1"))
        return bool(done)

    # -- progress and log -------------------------------------------------------------
    async def report(self, job_id: str, *, progress: float | None = None,
                     messages: Iterable[str | tuple[str, str]] = (), extra: dict[str, Any] | None = None,
                     eta: float | None | EllipsisType = ..., lease: Lease | None = None) -> int:
        """Write progress (never lower), log lines and the ETA in one atomic round trip.

        A message is a string, stamped now, or a ``(timestamp, message)`` pair stamped when it happened.
        ``eta`` (seconds, or None for "not known yet") is kept only with a progress or log change.
        Returns the job's new ``rev``, or 0 when nothing changed (then nobody is notified). With ``lease``,
        a dispatcher that no longer holds the job writes nothing and gets :class:`JobLostError`.
        """
        stamped = [(now_ts(), m) if isinstance(m, str) else m for m in messages]
        entries = [to_json({"timestamp": ts, "message": m}) for ts, m in stamped]
        progress_arg = "" if progress is None else repr(min(1.0, max(0.0, progress)))
        eta_arg = "" if eta is ... else "null" if eta is None else repr(round(float(eta), 1))
        rev = int(await guard(self._report(
            keys=[self._key(job_id), self._log_key(job_id)],
            args=[now_ts(), progress_arg, eta_arg, to_json(extra) if extra else "", self.log_limit,
                  self.channel(job_id), *_fence(lease)[:2], *entries],
        )) or 0)
        if rev < 0 and lease is not None:
            raise JobLostError(lease, reason="its progress was refused")
        return rev

    # -- dispatchers ------------------------------------------------------------------
    async def heartbeat(self, owner: str, ttl: int, leases: Iterable[Lease] = ()) -> list[str]:
        """Mark ``owner`` alive for ``ttl`` seconds; answer the ids of ``leases`` it no longer holds."""
        pairs = [part for lease in leases for part in (lease.job_id, str(lease.attempt))]
        lost = await guard(self._heartbeat(keys=[self._owner_key(owner)], args=[ttl, _P, owner, *pairs]))
        return list(lost or [])

    async def confirm(self, lease: Lease, ttl: int) -> str:
        """Check that ``lease`` still holds its job and refresh its owner's heartbeat, in one step; answer the
        job's status. :class:`JobLostError` when another dispatcher (or nobody) holds it."""
        try:
            return await guard(self._confirm(  # type: ignore[no-any-return]
                keys=[self._key(lease.job_id), self._owner_key(lease.owner)],
                args=[ttl, lease.owner, lease.attempt]))
        except ResponseError as exc:
            raise self._refusal(exc, lease.job_id, "in_progress", lease) from None

    async def fenced_write(self, lease: Lease, commands: list[list[str]]) -> None:
        """Run ``commands`` (e.g. ``[["SET", key, value], ["SADD", index, member]]``) atomically, only while
        ``lease`` holds its job in progress: :class:`JobLostError` when it does not (nothing is written),
        :class:`InvalidTransitionError` when the job was cancelled meanwhile."""
        try:
            await guard(self._fenced_write(keys=[self._key(lease.job_id)],
                                           args=[*_fence(lease), to_json(commands)]))
        except ResponseError as exc:
            raise self._refusal(exc, lease.job_id, "completed", lease) from None

    async def release_owner(self, owner: str) -> None:
        await guard(self.redis.delete(self._owner_key(owner)))

    async def claimed(self) -> dict[str, str]:
        """Every in_progress job's id -> the dispatcher that claimed it."""
        return await guard(self.redis.hgetall(f"{_P}running"))  # type: ignore[no-any-return]

    async def orphans(self, *, exclude: str | None = None) -> list[tuple[str, str]]:
        """Running jobs whose dispatcher's heartbeat is gone: ``[(job_id, owner)]``."""
        return [(job_id, owner) for job_id, owner in (await self.claimed()).items()
                if owner != exclude and not await guard(self.redis.exists(self._owner_key(owner)))]

    # -- retention --------------------------------------------------------------------
    async def published_paths(self, job_id: str) -> list[str]:
        """The storage paths of the assets a finished job published (kept when its intermediates go).

        :class:`JobNotFoundError`, or :class:`InvalidTransitionError` (to ``deleted``) for a job not finished.
        """
        status, paths = await guard(self.redis.hmget(self._key(job_id), ["status", "published_paths"]))
        if status is None:
            raise JobNotFoundError(job_id)
        if status not in TERMINAL:
            raise InvalidTransitionError(job_id, status, "deleted")
        return list(decode_json(paths)) if paths else []

    async def delete(self, job_id: str) -> None:
        """Remove a finished job, its log and its webhook deliveries (not its assets)."""
        key = self._key(job_id)
        try:
            await guard(self._delete(
                keys=[key, self._log_key(job_id), f"{_P}jobs", EXPIRY_KEY, WEBHOOKS_DUE_KEY, f"{key}:webhooks",
                      f"{key}:json"],
                args=[WEBHOOK_KEY_PREFIX]))
        except ResponseError as exc:
            raise self._refusal(exc, job_id, "deleted", None) from None

    async def sweep(self, *, limit: int = 500) -> int:
        """Drop jobs whose record expired from the listing index; answer how many."""
        return int(await guard(self._sweep(keys=[f"{_P}jobs", EXPIRY_KEY], args=[time.time(), limit, _P])) or 0)

    async def ping(self) -> bool:
        return bool(await guard(self.redis.ping()))

    async def info(self) -> dict[str, Any]:
        return await guard(self.redis.info())  # type: ignore[no-any-return]


def _epoch(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts).timestamp()
