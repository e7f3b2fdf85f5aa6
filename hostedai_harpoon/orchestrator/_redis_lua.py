"""The Lua scripts behind ``RedisState``: each change to the fleet's state is one of them,
so it is atomic however many replicas run it at once.

Times are the Redis server's (``TIME``), so the replicas' clocks never need to agree.
Every key is ``harpoon:{fleet}:...``: the hash tag puts one fleet on one Cluster slot, and
the scripts build the few keys they cannot be passed from the same prefix.

The layout:

``replicas``        sorted set: replica id -> when its heartbeat lapses (ms)
``cap:<target>``    hash: replica id -> allocations of ``<target>`` it may hold (its share
                    of ``max_allocations``); ``~orphans`` -> those of dead replicas that
                    are still to be released
``allocs``          hash: allocation id -> ``owner<TAB>target<TAB>state`` (``held`` or
                    ``releasing``); a lease whose create may be under way is there before
                    the create is sent, as ``key:<idempotency key>`` ->
                    ``owner<TAB>target<TAB>creating<TAB><the create's body, JSON>``
``orphans``         hash: allocation id (or ``key:...``) -> ``target<TAB>counted`` (``1``: in
                    the cap), then what ``allocs`` said after the target, if it came from there
``stats``           hash: ``replica<TAB>target`` -> that replica's recent statistics
``cool:<target>``   string with a TTL: the target's breaker is open fleet-wide until then
``claim:<id>``      string with a TTL: a replica is releasing orphan ``<id>`` now
``use:<replica>``   hash with the heartbeat's TTL, rewritten at each of its syncs: the warm
                    allocations that replica may share or uses -> ``target<TAB>owned (1:
                    its own)<TAB>calls in flight<TAB>a token that changes when a call ends``
``warmer``          string with the heartbeat's TTL: the replica that keeps ``min_warm``
"""

from __future__ import annotations

__all__ = [
    "ACQUIRE",
    "COOL",
    "GIVE_BACK",
    "LEAVE",
    "ORPHAN_DONE",
    "REGISTER",
    "SET_SHARE",
    "SYNC",
]

_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

# KEYS: replicas, allocs, orphans, stats.
# ARGV: me, heartbeat ttl (ms), ledger ttl (ms), key prefix, allocs given ("1"/"0"),
#       my allocations ("id<TAB>target<TAB>state" lines), my stats ("target<TAB>values"
#       lines), the targets to read (names, TAB-separated), my warm pool's use
#       ("id<TAB>target<TAB>owned<TAB>in flight<TAB>token" lines).
# Returns: {lapsed (1: my heartbeat had lapsed or never was), replicas alive,
#           stats (flat field/value list), orphans (flat id/value list), each target's
#           cool-down PTTL, each target's places of the cap held in the fleet,
#           1 if I am the warmer, {replica, its use (flat field/value list), ...} of the
#           other replicas alive}.
SYNC = (
    _NOW
    + """
local me = ARGV[1]
local ttl = tonumber(ARGV[2])
local keep = tonumber(ARGV[3])
local prefix = ARGV[4]
local known = redis.call('ZSCORE', KEYS[1], me)
local lapsed = 0
if known == false or tonumber(known) < now then lapsed = 1 end
redis.call('ZADD', KEYS[1], now + ttl, me)
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
if #dead > 0 then
  local gone = {}
  for _, replica in ipairs(dead) do
    gone[replica] = true
    redis.call('ZREM', KEYS[1], replica)
  end
  local allocs = redis.call('HGETALL', KEYS[2])
  for i = 1, #allocs, 2 do
    local owner, target, rest = string.match(allocs[i + 1], '^([^\\t]*)\\t([^\\t]*)(.*)$')
    if gone[owner] then
      redis.call('HDEL', KEYS[2], allocs[i])
      if redis.call('HSETNX', KEYS[3], allocs[i], target .. '\\t1' .. rest) == 1 then
        redis.call('HINCRBY', prefix .. 'cap:' .. target, '~orphans', 1)
      end
    end
  end
  local fields = redis.call('HKEYS', KEYS[4])
  for _, field in ipairs(fields) do
    local owner, target = string.match(field, '^([^\\t]*)\\t(.*)$')
    if gone[owner] then
      redis.call('HDEL', KEYS[4], field)
      redis.call('HDEL', prefix .. 'cap:' .. target, owner)
    end
  end
  for replica in pairs(gone) do redis.call('DEL', prefix .. 'use:' .. replica) end
end
if ARGV[5] == '1' then
  local allocs = redis.call('HGETALL', KEYS[2])
  for i = 1, #allocs, 2 do
    if string.match(allocs[i + 1], '^([^\\t]*)\\t') == me then
      redis.call('HDEL', KEYS[2], allocs[i])
    end
  end
  for line in string.gmatch(ARGV[6], '[^\\n]+') do
    local id, rest = string.match(line, '^([^\\t]+)\\t(.*)$')
    redis.call('HSET', KEYS[2], id, me .. '\\t' .. rest)
  end
end
for line in string.gmatch(ARGV[7], '[^\\n]+') do
  local target, values = string.match(line, '^([^\\t]+)\\t(.*)$')
  redis.call('HSET', KEYS[4], me .. '\\t' .. target, values)
end
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], keep) end
local cools = {}
local held = {}
for name in string.gmatch(ARGV[8], '[^\\t]+') do
  table.insert(cools, redis.call('PTTL', prefix .. 'cool:' .. name))
  local total = 0
  local shares = redis.call('HVALS', prefix .. 'cap:' .. name)
  for _, share in ipairs(shares) do total = total + tonumber(share) end
  table.insert(held, total)
end
local use = prefix .. 'use:' .. me
redis.call('DEL', use)
for line in string.gmatch(ARGV[9], '[^\\n]+') do
  local id, rest = string.match(line, '^([^\\t]+)\\t(.*)$')
  redis.call('HSET', use, id, rest)
end
redis.call('PEXPIRE', use, ttl)
local warmer = redis.call('GET', prefix .. 'warmer')
local warm = 0
if warmer == false or warmer == me then
  redis.call('SET', prefix .. 'warmer', me, 'PX', ttl)
  warm = 1
end
local others = {}
for _, replica in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if replica ~= me then
    table.insert(others, replica)
    table.insert(others, redis.call('HGETALL', prefix .. 'use:' .. replica))
  end
end
return {lapsed, redis.call('ZCARD', KEYS[1]), redis.call('HGETALL', KEYS[4]),
        redis.call('HGETALL', KEYS[3]), cools, held, warm, others}
"""
)

