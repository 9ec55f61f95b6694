"""The Lua scripts of the webhook store (:mod:`scheduler.notify.webhooks`); every key comes in ``KEYS``."""

from __future__ import annotations

__all__ = ["CLAIM", "REPLAY", "RECORD", "RELEASE"]

# KEYS: due, then each delivery's hash ; ARGV: now-epoch, lease-until, token, then each delivery's id (read as
# due by the caller). A delivery another claimer took meanwhile (no longer due) is skipped. The token goes only on
# a delivery that exists: a hash made here would have no expiry. Returns the ids claimed.
CLAIM = """
local claimed = {}
for i = 4, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) <= tonumber(ARGV[1]) then
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[i])
    if redis.call('EXISTS', KEYS[i - 2]) == 1 then redis.call('HSET', KEYS[i - 2], 'claim', ARGV[3]) end
    table.insert(claimed, ARGV[i])
  end
end
return claimed
"""
# KEYS: job, the new delivery, due ; ARGV: the job's webhook_seq as the caller read it, the new delivery's id,
# event prefix ('job.'), created-at, now-epoch. A replay, in one step: refused (NOTFOUND, NOURL, BADSTATE <status>)
# or RETRY when another replay took the number meanwhile; the delivery expires with its job.
REPLAY = """
local f = redis.call('HMGET', KEYS[1], 'status', 'callback_url', 'webhook_seq', 'id')
if not f[1] then return {err = 'NOTFOUND'} end
if not f[2] or f[2] == '' then return {err = 'NOURL'} end
if f[1] ~= 'completed' and f[1] ~= 'failed' and f[1] ~= 'cancelled' then return {err = 'BADSTATE ' .. f[1]} end
if (tonumber(f[3] or '0') or 0) ~= tonumber(ARGV[1]) then return {err = 'RETRY'} end
redis.call('HINCRBY', KEYS[1], 'webhook_seq', 1)
redis.call('HSET', KEYS[2], 'id', ARGV[2], 'job_id', f[4], 'event', ARGV[3] .. f[1], 'url', f[2], 'attempts', '0',
           'state', 'pending', 'created_at', ARGV[4], 'replay', '1', 'next_attempt_at', ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[2])
local left = redis.call('PTTL', KEYS[1])
if left > 0 then redis.call('PEXPIRE', KEYS[2], left) end
return 1
"""
# KEYS: delivery, attempts log, due ; ARGV: token, delivery id, attempt JSON, kept, next-epoch ('': done),
# then field, value, ... Nothing is written unless the claim is still this attempt's.
RECORD = """
if redis.call('HGET', KEYS[1], 'claim') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('HDEL', KEYS[1], 'claim')
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[4]), -1)
if ARGV[5] == '' then redis.call('ZREM', KEYS[3], ARGV[2]) else redis.call('ZADD', KEYS[3], ARGV[5], ARGV[2]) end
return 1
"""
# KEYS: delivery, due ; ARGV: token, delivery id, now-epoch
RELEASE = """
if redis.call('HGET', KEYS[1], 'claim') ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[1], 'claim')
redis.call('ZADD', KEYS[2], 'XX', ARGV[3], ARGV[2])
return 1
"""
