"""The Lua scripts of :mod:`scheduler.records.jobs`: every change of a job is one of these, run atomically by Redis.

**Keys.** Every key a script touches comes in ``KEYS``, built by :mod:`scheduler.records.keys` (declared, as a
Redis Cluster requires); no script builds one from a prefix. Where the key is known only at run time (the job
at the head of the queue, the expired jobs), the caller reads it first and the script checks that it still
holds (``MOVED``, ``RETRY``).

**Fencing.** A dispatcher's claim sets the job's ``owner`` and increments its ``attempts``; that pair is the
dispatcher's lease (:class:`scheduler.records.fencing.Lease`), a fencing token. Every write a dispatcher makes for a
job (progress, log, the final transition, the pre-publish confirmation, the heartbeat) passes its lease, and
the script compares it with the job's current ``owner`` and ``attempts`` before it changes anything: a
dispatcher whose job was re-queued (and perhaps claimed again by another) is refused with ``LOST``, however
late its write arrives. An empty fence owner means "not fenced" (cancel from the API, tools and tests).
Recovery fences its requeue (or fail) with the lease it saw *and* the absence of that dispatcher's heartbeat
key, in the same script, so it can never take a job from a dispatcher that is alive or that re-claimed it.
"""

from __future__ import annotations

from scheduler.records.metrics import lua_buckets

__all__ = [
    "CACHE",
    "CLAIM",
    "CONFIRM",
    "DELETE",
    "FENCED_WRITE",
    "HEARTBEAT",
    "READ",
    "READ_CACHED",
    "READ_FIELDS",
    "REPORT",
    "REQUEUE",
    "SWEEP",
    "TRANSITION",
]

# The fence, shared by the scripts that take one: ARGV[o] owner ('' = not fenced), ARGV[o+1] attempt,
# ARGV[o+2] '1' when the owner's heartbeat key (KEYS[k]) must be gone (recovery). Errors: LOST, ALIVE.
_FENCE = """
if ARGV[__O__] ~= '' then
  local held = redis.call('HMGET', KEYS[1], 'owner', 'attempts')
  if held[1] ~= ARGV[__O__] or held[2] ~= ARGV[__O__ + 1] then
    return {err = 'LOST ' .. (held[1] or '') .. ' ' .. (held[2] or '')}
  end
  if ARGV[__O__ + 2] == '1' and redis.call('EXISTS', KEYS[__K__]) == 1 then return {err = 'ALIVE'} end
end
"""


def _fence(argv: int, key: int) -> str:
    return _FENCE.replace("__O__", str(argv)).replace("__K__", str(key))


