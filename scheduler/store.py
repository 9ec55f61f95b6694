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
- ``webhooks:due``    sorted set of webhook deliveries by due time (see scheduler/webhooks.py)

Every status change runs in a Lua script that checks the current status first, so
two dispatchers (or a dispatcher and a cancel) can never both win a transition. The same
script bumps the job's ``rev`` and publishes it, and a terminal transition of a job with a
``callback_url`` enqueues its webhook: a change is never written without its notification.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable, Iterable
from types import EllipsisType
from typing import Any, TypeVar

import msgspec
from redis import asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from scheduler.errors import InvalidTransitionError, JobNotFoundError, QueueUnavailableError
from scheduler.metrics import DURATION_KEY, FINISHED_KEY, SUBMITTED_KEY, lua_buckets, note_redis_error
from scheduler.settings import QUEUE_NAME
from scheduler.timefmt import now_ts

__all__ = ["ACTIVE", "EVENTS_PREFIX", "JobStore", "STATUSES", "TERMINAL", "guard"]

STATUSES = ("pending", "queued", "in_progress", "completed", "failed", "cancelled")
TERMINAL = frozenset({"completed", "failed", "cancelled"})
ACTIVE = frozenset({"pending", "queued", "in_progress"})
PRIORITY_LIMIT = 1_000_000
_P = "ave:"
EVENTS_PREFIX = f"{_P}events:"
WEBHOOKS_DUE_KEY = f"{_P}webhooks:due"
WEBHOOK_KEY_PREFIX = f"{_P}webhook:"
T = TypeVar("T")

# KEYS: job, queue, running, log, webhooks-due
# ARGV: allowed-from (comma list), to, now, now-epoch, channel, log-entry ('' none), log-limit,
#       webhook-key-prefix, n, field1, value1, ...
_TRANSITION = """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return {err = 'NOTFOUND'} end
local ok = false
for s in string.gmatch(ARGV[1], '[^,]+') do if s == cur then ok = true end end
if not ok then return {err = 'BADSTATE ' .. cur} end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'updated_at', ARGV[3])
local n = tonumber(ARGV[9])
for i = 0, n - 1 do redis.call('HSET', KEYS[1], ARGV[10 + 2 * i], ARGV[11 + 2 * i]) end
if ARGV[6] ~= '' then
  redis.call('RPUSH', KEYS[4], ARGV[6])
  redis.call('LTRIM', KEYS[4], -tonumber(ARGV[7]), -1)
end
local id = redis.call('HGET', KEYS[1], 'id')
if ARGV[2] == 'completed' or ARGV[2] == 'failed' or ARGV[2] == 'cancelled' then
  redis.call('HDEL', KEYS[3], id)
  redis.call('ZREM', KEYS[2], id)
  local url = redis.call('HGET', KEYS[1], 'callback_url')
  -- metrics (scheduler/metrics.py): the outcome by job type, and the seconds since the job started
  local jt = redis.call('HGET', KEYS[1], 'job_type') or 'unknown'
  redis.call('HINCRBY', '__FINISHED__', jt .. '|' .. ARGV[2], 1)
  local started = tonumber(redis.call('HGET', KEYS[1], 'started_epoch') or '')
  if started then
    local d = tonumber(ARGV[4]) - started
    if d < 0 then d = 0 end
    local base = jt .. '|' .. ARGV[2] .. '|'
    for _, le in ipairs(__BUCKETS__) do
      if d <= le then redis.call('HINCRBY', '__DURATION__', base .. le, 1) end
    end
    redis.call('HINCRBY', '__DURATION__', base .. '+Inf', 1)
    redis.call('HINCRBYFLOAT', '__DURATION__', base .. 'sum', d)
  end
  if url and url ~= '' then
    local seq = redis.call('HINCRBY', KEYS[1], 'webhook_seq', 1)
    local did = id .. '.' .. seq
    redis.call('HSET', ARGV[8] .. did, 'id', did, 'job_id', id, 'event', 'job.' .. ARGV[2], 'url', url,
               'attempts', '0', 'state', 'pending', 'created_at', ARGV[3], 'replay', '0', 'next_attempt_at', ARGV[3])
    redis.call('ZADD', KEYS[5], ARGV[4], did)
  end
end
local rev = redis.call('HINCRBY', KEYS[1], 'rev', 1)
redis.call('DEL', KEYS[1] .. ':json')  -- the cached JSON of the record (get_json)
redis.call('PUBLISH', ARGV[5], rev .. ' ' .. ARGV[2])
return cur
"""
_TRANSITION = (_TRANSITION.replace("__FINISHED__", FINISHED_KEY).replace("__DURATION__", DURATION_KEY)
               .replace("__BUCKETS__", lua_buckets()))

