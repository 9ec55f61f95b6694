"""The Redis job store: job records, the priority queue, progress and logs.

Every key is built by :mod:`scheduler.records.keys` (the layout's table is in the README).

Every status change runs in a Lua script (:mod:`scheduler.records.jobs_lua`) that checks the current status
first, so two dispatchers (or a dispatcher and a cancel) can never both win a transition, and the
dispatcher's lease (owner and attempt, :mod:`scheduler.records.fencing`), so a dispatcher that lost its job can
change nothing of it. The same script bumps the job's ``rev`` and publishes it, and a terminal transition of
a job with a ``callback_url`` enqueues its webhook: a change is never written without its notification.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from types import EllipsisType
from typing import Any, TypeVar

from redis import asyncio as aioredis
from redis.exceptions import ResponseError

from scheduler.records import jobs_lua as lua
from scheduler.records import keys
from scheduler.records.job_reads import JobReads, public_record
from scheduler.errors import InvalidTransitionError, JobNotFoundError, QueueUnavailableError
from scheduler.records.fencing import JobLostError, Lease
from scheduler.records.redis_calls import decode_json, guard, require_decoding, to_json
from scheduler.settings import QUEUE_NAME
from scheduler.timefmt import now_ts

__all__ = ["ACTIVE", "JobStore", "STATUSES", "TERMINAL", "guard", "require_decoding"]

STATUSES = ("pending", "queued", "in_progress", "completed", "failed", "cancelled")
TERMINAL = frozenset({"completed", "failed", "cancelled"})
ACTIVE = frozenset({"pending", "queued", "in_progress"})
_ENDED = ("completed", "failed", "cancelled")  # in the order the delete and sweep scripts take their indexes
PRIORITY_LIMIT = 1_000_000
T = TypeVar("T")



def _fence(lease: Lease | None, *, expect_dead: bool = False) -> list[str]:
    """The fence arguments of a script: owner, attempt, whether the owner's heartbeat must be gone."""
    if lease is None:
        return ["", "", "0"]
    return [lease.owner, str(lease.attempt), "1" if expect_dead else "0"]


