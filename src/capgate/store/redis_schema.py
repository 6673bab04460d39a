"""The Redis store's data layout, by version, and the upgrade of an older database.

`{cg}:schema` holds the layout's version; a database without one is of version 1 (or, as
far back as stores written before per-key queues, older: the same upgrade serves both).

Version 2 (this one) differs from version 1 in what creating a task writes:

- The queue by type (`{cg}:queued:TYPE`, a sorted set every create added to) is gone: the
  queue is the per-key queues alone (`{cg}:kq:TYPE:KEY`, with `{cg}:qkeys:TYPE` the keys
  that have any), and the queue depth is counted from them.
- The tasks a key has in flight are counted in its account (`{cg}:key:ID`, field
  `inflight`), not kept in a set (`{cg}:inflight:ID`) that every create added to and
  counted.
- A new task's hash has no `id` (the key names it), no `polls` until it is polled, and no
  idempotency fields unless it has a key. Readers take all of these as missing; tasks
  written before keep theirs, which nothing reads any more.

The upgrade (MIGRATE) is one script, so it is atomic: it indexes by key every task of the
old queues, counts each key's tasks in flight into its counter (from the tasks themselves,
not the old sets, which kept tasks Redis had expired), deletes the old structures and sets
the version. Nodes that start at once each run it; the first upgrades, the others find
version 2 and do nothing. A database of a newer version than this code knows is refused
(UPGRADE_REFUSED), untouched. It costs Redis about 20 µs per task in flight, all in one
go (2.2 s for 100,000 queued tasks with the repair after it, measured), and nothing per task that
is finished.

Every start then mends the per-key queues from `{cg}:unfinished` (REPAIR_QUEUES, in
slices of REPAIR_SLICE tasks, so that Redis answers other nodes between them) and, where
at most RECOUNT_AT_START_MAX tasks are in flight, counts every key's in-flight counter
again (RECOUNT, one script: about 10 µs of Redis per task in flight). The counter is exact
by construction (redis.py's `finish` takes a task off it only as the task leaves
`{cg}:unfinished`, and every script that finds a task Redis dropped counts again), so the
repair only mends what a hand, or a node of the old version, did.

Nodes of the old version must be stopped before the first node of this one starts: they
would go on writing the old layout (their creates would not count in the new counters,
their queue depth would read the dropped queues).
"""

from __future__ import annotations

SCHEMA = 2

UPGRADE_REFUSED = (
    "this Redis holds capgate data of layout version {found}; this capgate knows versions"
    " up to {known}: upgrade capgate on this node"
)

# Lua: each key's count of tasks in flight (`inflight` in its account), made again from the
# tasks themselves: those in `{cg}:unfinished` whose hash is still there, queued or running
# (by redis.py's `finish`, the counter is exactly that count, but for tasks whose hash
# Redis dropped, expired or evicted, before they left the set). Keys with none get 0; a
# key whose account is gone gets nothing (no half-made account). Returns nothing.
RECOUNT_IN_FLIGHT = """
local function recount_in_flight(P)
  local counts = {}
  for _, key_id in ipairs(redis.call('ZRANGE', P .. ':keys', 0, -1)) do counts[key_id] = 0 end
  for _, id in ipairs(redis.call('ZRANGE', P .. ':unfinished', 0, -1)) do
    local f = redis.call('HMGET', P .. ':task:' .. id, 'status', 'key_id')
    if f[1] == '0' or f[1] == '1' then counts[f[2]] = (counts[f[2]] or 0) + 1 end
  end
  for key_id, count in pairs(counts) do
    local account = P .. ':key:' .. key_id
    if redis.call('EXISTS', account) == 1 then
      redis.call('HSET', account, 'inflight', count)
    end
  end
end
"""

# ARGV: prefix, then the task types. Returns the version found before (0: none), or the
# newer version found, untouched.
MIGRATE = (
    RECOUNT_IN_FLIGHT
    + """
local P = ARGV[1]
local found = tonumber(redis.call('GET', P .. ':schema') or '0')
if found >= %SCHEMA% then return found end
-- 1. The queues by type: every task in them indexed by key (idempotent), then dropped.
for i = 2, #ARGV do
  local typ = ARGV[i]
  local by_type = P .. ':queued:' .. typ
  for _, id in ipairs(redis.call('ZRANGE', by_type, 0, -1)) do
    local f = redis.call('HMGET', P .. ':task:' .. id, 'key_id', 'status')
    if f[1] and f[2] == '0' then
      redis.call('ZADD', P .. ':kq:' .. typ .. ':' .. f[1], id, id)
      redis.call('SADD', P .. ':qkeys:' .. typ, f[1])
    end
  end
  redis.call('DEL', by_type)
end
-- 2. Each key's in-flight set dropped, its counter counted from the tasks themselves
-- (the sets also kept tasks that Redis had expired: a counter made from them would be
-- too high).
for _, key_id in ipairs(redis.call('ZRANGE', P .. ':keys', 0, -1)) do
  redis.call('DEL', P .. ':inflight:' .. key_id)
end
recount_in_flight(P)
redis.call('SET', P .. ':schema', '%SCHEMA%')
return found
"""
).replace("%SCHEMA%", str(SCHEMA))

# Every start, after MIGRATE, in slices (ARGV: prefix, first rank, count): each queued task
# (status 0) of that slice of `{cg}:unfinished` is in its key's queue and the key in its
# type's set of keys (idempotent; restores queues lost or deleted by hand). About 10 µs of
# Redis per task, REPAIR_SLICE tasks a call, so that other nodes' requests are answered
# between the calls. Returns how many tasks the slice held (fewer than count: the end).
REPAIR_QUEUES = """
local P, first, count = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local ids = redis.call('ZRANGE', P .. ':unfinished', first, first + count - 1)
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', P .. ':task:' .. id, 'status', 'type', 'key_id')
  if f[1] == '0' then
    redis.call('ZADD', P .. ':kq:' .. f[2] .. ':' .. f[3], id, id)
    redis.call('SADD', P .. ':qkeys:' .. f[2], f[3])
  end
end
return #ids
"""
REPAIR_SLICE = 5000

# Every start too, where at most RECOUNT_AT_START_MAX tasks are in flight: each key's
# in-flight counter counted again (ARGV: prefix), mending counters that tasks Redis
# dropped left too high. It must be one script to be exact, and it stops Redis for about
# 10 µs per task in flight (1.1 s for 100,000): past the limit a start skips it and says
# so. The counters are exact by construction (redis.py's `finish`), and any script that
# meets a task Redis dropped counts again by itself.
RECOUNT = (
    RECOUNT_IN_FLIGHT
    + """
recount_in_flight(ARGV[1])
return 1
"""
)
RECOUNT_AT_START_MAX = 20_000