# KEYS: queue, running ; ARGV: now, owner, prefix, now-epoch
_CLAIM = """
while true do
  local top = redis.call('ZPOPMIN', KEYS[1])
  if #top == 0 then return false end
  local id = top[1]
  local key = ARGV[3] .. 'job:' .. id
  if redis.call('HGET', key, 'status') == 'queued' then
    redis.call('HSET', key, 'status', 'in_progress', 'updated_at', ARGV[1], 'owner', ARGV[2])
    if redis.call('HGET', key, 'started_at') == '' then
      redis.call('HSET', key, 'started_at', ARGV[1], 'started_epoch', ARGV[4])
    end
    redis.call('HINCRBY', key, 'attempts', 1)
    redis.call('HSET', key, 'eta', 'null')
    redis.call('HSET', KEYS[2], id, ARGV[2])
    local rev = redis.call('HINCRBY', key, 'rev', 1)
    redis.call('DEL', key .. ':json')
    redis.call('PUBLISH', ARGV[3] .. 'events:' .. id, rev .. ' in_progress')
    return id
  end
end
"""

# KEYS: job, log ; ARGV: now, progress ('' none), eta ('' keep, 'null', seconds), result ('' none),
#                       log-limit, channel, entry1, entry2, ...
# Progress never goes down and moves only while in_progress; nothing changed: no rev, no notification.
_REPORT = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 0 end
local changed = false
if #ARGV > 6 then
  for i = 7, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[5]), -1)
  changed = true
end
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'result', ARGV[4])
  changed = true
end
if status == 'in_progress' then
  if ARGV[2] ~= '' then
    local cur = tonumber(redis.call('HGET', KEYS[1], 'progress') or '0') or 0
    if tonumber(ARGV[2]) > cur then
      redis.call('HSET', KEYS[1], 'progress', ARGV[2])
      changed = true
    end
  end
  if ARGV[3] ~= '' and changed and redis.call('HGET', KEYS[1], 'eta') ~= ARGV[3] then
    redis.call('HSET', KEYS[1], 'eta', ARGV[3])
  end