# KEYS: replicas, cap:<target>.  ARGV: me, limit, ledger ttl (ms).
# Takes one place of the fleet-wide cap for me: 1, or 0 when the fleet is at the limit.
# A dead replica's share counts until a sync reaps it: then its allocations count under
# ~orphans until released, so the fleet never leases in their place too early.
ACQUIRE = """
local shares = redis.call('HVALS', KEYS[2])
local total = 0
for _, share in ipairs(shares) do total = total + tonumber(share) end
if total + 1 > tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[3]))
return 1
"""

# KEYS: replicas, allocs.  ARGV: me, heartbeat ttl (ms), allocs field, its value.
# A lease about to send its create: its key goes in the registry first (with a heartbeat,
# should this replica not have written one yet, so that its death is noticed).
REGISTER = (
    _NOW
    + """
redis.call('ZADD', KEYS[1], 'NX', now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
return 1
"""
)

# KEYS: cap:<target>.  ARGV: me, how many places to give back.
GIVE_BACK = """
local left = redis.call('HINCRBY', KEYS[1], ARGV[1], -tonumber(ARGV[2]))
if left <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return left
"""

# KEYS: cap:<target>.  ARGV: me, my share (reconciling after Redis came back).
SET_SHARE = """
if tonumber(ARGV[2]) > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
"""

# KEYS: cool:<target>.  ARGV: cool-down (ms), who set it.
# The longest cool-down wins, and every write carries its TTL: a shorter one never
# shortens a longer one, and no write leaves the key without an expiry.
COOL = """
local left = redis.call('PTTL', KEYS[1])
local wanted = tonumber(ARGV[1])
if left < wanted then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', wanted)
  return wanted
end
return left
"""

# KEYS: orphans.  ARGV: allocation id, key prefix.
# The orphan is released: forget it, and give back its place in the cap if it had one.
ORPHAN_DONE = """
local value = redis.call('HGET', KEYS[1], ARGV[1])
if value == false then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local target, counted = string.match(value, '^([^\\t]*)\\t([^\\t]*)')
if counted == '1' then
  local cap = ARGV[2] .. 'cap:' .. target
  if redis.call('HINCRBY', cap, '~orphans', -1) <= 0 then redis.call('HDEL', cap, '~orphans') end
end
return 1
"""

# KEYS: replicas, allocs, stats.  ARGV: me, the cap keys (TAB-separated), key prefix.
# A replica leaving cleanly: its heartbeat, allocations (all released by now), statistics,
# shares, warm pool and the warmer's part (if it had it) go.
LEAVE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', ARGV[3] .. 'use:' .. ARGV[1])
if redis.call('GET', ARGV[3] .. 'warmer') == ARGV[1] then redis.call('DEL', ARGV[3] .. 'warmer') end
local allocs = redis.call('HGETALL', KEYS[2])
for i = 1, #allocs, 2 do
  if string.match(allocs[i + 1], '^([^\\t]*)\\t') == ARGV[1] then
    redis.call('HDEL', KEYS[2], allocs[i])
  end
end
local fields = redis.call('HKEYS', KEYS[3])
for _, field in ipairs(fields) do
  if string.match(field, '^([^\\t]*)\\t') == ARGV[1] then redis.call('HDEL', KEYS[3], field) end
end
for cap in string.gmatch(ARGV[2], '[^\\t]+') do redis.call('HDEL', cap, ARGV[1]) end
return 1
"""