# KEYS: job, queue, running, log, webhooks-due, expiry index, owner's heartbeat key, cached json,
#       finished-metrics, duration-metrics, the job's terminal webhook delivery (<id>.1), the status index of
#       ``to``, then the status index of each allowed-from status in its order
# ARGV: allowed-from (comma list), to, now, now-epoch, channel, log-entry ('' none), log-limit,
#       that delivery's id, fence owner, fence attempt, fence needs-dead, ttl-ms (0 keep), n, field1, value1, ...
TRANSITION = """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return {err = 'NOTFOUND'} end
""" + _fence(9, 7) + """
local ok = false
for s in string.gmatch(ARGV[1], '[^,]+') do if s == cur then ok = true end end
if not ok then return {err = 'BADSTATE ' .. cur} end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'updated_at', ARGV[3])
-- The listing's status indexes follow the status (score: the creation time, kept in the record).
local born = redis.call('HGET', KEYS[1], 'created_epoch') or ARGV[4]
local i = 0
for s in string.gmatch(ARGV[1], '[^,]+') do
  i = i + 1
  if s == cur then redis.call('ZREM', KEYS[12 + i], redis.call('HGET', KEYS[1], 'id')) end
end
redis.call('ZADD', KEYS[12], born, redis.call('HGET', KEYS[1], 'id'))
local n = tonumber(ARGV[13])
for i = 0, n - 1 do redis.call('HSET', KEYS[1], ARGV[14 + 2 * i], ARGV[15 + 2 * i]) end
if ARGV[6] ~= '' then
  redis.call('RPUSH', KEYS[4], ARGV[6])
  redis.call('LTRIM', KEYS[4], -tonumber(ARGV[7]), -1)
end
local id = redis.call('HGET', KEYS[1], 'id')
if ARGV[2] == 'completed' or ARGV[2] == 'failed' or ARGV[2] == 'cancelled' then
  redis.call('HDEL', KEYS[3], id)
  redis.call('ZREM', KEYS[2], id)
  local url = redis.call('HGET', KEYS[1], 'callback_url')
  -- metrics (scheduler/records/metrics.py): the outcome by job type, and the seconds since the job started
  local jt = redis.call('HGET', KEYS[1], 'job_type') or 'unknown'
  redis.call('HINCRBY', KEYS[9], jt .. '|' .. ARGV[2], 1)
  local started = tonumber(redis.call('HGET', KEYS[1], 'started_epoch') or '')
  if started then
    local d = tonumber(ARGV[4]) - started
    if d < 0 then d = 0 end
    local base = jt .. '|' .. ARGV[2] .. '|'
    for _, le in ipairs(__BUCKETS__) do
      if d <= le then redis.call('HINCRBY', KEYS[10], base .. le, 1) end
    end
    redis.call('HINCRBY', KEYS[10], base .. '+Inf', 1)
    redis.call('HINCRBYFLOAT', KEYS[10], base .. 'sum', d)
  end
  local ttl = tonumber(ARGV[12])
  if url and url ~= '' then
    -- A job reaches a terminal status once, before any replay: its delivery is always the first (<id>.1).
    redis.call('HINCRBY', KEYS[1], 'webhook_seq', 1)
    local did = ARGV[8]
    redis.call('HSET', KEYS[11], 'id', did, 'job_id', id, 'event', 'job.' .. ARGV[2], 'url', url,
               'attempts', '0', 'state', 'pending', 'created_at', ARGV[3], 'replay', '0', 'next_attempt_at', ARGV[3])
    if ttl > 0 then redis.call('PEXPIRE', KEYS[11], ttl) end
    redis.call('ZADD', KEYS[5], ARGV[4], did)
  end
  -- Retention: the record and its log expire with Redis's own clock (nothing has to run for them to go);
  -- the index of expiry times lets the sweep drop them from the listing index without scanning it.
  if ttl > 0 then
    redis.call('PEXPIRE', KEYS[1], ttl)
    redis.call('PEXPIRE', KEYS[4], ttl)
    redis.call('ZADD', KEYS[6], tonumber(ARGV[4]) + ttl / 1000, id)
  end
end
local rev = redis.call('HINCRBY', KEYS[1], 'rev', 1)
redis.call('DEL', KEYS[8])  -- the cached JSON of the record (get_json)
redis.call('PUBLISH', ARGV[5], rev .. ' ' .. ARGV[2])
return cur
"""
TRANSITION = TRANSITION.replace("__BUCKETS__", lua_buckets())

# KEYS: queue, running, job, cached json, the queued and in_progress status indexes ; ARGV: job id (read from the head of the queue), now, owner, now-epoch,
# channel. Returns {id, attempt} (the new lease); MOVED when another claim took it first; STALE when it was no
# longer queued (cancelled: its entry is dropped). The caller then reads the head again.
CLAIM = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 'MOVED' end
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('HGET', KEYS[3], 'status') ~= 'queued' then return 'STALE' end
redis.call('HSET', KEYS[3], 'status', 'in_progress', 'updated_at', ARGV[2], 'owner', ARGV[3])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZADD', KEYS[6], redis.call('HGET', KEYS[3], 'created_epoch') or ARGV[4], ARGV[1])
if redis.call('HGET', KEYS[3], 'started_at') == '' then
  redis.call('HSET', KEYS[3], 'started_at', ARGV[2], 'started_epoch', ARGV[4])