class JobStore(JobReads):
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
        self._queue_key = keys.queue(queue_name)
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

    _owner_key = staticmethod(keys.dispatcher)
    #: The pub/sub channel that carries ``"<rev> <status>"`` after every change of the job.
    channel = staticmethod(keys.events)

    async def _score(self, priority: int) -> int:
        seq = await self.redis.incr(keys.SEQ)
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

        born = _epoch(now)
        named = payload.get("project_id")
        project = [keys.jobs_of_project(named)] if isinstance(named, str) and named else []

        async def write() -> None:
            score = await self._score(priority)
            async with self.redis.pipeline(transaction=True) as pipe:
                # queue_score: its place in the queue, which a requeue after an interruption gives it back.
                pipe.hset(self._key(job_id), mapping={**fields, "queue_score": str(score), "created_epoch": born})
                pipe.zadd(self._queue_key, {job_id: score})
                # The listing's indexes: every job, by type, by status (the scripts move it between those).
                for index in (keys.JOBS, keys.jobs_of_type(job_type), keys.jobs_in_status("queued"), *project):
                    pipe.zadd(index, {job_id: born})
                pipe.hincrby(keys.METRICS_SUBMITTED, job_type, 1)
                pipe.lpush(keys.WAKE, "1")
                pipe.ltrim(keys.WAKE, 0, 0)
                await pipe.execute()

        await guard(write())
        return public_record(fields, [], self.queue_name)

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
                    keys=[self._key(job_id), self._queue_key, keys.RUNNING, self._log_key(job_id),
                          keys.WEBHOOKS_DUE, keys.EXPIRY, owner_key, keys.job_json(job_id), keys.METRICS_FINISHED,
                          keys.METRICS_DURATION, keys.webhook(f"{job_id}.1"), keys.jobs_in_status(to),
                          *map(keys.jobs_in_status, allowed)],
                    args=[",".join(allowed), to, now, _epoch(now), self.channel(job_id), entry, self.log_limit,
                          f"{job_id}.1", *_fence(lease, expect_dead=expect_dead), self.ttl_ms,
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
        # The head of the queue is read first, then claimed by a script given its keys; a claim that lost the
        # race (MOVED) or met a cancelled job's entry (STALE, dropped) reads the head again.
        while True:
            head = await guard(self.redis.zrange(self._queue_key, 0, 0))
            if not head:
                return None
            job_id, now = head[0], now_ts()
            got = await guard(self._claim(keys=[self._queue_key, keys.RUNNING, keys.job(job_id), keys.job_json(job_id),
                                                keys.jobs_in_status("queued"), keys.jobs_in_status("in_progress")],
                                          args=[job_id, now, owner, _epoch(now), keys.events(job_id)]))
            if isinstance(got, list):
                return Lease(job_id=got[0], owner=owner, attempt=int(got[1]))

    async def wait_for_work(self, timeout: float) -> None:
        """Block until a job is enqueued or ``timeout`` passes."""
        await guard(self.redis.blpop([keys.WAKE], timeout=timeout))

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
                keys=[self._key(job_id), self._queue_key, keys.RUNNING, self._log_key(job_id), owner_key,
                      keys.job_json(job_id), keys.jobs_in_status("in_progress"), keys.jobs_in_status("queued")],
                args=[now_ts(), score, entry, self.log_limit, self.channel(job_id),
                      *_fence(lease, expect_dead=expect_dead)],
            ))
        except ResponseError as exc:
            raise self._refusal(exc, job_id, "queued", lease) from None
        if done:
            await guard(self.redis.lpush(keys.WAKE, "1"))
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
            keys=[self._key(job_id), self._log_key(job_id), keys.job_json(job_id)],
            args=[now_ts(), progress_arg, eta_arg, to_json(extra) if extra else "", self.log_limit,
                  self.channel(job_id), *_fence(lease)[:2], *entries],
        )) or 0)
        if rev < 0 and lease is not None:
            raise JobLostError(lease, reason="its progress was refused")
        return rev

    # -- dispatchers ------------------------------------------------------------------
    async def heartbeat(self, owner: str, ttl: int, leases: Iterable[Lease] = ()) -> list[str]:
        """Mark ``owner`` alive for ``ttl`` seconds; answer the ids of ``leases`` it no longer holds."""
        held = list(leases)
        lost = await guard(self._heartbeat(keys=[self._owner_key(owner), *(keys.job(x.job_id) for x in held)],
                                           args=[ttl, owner, *(str(x.attempt) for x in held)]))
        return [held[int(i) - 1].job_id for i in lost or []]

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
            await guard(self._fenced_write(keys=[self._key(lease.job_id), *(c[1] for c in commands)],
                                           args=[*_fence(lease), to_json(commands)]))
        except ResponseError as exc:
            raise self._refusal(exc, lease.job_id, "completed", lease) from None

    async def release_owner(self, owner: str) -> None:
        await guard(self.redis.delete(self._owner_key(owner)))

    async def claimed(self) -> dict[str, str]:
        """Every in_progress job's id -> the dispatcher that claimed it."""
        return await guard(self.redis.hgetall(keys.RUNNING))  # type: ignore[no-any-return]

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
        for _ in range(10):  # a replay racing the delete adds a delivery: read their count again
            seq_text, job_type = await guard(self.redis.hmget(self._key(job_id), ["webhook_seq", "job_type"]))
            seq = int(seq_text or 0)
            deliveries = [keys.webhook(f"{job_id}.{i}") for i in range(1, seq + 1)]
            try:
                await guard(self._delete(
                    keys=[self._key(job_id), self._log_key(job_id), keys.JOBS, keys.EXPIRY, keys.WEBHOOKS_DUE,
                          keys.job_webhooks(job_id), keys.job_json(job_id), *map(keys.jobs_in_status, _ENDED),
                          keys.jobs_of_type(job_type or ""), *deliveries],
                    args=[seq]))
                return
            except ResponseError as exc:
                if "RETRY" not in str(exc):
                    raise self._refusal(exc, job_id, "deleted", None) from None
        raise QueueUnavailableError(f"job {job_id}: its webhook deliveries kept changing while it was deleted")

    async def sweep(self, *, limit: int = 500) -> int:
        """Drop jobs whose record expired from the listing index; answer how many."""
        due = await guard(self.redis.zrangebyscore(keys.EXPIRY, "-inf", time.time(), start=0, num=limit))
        if not due:
            return 0
        per_job = [k for job_id in due for k in (keys.job(job_id), keys.job_log(job_id), keys.job_webhooks(job_id),
                                                  keys.job_json(job_id))]
        indexes = [keys.JOBS, keys.EXPIRY, *map(keys.jobs_in_status, _ENDED)]
        return int(await guard(self._sweep(keys=[*indexes, *per_job], args=list(due))) or 0)

    async def ping(self) -> bool:
        return bool(await guard(self.redis.ping()))

    async def info(self) -> dict[str, Any]:
        return await guard(self.redis.info())  # type: ignore[no-any-return]


def _epoch(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts).timestamp()