end
if not changed then return 0 end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[1])
local rev = redis.call('HINCRBY', KEYS[1], 'rev', 1)
redis.call('DEL', KEYS[1] .. ':json')  -- the cached JSON of the record (get_json)
redis.call('PUBLISH', ARGV[6], rev .. ' ' .. status)
return rev
"""

# KEYS: job, queue, running ; ARGV: now, score, message-entry, log-limit, channel ; KEYS[4]: log
_REQUEUE = """
if redis.call('HGET', KEYS[1], 'status') ~= 'in_progress' then return 0 end
local id = redis.call('HGET', KEYS[1], 'id')
redis.call('HSET', KEYS[1], 'status', 'queued', 'updated_at', ARGV[1], 'owner', '', 'eta', 'null')
redis.call('HDEL', KEYS[3], id)
redis.call('ZADD', KEYS[2], ARGV[2], id)
redis.call('RPUSH', KEYS[4], ARGV[3])
redis.call('LTRIM', KEYS[4], -tonumber(ARGV[4]), -1)
local rev = redis.call('HINCRBY', KEYS[1], 'rev', 1)
redis.call('DEL', KEYS[1] .. ':json')  -- the cached JSON of the record (get_json)
redis.call('PUBLISH', ARGV[5], rev .. ' queued')
return 1
"""


# KEYS: job, log. The record's fields (_READ_FIELDS) joined by NUL, then NUL and the log entries joined by
# newlines, as one string: one command and one bulk reply for GET /jobs/{id} (stored JSON never holds a raw
# NUL or newline, and ids and timestamps neither). A missing job: false.
_READ_FIELDS = ("id", "created_at", "updated_at", "clip_version_id", "job_type", "status", "priority", "payload",
                "result", "error_message", "started_at", "completed_at", "progress", "eta", "rev")
_READ = """
local f = redis.call('HMGET', KEYS[1], __FIELDS__)
if not f[1] then return false end
local parts = {}
for i = 1, __N__ do parts[i] = f[i] or '' end
return table.concat(parts, '\\0') .. '\\0' .. table.concat(redis.call('LRANGE', KEYS[2], 0, -1), '\\n')
""".replace("__FIELDS__", ", ".join(f"'{name}'" for name in _READ_FIELDS)).replace("__N__", str(len(_READ_FIELDS)))

# KEYS: job, log, json. GET /jobs/{id}: the record's cached JSON when it has not changed since it was cached
# (every script that changes a record deletes it, in the same script), else what _READ returns. A record's JSON
# starts with '{', the fields with the job's id.
_READ_CACHED = "local j = redis.call('GET', KEYS[3])\nif j then return j end\n" + _READ

# KEYS: job, json ; ARGV: rev, body, ttl. Cache a record's JSON, unless the record changed since it was read.
_CACHE = """
if redis.call('HGET', KEYS[1], 'rev') == ARGV[1] then redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3]) end
return 0
"""
#: Seconds a record's cached JSON is kept (clients poll a job while it runs; then it is only memory).
JSON_CACHE_SECONDS = 60


#: Seconds one guarded Redis call may take before it counts as Redis being unreachable.
REDIS_CALL_TIMEOUT = 10.0


async def guard(call: Awaitable[T]) -> T:
    """Await a Redis call, turning connection problems (and a call past :data:`REDIS_CALL_TIMEOUT`)
    into :class:`QueueUnavailableError`."""
    try:
        async with asyncio.timeout(REDIS_CALL_TIMEOUT):
            return await call
    except ResponseError:
        raise
    except TimeoutError as exc:  # asyncio's (builtin TimeoutError, an OSError), from the timeout above
        note_redis_error()
        raise QueueUnavailableError(f"Timeout: no answer from Redis in {REDIS_CALL_TIMEOUT:g} s") from exc
    except (RedisError, OSError) as exc:
        note_redis_error()
        raise QueueUnavailableError(str(exc) or type(exc).__name__) from exc


_decode_json = msgspec.json.decode


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


class JobStore:
    """Job records and the queue, over one redis-py asyncio client."""

    def __init__(self, redis: aioredis.Redis, *, queue_name: str = QUEUE_NAME, log_limit: int = 300) -> None:
        self.redis = redis
        self.queue_name = queue_name
        self.log_limit = log_limit
        self._queue_key = f"{_P}queue:{queue_name}"
        self._transition = redis.register_script(_TRANSITION)
        self._claim = redis.register_script(_CLAIM)
        self._report = redis.register_script(_REPORT)
        self._requeue = redis.register_script(_REQUEUE)
        self._read = redis.register_script(_READ)
        self._read_cached = redis.register_script(_READ_CACHED)
        self._cache = redis.register_script(_CACHE)

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
            "clip_version_id": _json(clip_version_id),
            "payload": _json(payload),
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
                pipe.hset(self._key(job_id), mapping=fields)
                pipe.zadd(self._queue_key, {job_id: score})
                pipe.zadd(f"{_P}jobs", {job_id: _epoch(now)})
                pipe.hincrby(SUBMITTED_KEY, job_type, 1)
                pipe.lpush(f"{_P}wake", "1")
                pipe.ltrim(f"{_P}wake", 0, 0)
                await pipe.execute()

        await guard(write())
        return _record(fields, [], self.queue_name)

    async def get(self, job_id: str) -> dict[str, Any]:
        """The job record with exactly the reference's fields."""
        return (await self.snapshot(job_id))[0]

    async def get_json(self, job_id: str, encode: Callable[[Any], bytes]) -> bytes:
        """``encode(record)``, from the record's cached JSON when it has not changed since (one round trip and
        no decoding: what a polling client asks for again and again); else read, encoded and cached."""
        key = self._key(job_id)
        raw = await guard(self._read_cached(keys=[key, self._log_key(job_id), f"{key}:json"]))
        if not raw:
            raise JobNotFoundError(job_id)
        if raw[:1] == b"{":
            return raw  # type: ignore[no-any-return]
        record, rev = self._parse(raw)
        body = encode(record)
        await guard(self._cache(keys=[key, f"{key}:json"], args=[str(rev), body, JSON_CACHE_SECONDS]))
        return body

    async def snapshot(self, job_id: str) -> tuple[dict[str, Any], int]:
        """The job record and its ``rev`` (how many changes it has had), read together."""
        raw = await guard(self._read(keys=[self._key(job_id), self._log_key(job_id)]))
        if not raw:
            raise JobNotFoundError(job_id)
        return self._parse(raw)

    def _parse(self, raw: bytes) -> tuple[dict[str, Any], int]:
        values = raw.decode().split("\0", len(_READ_FIELDS))
        fields = dict(zip(_READ_FIELDS, values))
        log_text = values[-1]
        log = _decode_json(f"[{log_text.replace(chr(10), ',')}]") if log_text else []
        return _record(fields, log, self.queue_name), int(fields.get("rev") or 0)

    async def status(self, job_id: str) -> str | None:
        value = await guard(self.redis.hget(self._key(job_id), "status"))
        return value.decode() if isinstance(value, bytes) else value

    async def internal(self, job_id: str) -> dict[str, str]:
        """Raw fields, including ``attempts`` and ``owner``."""
        fields = await guard(self.redis.hgetall(self._key(job_id)))
        if not fields:
            raise JobNotFoundError(job_id)
        return _decode(fields)

    async def list(self, *, status: str | None = None, job_type: str | None = None,
                   limit: int = 50) -> list[dict[str, Any]]:
        """Newest first, filtered by status and job type."""
        found: list[dict[str, Any]] = []
        start, page = 0, max(50, limit * 2)
        while len(found) < limit:
            ids = await guard(self.redis.zrevrange(f"{_P}jobs", start, start + page - 1))
            if not ids:
                break
            start += page
            for raw in ids:
                job_id = raw.decode() if isinstance(raw, bytes) else raw
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
                    **fields: str) -> str:
        flat: list[str] = []
        for k, v in fields.items():
            flat += [k, v]
        now = now_ts()
        entry = _json({"timestamp": now, "message": message}) if message else ""
        try:
            previous = await guard(
                self._transition(
                    keys=[self._key(job_id), self._queue_key, f"{_P}running", self._log_key(job_id),
                          WEBHOOKS_DUE_KEY],
                    args=[",".join(allowed), to, now, _epoch(now), self.channel(job_id), entry, self.log_limit,
                          WEBHOOK_KEY_PREFIX, len(fields), *flat],
                )
            )
        except ResponseError as exc:
            text = str(exc)
            if "NOTFOUND" in text:
                raise JobNotFoundError(job_id) from None
            if "BADSTATE" in text:
                raise InvalidTransitionError(job_id, text.split("BADSTATE", 1)[1].strip(), to) from None
            raise
        return previous.decode() if isinstance(previous, bytes) else str(previous)

    async def claim(self, owner: str) -> str | None:
        """Take the next queued job (highest priority, oldest first) and mark it in_progress."""
        now = now_ts()
        job_id = await guard(self._claim(keys=[self._queue_key, f"{_P}running"], args=[now, owner, _P, _epoch(now)]))
        if not job_id:
            return None
        return job_id.decode() if isinstance(job_id, bytes) else job_id

    async def wait_for_work(self, timeout: float) -> None:
        """Block until a job is enqueued or ``timeout`` passes."""
        await guard(self.redis.blpop([f"{_P}wake"], timeout=timeout))

    async def complete(self, job_id: str, result: dict[str, Any]) -> None:
        now = now_ts()
        await self._move(job_id, ["in_progress"], "completed", completed_at=now, progress="1",
                         result=_json(result))

    async def fail(self, job_id: str, message: str, result: dict[str, Any] | None = None,
                   allowed: Iterable[str] = ("in_progress",)) -> None:
        # No NUL in the stored message: the record is read back NUL-separated (see _READ).
        fields = {"completed_at": now_ts(), "error_message": message.replace("\0", "")}
        if result is not None:
            fields["result"] = _json(result)
        await self._move(job_id, allowed, "failed", **fields)

    async def cancel(self, job_id: str, message: str | None = None) -> str:
        """Cancel a job that has not finished; return the status it had.

        ``message`` is logged in the same transition, so the terminal notification already carries it.
        """
        return await self._move(job_id, ["pending", "queued", "in_progress"], "cancelled", message=message,
                                completed_at=now_ts())

    async def requeue(self, job_id: str, message: str) -> bool:
        """Put an interrupted in_progress job back on the queue (recovery only)."""
        fields = await self.internal(job_id)
        score = await guard(self._score(int(fields.get("priority") or 0)))
        entry = _json({"timestamp": now_ts(), "message": message})
        done = await guard(
            self._requeue(
                keys=[self._key(job_id), self._queue_key, f"{_P}running", self._log_key(job_id)],
                args=[now_ts(), score, entry, self.log_limit, self.channel(job_id)],
            )
        )
        if done:
            await guard(self.redis.lpush(f"{_P}wake", "1"))
        return bool(done)

    # -- progress and log -------------------------------------------------------------
    async def report(self, job_id: str, *, progress: float | None = None,
                     messages: Iterable[str | tuple[str, str]] = (), extra: dict[str, Any] | None = None,
                     eta: float | None | EllipsisType = ...) -> int:
        """Write progress (never lower), log lines and the ETA in one atomic round trip.

        A message is a string, stamped now, or a ``(timestamp, message)`` pair stamped when it happened.
        ``eta`` (seconds, or None for "not known yet") is kept only with a progress or log change.
        Returns the job's new ``rev``, or 0 when nothing changed (then nobody is notified).
        """
        stamped = [(now_ts(), m) if isinstance(m, str) else m for m in messages]
        entries = [_json({"timestamp": ts, "message": m}) for ts, m in stamped]
        progress_arg = "" if progress is None else repr(min(1.0, max(0.0, progress)))
        eta_arg = "" if eta is ... else "null" if eta is None else repr(round(float(eta), 1))
        rev = await guard(self._report(
            keys=[self._key(job_id), self._log_key(job_id)],
            args=[now_ts(), progress_arg, eta_arg, _json(extra) if extra else "", self.log_limit,
                  self.channel(job_id), *entries],
        ))
        return int(rev or 0)

    # -- dispatchers ------------------------------------------------------------------
    async def heartbeat(self, owner: str, ttl: int) -> None:
        await guard(self.redis.set(f"{_P}dispatcher:{owner}", "1", ex=ttl))

    async def release_owner(self, owner: str) -> None:
        await guard(self.redis.delete(f"{_P}dispatcher:{owner}"))

    async def orphans(self, *, exclude: str | None = None) -> list[tuple[str, str]]:
        """Running jobs whose dispatcher's heartbeat is gone: ``[(job_id, owner)]``."""
        running = await guard(self.redis.hgetall(f"{_P}running"))
        found = []
        for raw_id, raw_owner in running.items():
            job_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
            owner = raw_owner.decode() if isinstance(raw_owner, bytes) else raw_owner
            if owner == exclude:
                continue
            if not await guard(self.redis.exists(f"{_P}dispatcher:{owner}")):
                found.append((job_id, owner))
        return found

    async def ping(self) -> bool:
        return bool(await guard(self.redis.ping()))

    async def info(self) -> dict[str, Any]:
        return await guard(self.redis.info())