end
local attempt = redis.call('HINCRBY', KEYS[3], 'attempts', 1)
redis.call('HSET', KEYS[3], 'eta', 'null')
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
local rev = redis.call('HINCRBY', KEYS[3], 'rev', 1)
redis.call('DEL', KEYS[4])
redis.call('PUBLISH', ARGV[5], rev .. ' in_progress')
return {ARGV[1], tostring(attempt)}
"""

# KEYS: job, log, cached json ; ARGV: now, progress ('' none), eta ('' keep, 'null', seconds), result ('' none),
#                       log-limit, channel, fence owner ('' none), fence attempt, entry1, entry2, ...
# Progress never goes down and moves only while in_progress; nothing changed: no rev, no notification.
# A fenced report from a dispatcher that no longer holds the job: -1, and nothing written.
REPORT = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 0 end
if ARGV[7] ~= '' then
  local held = redis.call('HMGET', KEYS[1], 'owner', 'attempts')
  if held[1] ~= ARGV[7] or held[2] ~= ARGV[8] then return -1 end
end
local changed = false
if #ARGV > 8 then
  for i = 9, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[5]), -1)
  -- A finished job's record expires (retention): a log written after the end goes with it.
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
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
redis.call('DEL', KEYS[3])  -- the cached JSON of the record (get_json)
redis.call('PUBLISH', ARGV[6], rev .. ' ' .. status)
return rev
"""

# KEYS: job, queue, running, log, owner's heartbeat key, cached json, the in_progress and queued status indexes
# ARGV: now, score, message-entry, log-limit, channel, fence owner ('' none), fence attempt, fence needs-dead
REQUEUE = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 0 end
""" + _fence(6, 5) + """
if status ~= 'in_progress' then return 0 end
local id = redis.call('HGET', KEYS[1], 'id')
redis.call('HSET', KEYS[1], 'status', 'queued', 'updated_at', ARGV[1], 'owner', '', 'eta', 'null')
redis.call('ZREM', KEYS[7], id)
redis.call('ZADD', KEYS[8], redis.call('HGET', KEYS[1], 'created_epoch') or 0, id)
redis.call('HDEL', KEYS[3], id)
redis.call('ZADD', KEYS[2], ARGV[2], id)
redis.call('RPUSH', KEYS[4], ARGV[3])
redis.call('LTRIM', KEYS[4], -tonumber(ARGV[4]), -1)
local rev = redis.call('HINCRBY', KEYS[1], 'rev', 1)
redis.call('DEL', KEYS[6])  -- the cached JSON of the record (get_json)
redis.call('PUBLISH', ARGV[5], rev .. ' queued')
return 1
"""

# KEYS: this dispatcher's heartbeat key, job1, job2, ... ; ARGV: ttl seconds, owner, attempt1, attempt2, ...
# Refreshes the heartbeat and answers the positions (1-based) in the list of the jobs it no longer holds.
HEARTBEAT = """
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
local lost = {}
for i = 2, #KEYS do
  local held = redis.call('HMGET', KEYS[i], 'owner', 'attempts')
  if held[1] ~= ARGV[2] or held[2] ~= ARGV[i + 1] then table.insert(lost, i - 1) end
end
return lost
"""

# KEYS: job, this dispatcher's heartbeat key ; ARGV: ttl seconds, owner, attempt.
# Before publishing: the lease still holds (else LOST) and the heartbeat is fresh for another ttl, so no
# recovery can re-queue the job before then. Returns the job's status (in_progress, or cancelled meanwhile).
CONFIRM = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {err = 'NOTFOUND'} end
local held = redis.call('HMGET', KEYS[1], 'owner', 'attempts')
if held[1] ~= ARGV[2] or held[2] ~= ARGV[3] then
  return {err = 'LOST ' .. (held[1] or '') .. ' ' .. (held[2] or '')}
end
redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])
return status
"""

# KEYS: job, then every key the commands write ; ARGV: fence owner, fence attempt, '0', JSON list of commands
# (each a list: name, key, args...).
# Writes to other records made for a job (its published asset records), run only while the lease holds
# the job in progress, in the same atomic step as the check: a dispatcher that lost its job, however late
# its write arrives, writes nothing (LOST; BADSTATE when the job was cancelled meanwhile).
FENCED_WRITE = """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return {err = 'NOTFOUND'} end
""" + _fence(1, 1) + """
if cur ~= 'in_progress' then return {err = 'BADSTATE ' .. cur} end
for _, command in ipairs(cjson.decode(ARGV[4])) do redis.call(unpack(command)) end
return 'OK'
"""

