"""The review queue's Lua scripts: each state change is one script, so it is atomic.

Kept apart from `workers.review_queue` (the Python API) because they are a second language
with its own conventions: KEYS and ARGV as listed above each script, times from the Redis
server clock (`TIME`), numbers formatted with %.0f.
"""

from __future__ import annotations

#: Lua shared by the review scripts and by the publish script in `workers.results`.
#: Order: higher priority first, then first come first served. 1e13 ms is ~300 years, so the
#: enqueue time never spills into the priority part. Numbers are formatted with %.0f
#: because Redis converts Lua numbers to strings with only 14 significant digits.
LUA_LIB = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function review_enqueue(entry_key, queue_key, key, decision, item, priority, at)
  if redis.call('EXISTS', entry_key) == 1 then return 0 end
  local score = string.format('%.0f', (100 - tonumber(priority)) * 1e13 + at)
  redis.call('HSET', entry_key, 'key', key, 'decision', decision, 'item', item,
    'priority', priority, 'enqueued_at', string.format('%.0f', at), 'score', score,
    'state', 'queued', 'claims', 0)
  redis.call('ZADD', queue_key, score, key)
  return 1
end

local function requeue_expired(leases_key, queue_key, entry_prefix, at)
  local expired = redis.call('ZRANGEBYSCORE', leases_key, '-inf', string.format('%.0f', at))
  for _, key in ipairs(expired) do
    redis.call('ZREM', leases_key, key)
    local entry = entry_prefix .. key
    if redis.call('HGET', entry, 'state') == 'claimed' then
      redis.call('HSET', entry, 'state', 'queued')
      redis.call('HDEL', entry, 'lease_token', 'reviewer', 'lease_expires')
      redis.call('ZADD', queue_key, redis.call('HGET', entry, 'score'), key)
    end
  end
  return #expired
end
"""

# KEYS: queue, leases, labels, audit | ARGV: entry prefix, then per script.
CLAIM = """
local at = now_ms()
requeue_expired(KEYS[2], KEYS[1], ARGV[1], at)
local reviewer, token, lease_ms, wanted = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local key
if wanted ~= '' then
  if redis.call('HGET', ARGV[1] .. wanted, 'exclude') == reviewer then return false end
  if redis.call('ZREM', KEYS[1], wanted) == 0 then return false end
  key = wanted
else
  -- The first entry this reviewer may take: a second review is never its first reviewer's.
  for _, candidate in ipairs(redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[6]) - 1)) do
    if redis.call('HGET', ARGV[1] .. candidate, 'exclude') ~= reviewer then
      key = candidate
      break
    end
  end
  if not key then return false end
  redis.call('ZREM', KEYS[1], key)
end
local entry = ARGV[1] .. key
local expires = string.format('%.0f', at + lease_ms)
redis.call('HSET', entry, 'state', 'claimed', 'lease_token', token, 'reviewer', reviewer,
  'lease_expires', expires)
redis.call('HINCRBY', entry, 'claims', 1)
redis.call('ZADD', KEYS[2], expires, key)
return redis.call('HGETALL', entry)
"""

CHECK_LEASE = """
local function check_lease(entry, token, at)
  local state = redis.call('HGET', entry, 'state')
  if not state then return 'unknown_item' end
  if state == 'resolved' then return 'already_resolved' end
  if state ~= 'claimed' or redis.call('HGET', entry, 'lease_token') ~= token then
    return 'not_claimed'
  end
  if tonumber(redis.call('HGET', entry, 'lease_expires')) <= at then return 'lease_expired' end
  return nil
end
"""

EXTEND = """
local at = now_ms()
local key, token, lease_ms = ARGV[2], ARGV[3], tonumber(ARGV[4])
local problem = check_lease(ARGV[1] .. key, token, at)
if problem then return redis.error_reply(problem) end
local expires = string.format('%.0f', at + lease_ms)
redis.call('HSET', ARGV[1] .. key, 'lease_expires', expires)
redis.call('ZADD', KEYS[2], expires, key)
return expires
"""

RELEASE = """
local at = now_ms()
local key, token = ARGV[2], ARGV[3]
local entry = ARGV[1] .. key
local problem = check_lease(entry, token, at)
if problem then return redis.error_reply(problem) end
redis.call('ZREM', KEYS[2], key)
redis.call('HSET', entry, 'state', 'queued')
redis.call('HDEL', entry, 'lease_token', 'reviewer', 'lease_expires')
redis.call('ZADD', KEYS[1], redis.call('HGET', entry, 'score'), key)
return 1
"""

RESOLVE = """
local at = now_ms()
local key, token, label, second = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local entry = ARGV[1] .. key
local problem = check_lease(entry, token, at)
if problem then return redis.error_reply(problem) end
local reviewer = redis.call('HGET', entry, 'reviewer')
local resolved_at = string.format('%.0f', at)
local decision, item = redis.call('HGET', entry, 'decision'), redis.call('HGET', entry, 'item')
redis.call('ZREM', KEYS[2], key)
redis.call('HSET', entry, 'state', 'resolved', 'resolution', label, 'resolved_by', reviewer,
  'resolved_at', resolved_at)
redis.call('HDEL', entry, 'lease_token', 'lease_expires')
redis.call('XADD', KEYS[3], '*', 'key', key, 'reviewer', reviewer, 'resolved_at', resolved_at,
  'label', label, 'decision', decision, 'item', item)
if second ~= '' then
  local second_entry = ARGV[1] .. second
  if review_enqueue(second_entry, KEYS[1], second, decision, item,
      redis.call('HGET', entry, 'priority'), at) == 1 then
    redis.call('HSET', second_entry, 'exclude', reviewer, 'second_of', key)
  end
end
return {reviewer, resolved_at}
"""

ESCALATE = """
local at = now_ms()
local key, token, note, priority = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local entry = ARGV[1] .. key
local problem = check_lease(entry, token, at)
if problem then return redis.error_reply(problem) end
local reviewer = redis.call('HGET', entry, 'reviewer')
priority = math.max(priority, tonumber(redis.call('HGET', entry, 'priority')))
local score = string.format('%.0f',
  (100 - priority) * 1e13 + tonumber(redis.call('HGET', entry, 'enqueued_at')))
redis.call('ZREM', KEYS[2], key)
redis.call('HSET', entry, 'state', 'queued', 'priority', priority, 'score', score,
  'escalated_by', reviewer, 'escalation_note', note, 'escalated_at', string.format('%.0f', at))
redis.call('HDEL', entry, 'lease_token', 'reviewer', 'lease_expires')
redis.call('ZADD', KEYS[1], score, key)
redis.call('XADD', KEYS[4], 'MAXLEN', '~', 100000, '*', 'event', 'escalated', 'key', key,
  'reviewer', reviewer, 'at', string.format('%.0f', at), 'note', note)
return 1
"""

ENQUEUE = """
return review_enqueue(KEYS[5], KEYS[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], now_ms())
"""

SWEEP = """
return requeue_expired(KEYS[2], KEYS[1], ARGV[1], now_ms())
"""