def _decode(fields: dict[Any, Any]) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in fields.items()
    }


def _epoch(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts).timestamp()


def _eta(fields: dict[str, str]) -> float | None:
    """Seconds left, estimated by the dispatcher from the progress rate; 0 once completed, else null."""
    status = fields.get("status")
    if status == "completed":
        return 0.0
    raw = fields.get("eta") or "null"
    if status != "in_progress" or raw == "null":
        return None
    return float(raw)


def _record(fields: dict[str, str], log: list[dict[str, Any]], queue_name: str) -> dict[str, Any]:
    """Assemble the public record: exactly the reference's fields, in its order."""
    status = fields["status"]
    result_payload: dict[str, Any] | None = None
    if fields.get("started_at") or fields.get("result") or log:
        result_payload = {"progress": float(fields.get("progress") or 0), "eta_seconds": _eta(fields), "log": log}
        if fields.get("result"):
            extra = _decode_json(fields["result"])
            for key in ("progress", "eta_seconds", "log"):
                extra.pop(key, None)
            result_payload.update(extra)
    return {
        "id": fields["id"],
        "created_at": fields["created_at"],
        "updated_at": fields["updated_at"],
        "clip_version_id": _decode_json(fields.get("clip_version_id") or "null"),
        "job_type": fields["job_type"],
        "status": status,
        "queue_name": queue_name,
        "priority": int(fields.get("priority") or 0),
        "payload": _decode_json(fields.get("payload") or "{}"),
        "result_payload": result_payload,
        "error_message": fields.get("error_message") or None,
        "started_at": fields.get("started_at") or None,
        "completed_at": fields.get("completed_at") or None,
    }