# KEYS: job, log, jobs index, expiry index, webhooks due, webhook attempts, cached json, the completed, failed
#       and cancelled status indexes, the job type's index, then delivery 1 .. n
# ARGV: n (the webhook_seq the caller read). DELETE /jobs/{id}: a finished job and everything Redis keeps for
# it. RETRY when a replay added a delivery since the caller read n.
DELETE = """
local f = redis.call('HMGET', KEYS[1], 'status', 'webhook_seq', 'id')
if not f[1] then return {err = 'NOTFOUND'} end
if f[1] ~= 'completed' and f[1] ~= 'failed' and f[1] ~= 'cancelled' then return {err = 'BADSTATE ' .. f[1]} end
local n = tonumber(f[2] or '0') or 0
if n ~= tonumber(ARGV[1]) then return {err = 'RETRY'} end
for i = 1, n do
  redis.call('DEL', KEYS[11 + i])
  redis.call('ZREM', KEYS[5], f[3] .. '.' .. i)
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[6], KEYS[7])
for k = 3, 4 do redis.call('ZREM', KEYS[k], f[3]) end
for k = 8, 11 do redis.call('ZREM', KEYS[k], f[3]) end
return 1
"""

# KEYS: jobs index, expiry index, the completed, failed and cancelled status indexes, then four per job: record,
#       log, webhook attempts, cached json (the job type's index drops an expired id when a listing meets it)
# ARGV: the jobs' ids (read from the expiry index by the caller, due ones, oldest first).
# Drops expired jobs from the listing index (and their keys that were written after the end). A job still
# there (clocks of two machines apart) stays in the expiry index for the next sweep.
SWEEP = """
local n = 0
for i, id in ipairs(ARGV) do
  local k = 5 + (i - 1) * 4
  if redis.call('EXISTS', KEYS[k + 1]) == 0 then
    for j = 1, 5 do redis.call('ZREM', KEYS[j], id) end
    redis.call('DEL', KEYS[k + 2], KEYS[k + 3], KEYS[k + 4])
    n = n + 1
  end
end
return n
"""

# KEYS: job, log. The record's fields (READ_FIELDS) joined by NUL, then NUL and the log entries joined by
# newlines, as one string: one command and one bulk reply for GET /jobs/{id} (stored JSON never holds a raw
# NUL or newline, and ids and timestamps neither). A missing job: false.
READ_FIELDS = ("id", "created_at", "updated_at", "clip_version_id", "job_type", "status", "priority", "payload",
               "result", "error_message", "started_at", "completed_at", "progress", "eta", "rev")
READ = """
local f = redis.call('HMGET', KEYS[1], __FIELDS__)
if not f[1] then return false end
local parts = {}
for i = 1, __N__ do parts[i] = f[i] or '' end
return table.concat(parts, '\\0') .. '\\0' .. table.concat(redis.call('LRANGE', KEYS[2], 0, -1), '\\n')
""".replace("__FIELDS__", ", ".join(f"'{name}'" for name in READ_FIELDS)).replace("__N__", str(len(READ_FIELDS)))

# KEYS: job, log, json. GET /jobs/{id}: the record's cached JSON when it has not changed since it was cached
# (every script that changes a record deletes it, in the same script), else what READ returns. A record's JSON
# starts with '{', the fields with the job's id.
READ_CACHED = "local j = redis.call('GET', KEYS[3])\nif j then return j end\n" + READ

# KEYS: job, json ; ARGV: rev, body, ttl. Cache a record's JSON, unless the record changed since it was read
# (and never longer than the record itself lives, once it expires).
CACHE = """
if redis.call('HGET', KEYS[1], 'rev') == ARGV[1] then
  local ms = tonumber(ARGV[3]) * 1000
  local left = redis.call('PTTL', KEYS[1])
  if left > 0 and left < ms then ms = left end
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ms)
end
return 0
"""
