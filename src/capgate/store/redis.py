"""The Redis store: several stateless API nodes and workers sharing one Redis.

Every operation that must be atomic is one Lua script (create with its debit, lease, fenced
complete, fail and refund, poll count, report, sweeps), so nodes never race each other.
All keys share the hash tag `{cg}`, so the scripts run on Redis Cluster too. A task is as
durable as Redis' persistence is configured to make it (see docs/guarantees.md). Creates
go in batches, one script call each (redis_create); the data layout has a version, and
opening the store upgrades an older one (redis_schema).

Time: callers pass their `now` as with every store, but by default each script moves every
time it is given onto Redis' own clock (`TIME`): leases, deadlines and retention are then
measured by one clock however far the nodes' clocks drift apart. A store opened with
`server_time=False` keeps the caller's times, for tests that move the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, cast

import hiredis
import msgspec
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from capgate.model import (
    CapgateError,
    ErrorCode,
    Key,
    Lease,
    Solution,
    Task,
    TaskSpec,
    TaskStatus,
    TaskType,
)
from capgate.store import redis_schema
from capgate.store.base import (
    HOUR,
    SITE_FILES_KEEP,
    SITE_HISTORY_KEEP,
    SPENDING_KEEP_SECONDS,
    RefundLimit,
    Spending,
    Store,
    idempotency_conflict,
    report_not_recorded,
    too_many_in_flight,
)
from capgate.store.redis_create import (
    CREATE,
    FIELDS,
    LUA_FIELDS,
    CreateBatcher,
    create_arguments,
)
from capgate.store.redis_pipe import SharedConnection, tls_context
from capgate.store.redis_schema import (
    MIGRATE,
    RECOUNT,
    RECOUNT_IN_FLIGHT,
    REPAIR_QUEUES,
    SCHEMA,
    UPGRADE_REFUSED,
)
from capgate.store.redis_tracking import FetchAbandoned, TrackedTasks
from capgate.store.sites import SERVING, SiteCounters, SiteEvent, SiteLabel, SiteModel

log = logging.getLogger("capgate.store")

P = "{cg}"  # The hash tag every key carries.

# Shared Lua: the arguments every script gets, its clock, and the status moves that several
# scripts make. ARGV is (prefix, caller's now, server time on, the script's own arguments).
_LUA_COMMON = (
    RECOUNT_IN_FLIGHT
    + """
local P = ARGV[1]
local SHIFT = 0
if ARGV[3] == '1' then
  local t = redis.call('TIME')
  SHIFT = tonumber(t[1]) + tonumber(t[2]) / 1000000 - tonumber(ARGV[2])
end
-- A time the caller gave, on the store's clock; NOW is the caller's now on it.
local function at(x) return tonumber(x) + SHIFT end
local NOW = at(ARGV[2])
local function arg(i) return ARGV[3 + i] end
local function task_key(id) return P .. ':task:' .. id end
-- A task as callers read it: every field but the image (and its id), in FIELDS' order.
local FIELDS = {%FIELDS%}
local function view(t) return redis.call('HMGET', t, unpack(FIELDS)) end
-- A task as a lease hands it out: every field, and its id.
local function row(id)
  local fields = redis.call('HGETALL', task_key(id))
  fields[#fields + 1] = 'id'
  fields[#fields + 1] = string.format('%d', id)  -- tostring would print 1e+14
  return fields
end
-- Queued tasks: a sorted set per type and key, and per type the set of keys that have
-- any (for fair leasing: round-robin over keys; the queue depth counts them).
local function enqueue(id, typ, key_id)
  redis.call('ZADD', P .. ':kq:' .. typ .. ':' .. key_id, id, id)
  redis.call('SADD', P .. ':qkeys:' .. typ, key_id)
end
local function unqueue(id, typ)
  local key_id = redis.call('HGET', P .. ':task:' .. id, 'key_id')
  local queue = P .. ':kq:' .. typ .. ':' .. key_id
  redis.call('ZREM', queue, id)
  if redis.call('ZCARD', queue) == 0 then redis.call('SREM', P .. ':qkeys:' .. typ, key_id) end
end
-- A task that was queued or running is not any more. `{cg}:unfinished` holds exactly the
-- tasks in flight, so the key's in-flight counter goes down only when the task leaves it:
-- once per task, however many paths finish it.
local function finish(id, key_id)
  redis.call('ZREM', P .. ':running', id)
  if redis.call('ZREM', P .. ':unfinished', id) == 1 then
    redis.call('HINCRBY', P .. ':key:' .. key_id, 'inflight', -1)
  end
end
local function fail_task(id, code, description, solver, now)
  local t = task_key(id)
  local key_id = redis.call('HGET', t, 'key_id')
  local cost = tonumber(redis.call('HGET', t, 'cost'))
  unqueue(id, redis.call('HGET', t, 'type'))
  redis.call('HSET', t, 'status', 3, 'error_code', code, 'error_description', description,
    'finished_at', now, 'lease_token', '', 'lease_expires_at', '')
  if solver ~= '' then redis.call('HSET', t, 'solver', solver) end
  redis.call('HDEL', t, 'body')
  finish(id, key_id)
  redis.call('HINCRBY', P .. ':key:' .. key_id, 'balance', cost)
end
local function requeue(id, solver)
  local t = task_key(id)
  redis.call('HSET', t, 'status', 0, 'lease_token', '', 'lease_expires_at', '')
  if solver ~= '' then redis.call('HSET', t, 'solver', solver) end
  redis.call('ZREM', P .. ':running', id)
  enqueue(id, redis.call('HGET', t, 'type'), redis.call('HGET', t, 'key_id'))
end
-- A task whose hash Redis expired (no node swept for its whole retention and grace):
-- drop it from the sweeps' sets so they move on. Its key is not known any more, so a
-- script that found one in flight (GONE) counts every key's tasks in flight again before
-- it ends (recount_in_flight): rare, and the counter never stays too high.
local GONE = false
local function gone(id)
  if redis.call('EXISTS', task_key(id)) == 1 then return false end
  redis.call('ZREM', P .. ':running', id)
  if redis.call('ZREM', P .. ':unfinished', id) == 1 then GONE = true end
  redis.call('ZREM', P .. ':expiring', id)
  return true
end
local function held(id, token, now)
  local t = task_key(id)
  local f = redis.call('HMGET', t, 'status', 'lease_token', 'lease_expires_at')
  return f[1] == '1' and f[2] == token and f[3] ~= false and f[3] ~= ''
    and tonumber(f[3]) > now
end
-- The spending ledger (Store.spending): one hash per key and hour, two fields per line
-- ('v' and 'm', then the line as JSON: type, ip, soft id), kept for %KEEP% s.
local function soft_of(params)
  local ok, p = pcall(cjson.decode, params or '')
  if not ok or type(p) ~= 'table' then return '' end
  for _, name in ipairs({'softId', 'appId'}) do
    local v = p[name]
    if type(v) == 'string' and v ~= '' then return string.sub(v, 1, 32) end
    if type(v) == 'number' and v == math.floor(v) then return string.format('%d', v) end
  end
  return ''
end
local function spend(key_id, moment, t, volume, money)
  local ledger = P .. ':spend:' .. key_id .. ':' .. math.floor(moment / 3600) * 3600
  if volume == 0 and redis.call('EXISTS', ledger) == 0 then return end
  local f = redis.call('HMGET', t, 'type', 'ip', 'params')
  local line = cjson.encode({f[1], f[2], soft_of(f[3])})
  if volume ~= 0 then redis.call('HINCRBY', ledger, 'v' .. line, volume) end
  redis.call('HINCRBY', ledger, 'm' .. line, money)
  redis.call('EXPIRE', ledger, %KEEP%)
end
""".replace("%FIELDS%", LUA_FIELDS).replace("%KEEP%", str(SPENDING_KEEP_SECONDS))
)

_ADD_POLLS = (
    _LUA_COMMON
    + """
for i = 4, #ARGV, 2 do
  local t = task_key(ARGV[i])
  if redis.call('EXISTS', t) == 1 then redis.call('HINCRBY', t, 'polls', ARGV[i + 1]) end
end
return 1
"""
)

_LEASE = (
    _LUA_COMMON
    + """
local now, expires, limit, token = NOW, at(arg(1)), tonumber(arg(2)), arg(3)
local given_token = arg(4) == '1'
local lease_set = P .. ':lease:' .. token
if given_token then
  local out = {}
  for _, id in ipairs(redis.call('SMEMBERS', lease_set)) do
    if held(id, token, now) then table.insert(out, row(id)) end
  end
  if #out > 0 then return out end
end
if limit <= 0 then return {} end
-- Each key's oldest queued tasks of these types, then store.base.fair_order's rounds.
local queues = {}
for i = 8, #ARGV do
  local typ = ARGV[i]
  for _, key_id in ipairs(redis.call('SMEMBERS', P .. ':qkeys:' .. typ)) do
    local list = queues[key_id] or {}
    queues[key_id] = list
    local queue = P .. ':kq:' .. typ .. ':' .. key_id
    for _, id in ipairs(redis.call('ZRANGE', queue, 0, limit - 1)) do
      if redis.call('EXISTS', task_key(id)) == 1 then
        table.insert(list, tonumber(id))
      else  -- expired by Redis (see gone)
        redis.call('ZREM', queue, id)
        gone(id)
      end
    end
  end
end
if GONE then recount_in_flight(P) end
local heads = {}
for _, list in pairs(queues) do
  if #list > 0 then
    table.sort(list)
    table.insert(heads, list)
  end
end
table.sort(heads, function(a, b) return a[1] < b[1] end)
local candidates = {}
local depth = 1
while #candidates < limit and #heads > 0 do
  local deeper = {}
  for _, list in ipairs(heads) do
    if #list >= depth then
      if #candidates < limit then table.insert(candidates, list[depth]) end
      table.insert(deeper, list)
    end
  end
  heads = deeper
  depth = depth + 1
end
local out = {}
for _, id in ipairs(candidates) do
  local t = task_key(id)
  local typ = redis.call('HGET', t, 'type')
  unqueue(id, typ)
  redis.call('HINCRBY', t, 'attempts', 1)
  if redis.call('HGET', t, 'started_at') == false then redis.call('HSET', t, 'started_at', now) end
  redis.call('HSET', t, 'status', 1, 'lease_token', token, 'lease_expires_at', expires)
  redis.call('ZADD', P .. ':running', expires, id)
  redis.call('SADD', lease_set, id)
  table.insert(out, row(id))
end
if #out > 0 then
  redis.call('PEXPIRE', lease_set, math.floor((expires - now) * 1000) + 60000)
end
return out
"""
)

_EXTEND = (
    _LUA_COMMON
    + """
local id, token, expires, attempt = arg(1), arg(2), math.max(at(arg(3)), NOW), arg(4)
if not held(id, token, NOW) then return 0 end
redis.call('HSET', task_key(id), 'lease_expires_at', expires)
if attempt == '1' then redis.call('HINCRBY', task_key(id), 'attempts', 1) end
redis.call('ZADD', P .. ':running', expires, id)
return 1
"""
)

_HELD_IMAGE = (
    _LUA_COMMON
    + """
local id, token = arg(1), arg(2)
if not held(id, token, NOW) then return false end
return redis.call('HGET', task_key(id), 'body')
"""
)

_COMPLETE = (
    _LUA_COMMON
    + """
local id, token, solution, solver, now = arg(1), arg(2), arg(3), arg(4), NOW
if not held(id, token, now) then return 0 end
local t = task_key(id)
local key_id = redis.call('HGET', t, 'key_id')
redis.call('HSET', t, 'status', 2, 'solution', solution, 'solver', solver, 'finished_at', now,
  'lease_token', '', 'lease_expires_at', '')
redis.call('HDEL', t, 'body')
finish(id, key_id)
local cost = tonumber(redis.call('HGET', t, 'cost'))
redis.call('HINCRBY', P .. ':key:' .. key_id, 'spent', cost)
if cost > 0 then
  redis.call('HINCRBY', P .. ':key:' .. key_id, 'solved', 1)
  -- The ledger is of money: free answers, which no balance bounds, stay out.
  spend(key_id, now, t, 1, cost)
end
return 1
"""
)

_FAIL = (
    _LUA_COMMON
    + """
local id, token, code, description = arg(1), arg(2), arg(3), arg(4)
local solver, now = arg(5), NOW
local retry, max_attempts = arg(6) == '1', tonumber(arg(7))
if not held(id, token, now) then return 0 end
if retry and tonumber(redis.call('HGET', task_key(id), 'attempts')) < max_attempts then
  requeue(id, solver)
else
  fail_task(id, code, description, solver, now)
end
return 1
"""
)

_REQUEUE_EXPIRED = (
    _LUA_COMMON
    + """
local now, max_attempts = NOW, tonumber(arg(1))
local ids = redis.call('ZRANGEBYSCORE', P .. ':running', '-inf', now)
for _, id in ipairs(ids) do
  local attempts = tonumber(redis.call('HGET', task_key(id), 'attempts'))
  if gone(id) then
    -- nothing left to move
  elseif attempts < max_attempts then
    requeue(id, '')
  else
    fail_task(id, 'CAPTCHA_UNSOLVABLE',
      'No solver finished the task in ' .. attempts .. ' attempts', '', now)
  end
end
if GONE then recount_in_flight(P) end
return ids
"""
)

_FAIL_OVERDUE = (
    _LUA_COMMON
    + """
local now = NOW
local ids = redis.call('ZRANGEBYSCORE', P .. ':unfinished', '-inf', now)
for _, id in ipairs(ids) do
  if not gone(id) then
    local f = redis.call('HMGET', task_key(id), 'deadline_at', 'created_at')
    local seconds = math.floor(tonumber(f[1]) - tonumber(f[2]) + 0.5)
    fail_task(id, 'TASK_TIMEOUT',
      'No solver finished the task within its ' .. seconds .. ' s deadline', '', now)
  end
end
if GONE then recount_in_flight(P) end
return ids
"""
)

_PURGE = (
    _LUA_COMMON
    + """
local now, limit = NOW, tonumber(arg(1))
local ids = redis.call('ZRANGEBYSCORE', P .. ':expiring', '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(ids) do
  local t = task_key(id)
  local f = redis.call('HMGET', t, 'key_id', 'type', 'idem_key', 'status')
  if f[1] then
    if f[4] == '0' then unqueue(id, f[2]) end
    if f[4] == '0' or f[4] == '1' then finish(id, f[1]) end
    if f[3] and f[3] ~= '' then redis.call('DEL', P .. ':idem:' .. f[1] .. ':' .. f[3]) end
  end
  redis.call('DEL', t)
  redis.call('ZREM', P .. ':expiring', id)
end
return #ids
"""
)

_REPORT = (
    _LUA_COMMON
    + """
local t = task_key(arg(1))
local key_id, correct = arg(2), arg(3)
-- The refund limit (RefundLimit): a share and an allowance; no share, no limit.
local max_share, allowance = tonumber(arg(4)), tonumber(arg(5))
if redis.call('HGET', t, 'key_id') ~= key_id then return false end
local f = redis.call('HMGET', t, 'status', 'verdict', 'cost')
if f[1] == '2' and (f[2] == false or f[2] == '') then
  local cost = tonumber(f[3])
  local account = P .. ':key:' .. key_id
  local refund = correct == '0' and cost > 0
  if refund and max_share then
    local counts = redis.call('HMGET', account, 'refunds', 'solved')
    local refunds, solved = tonumber(counts[1] or 0), tonumber(counts[2] or 0)
    if refunds >= allowance and refunds + 1 > max_share * solved then
      return {'refused', refunds, solved}
    end
  end
  redis.call('HSET', t, 'verdict', correct)
  if refund then
    redis.call('HINCRBY', account, 'balance', cost)
    redis.call('HINCRBY', account, 'spent', -cost)
    redis.call('HINCRBY', account, 'refunds', 1)
    spend(key_id, tonumber(redis.call('HGET', t, 'finished_at')), t, 0, -cost)
  end
end
return view(t)
"""
)

_CREATE_KEY = (
    _LUA_COMMON
    + """
local name, key_hash, balance, dialect, worker = arg(1), arg(2), arg(3), arg(4), arg(5)
local allow_ips, site = arg(6), arg(7)
local by_hash = P .. ':keyhash:' .. key_hash
if redis.call('EXISTS', by_hash) == 1 then return 0 end
local id = redis.call('INCR', P .. ':seq:keys')
redis.call('HSET', P .. ':key:' .. id, 'id', id, 'name', name, 'key_hash', key_hash,
  'balance', balance, 'spent', 0, 'created_at', NOW, 'dialect', dialect, 'worker', worker,
  'allow_ips', allow_ips, 'site', site)
redis.call('SET', by_hash, id)
redis.call('ZADD', P .. ':keys', id, id)
return id
"""
)

_HOLD_MAINTENANCE = (
    _LUA_COMMON
    + """
local lock, holder, ms = P .. ':maintenance', arg(1), tonumber(arg(2))
local owner = redis.call('GET', lock)
if owner and owner ~= holder then return 0 end
redis.call('SET', lock, holder, 'PX', ms)
return 1
"""
)

# --- sites (SiteStore) ----------------------------------------------------------------
# Per site (the name last in each key, so no two sites' keys meet): `site:` a hash of its
# counters, its highest version (`version`); `labels:` its labels' task ids (a sorted set)
# and `labeldata:` their fields (i, t, c + id: image, text, created); `history:` a list,
# newest first; `model:SITE:VERSION` a version's hash (no bytes), `files:` the bytes still
# kept (o, s + version: ONNX, model.json); `audit:SITE:VERSION` a version's newest outcomes.
# Across sites: `sites` (every site seen), `serving` (site: its serving version), `lock:`.
# Site names are at most 255 characters (callers check).
_LUA_SITES = (
    _LUA_COMMON
    + """
local function exact(x) return string.format('%.17g', x) end
local function site_key(site) return P .. ':site:' .. site end
local function model_key(site, version) return P .. ':model:' .. site .. ':' .. version end
local function seen(site)
  redis.call('SADD', P .. ':sites', site)
  return site_key(site)
end
local function event(site, at, kind, version, reason, labels)
  local history = P .. ':history:' .. site
  redis.call('LPUSH', history, cjson.encode({at, kind, tonumber(version), reason,
    tonumber(labels)}))
  redis.call('LTRIM', history, 0, %HISTORY% - 1)
end
"""
).replace("%HISTORY%", str(SITE_HISTORY_KEEP))

_ADD_SITE_LABEL = (
    _LUA_SITES
    + """
local site, id, image, text, keep = arg(1), arg(2), arg(3), arg(4), tonumber(arg(5))
seen(site)
local ids, data = P .. ':labels:' .. site, P .. ':labeldata:' .. site
redis.call('ZADD', ids, id, id)
redis.call('HSET', data, 'i' .. id, image, 't' .. id, text, 'c' .. id, exact(NOW))
local extra = redis.call('ZCARD', ids) - math.max(keep, 0)
if extra > 0 then
  for _, old in ipairs(redis.call('ZRANGE', ids, 0, extra - 1)) do
    redis.call('HDEL', data, 'i' .. old, 't' .. old, 'c' .. old)
  end
  redis.call('ZREMRANGEBYRANK', ids, 0, extra - 1)
end
return redis.call('ZCARD', ids)
"""
)

_FORGET_SITE_LABEL = (
    _LUA_SITES
    + """
local site, id = arg(1), arg(2)
if redis.call('ZREM', P .. ':labels:' .. site, id) == 0 then return 0 end
redis.call('HDEL', P .. ':labeldata:' .. site, 'i' .. id, 't' .. id, 'c' .. id)
return 1
"""
)

_PUBLISH_MODEL = (
    _LUA_SITES
    + """
local site, onnx, spec, threshold, precision, scores = arg(1), arg(2), arg(3), arg(4), arg(5),
  arg(6)
local reason, labels = arg(7), arg(8)
local version = redis.call('HINCRBY', seen(site), 'version', 1)
local old = redis.call('HGET', P .. ':serving', site)
if old then redis.call('HSET', model_key(site, old), 'state', 'retired') end
local at = exact(NOW)
redis.call('HSET', model_key(site, version), 'state', 'serving', 'created_at', at,
  'threshold', threshold, 'precision', precision, 'scores', scores)
redis.call('HSET', P .. ':serving', site, version)
local files = P .. ':files:' .. site
redis.call('HSET', files, 'o' .. version, onnx, 's' .. version, spec)
-- The new version serves: every version older than the newest %FILES% goes.
for _, field in ipairs(redis.call('HKEYS', files)) do
  local v = tonumber(string.sub(field, 2))
  if v <= version - %FILES% then
    redis.call('HDEL', files, field)
    redis.call('DEL', P .. ':audit:' .. site .. ':' .. v)
  end
end
event(site, at, 'promoted', version, reason, labels)
return {version, at}
"""
).replace("%FILES%", str(SITE_FILES_KEEP))

_REJECT_CANDIDATE = (
    _LUA_SITES
    + """
local site, reason, labels = arg(1), arg(2), arg(3)
local version = tonumber(redis.call('HGET', seen(site), 'version') or '0') + 1
event(site, exact(NOW), 'rejected', version, reason, labels)
return 1
"""
)

_DEMOTE_MODEL = (
    _LUA_SITES
    + """
local site, version, reason = arg(1), arg(2), arg(3)
if redis.call('HGET', P .. ':serving', site) ~= version then return 0 end
redis.call('HDEL', P .. ':serving', site)
redis.call('HSET', model_key(site, version), 'state', 'demoted')
event(site, exact(NOW), 'demoted', version, reason, 0)
return 1
"""
)

# Every serving version: site, version, then its hash.
_SERVING_MODELS = (
    _LUA_SITES
    + """
local out = {}
local serving = redis.call('HGETALL', P .. ':serving')
for i = 1, #serving, 2 do
  local site, version = serving[i], serving[i + 1]
  table.insert(out, {site, version, redis.call('HGETALL', model_key(site, version))})
end
return out
"""
)

# A site's versions, newest first: version, then its hash.
_SITE_MODELS = (
    _LUA_SITES
    + """
local site = arg(1)
local out = {}
local last = tonumber(redis.call('HGET', site_key(site), 'version') or '0')
for version = last, 1, -1 do
  local fields = redis.call('HGETALL', model_key(site, version))
  if #fields > 0 then table.insert(out, {version, fields}) end
end
return out
"""
)

_COUNT_ANSWER = (
    _LUA_SITES
    + """
local counters, is_local, by_model, saved = seen(arg(1)), arg(2) == '1', arg(3), arg(4)
if is_local then
  redis.call('HINCRBY', counters, 'local', 1)
  redis.call('HINCRBY', counters, 'by_model', by_model)
  redis.call('HINCRBY', counters, 'saved', saved)
else
  redis.call('HINCRBY', counters, 'upstream', 1)
end
return 1
"""
)

_RECORD_AUDIT = (
    _LUA_SITES
    + """
local site, version, agreed, window, report = arg(1), arg(2), arg(3), tonumber(arg(4)), arg(5)
local counters = seen(site)
if report == '1' then
  redis.call('HINCRBY', counters, 'reported_wrong', 1)
else
  redis.call('HINCRBY', counters, 'audits', 1)
  redis.call('HINCRBY', counters, 'audits_agreed', agreed)
end
local outcomes = P .. ':audit:' .. site .. ':' .. version
if window <= 0 then
  redis.call('DEL', outcomes)
  return {}
end
if report ~= '1' then
  redis.call('RPUSH', outcomes, agreed)
end
redis.call('LTRIM', outcomes, -window, -1)
return redis.call('LRANGE', outcomes, 0, -1)
"""
)

# Every site seen: its name, label count and counters' hash.
_SITE_COUNTERS = (
    _LUA_SITES
    + """
local out = {}
for _, site in ipairs(redis.call('SMEMBERS', P .. ':sites')) do
  table.insert(out, {site, redis.call('ZCARD', P .. ':labels:' .. site),
    redis.call('HGETALL', site_key(site))})
end
return out
"""
)

_HOLD_LOCK = (
    _LUA_SITES
    + """
local lock, holder, seconds = P .. ':lock:' .. arg(1), arg(2), tonumber(arg(3))
local f = redis.call('HMGET', lock, 'holder', 'until')
if f[1] and f[1] ~= holder and tonumber(f[2]) > NOW then return 0 end
redis.call('HSET', lock, 'holder', holder, 'until', exact(NOW + seconds))
return 1
"""
)

_RELEASE_LOCK = (
    _LUA_SITES
    + """
local lock, holder = P .. ':lock:' .. arg(1), arg(2)
if redis.call('HGET', lock, 'holder') == holder then redis.call('DEL', lock) end
return 1
"""
)

# Every task in the queue: each key's queue of each type, counted in one step.
_QUEUE_DEPTH = """
local P, total = ARGV[1], 0
for i = 4, #ARGV do
  for _, key_id in ipairs(redis.call('SMEMBERS', P .. ':qkeys:' .. ARGV[i])) do
    total = total + redis.call('ZCARD', P .. ':kq:' .. ARGV[i] .. ':' .. key_id)
  end
end
return total
"""

_BYTE_FIELDS = tuple(name.encode() for name in FIELDS)
_STATUS = FIELDS.index("status")
_ledger_line = msgspec.json.Decoder(tuple[str, str, str])
_encoder = msgspec.json.Encoder()
_solution = msgspec.json.Decoder(Solution)
_params = msgspec.json.Decoder(dict[str, Any])
_event = msgspec.json.Decoder(tuple[str, str, int, str, int])


class RedisStore(Store):
    """Tasks and keys in Redis, every atomic step one Lua script."""

    def __init__(self, url: str, *, server_time: bool = True) -> None:
        self.url = url
        # Scripts measure time by Redis' clock (see the module's doc); tests turn it off.
        self._server_time = "1" if server_time else "0"
        self._redis: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        # The connection that polls' reads and creates share (see _hot).
        self._shared: SharedConnection | None = None
        # Copies of tasks for polls, while Redis reports every change (see redis_tracking).
        self._tracked: TrackedTasks | None = None
        # The creates of one event-loop turn, sent as one script call (see redis_create).
        self._creates = CreateBatcher(self._send_creates)

    async def open(self) -> None:
        # A connection idle for a second is pinged before use: after a Redis restart the
        # pool's old connections are found dead and replaced, rather than failing a request
        # each. (Commands are never retried: a script whose answer was lost may have run.)
        self._redis = aioredis.Redis.from_url(self.url, health_check_interval=1)
        pool = self._redis.connection_pool
        pool.connection_class = _connection_class(pool.connection_class)
        await self._redis.ping()
        for name, source in (
            ("create", CREATE),
            ("migrate", MIGRATE),
            ("repair_queues", REPAIR_QUEUES),
            ("recount", RECOUNT),
            ("queue_depth", _QUEUE_DEPTH),
            ("add_polls", _ADD_POLLS),
            ("lease", _LEASE),
            ("extend", _EXTEND),
            ("held_image", _HELD_IMAGE),
            ("complete", _COMPLETE),
            ("fail", _FAIL),
            ("requeue_expired", _REQUEUE_EXPIRED),
            ("fail_overdue", _FAIL_OVERDUE),
            ("purge", _PURGE),
            ("report", _REPORT),
            ("create_key", _CREATE_KEY),
            ("hold_maintenance", _HOLD_MAINTENANCE),
            ("add_site_label", _ADD_SITE_LABEL),
            ("forget_site_label", _FORGET_SITE_LABEL),
            ("publish_model", _PUBLISH_MODEL),
            ("reject_candidate", _REJECT_CANDIDATE),
            ("demote_model", _DEMOTE_MODEL),
            ("serving_models", _SERVING_MODELS),
            ("site_models", _SITE_MODELS),
            ("count_answer", _COUNT_ANSWER),
            ("record_audit", _RECORD_AUDIT),
            ("site_counters", _SITE_COUNTERS),
            ("hold_lock", _HOLD_LOCK),
            ("release_lock", _RELEASE_LOCK),
        ):
            self._scripts[name] = self._redis.register_script(source)
        # Pipelined calls use EVALSHA directly: the scripts must be loaded already.
        await self._redis.script_load(CREATE)
        await self._upgrade()
        connection = dict(pool.connection_kwargs)
        tls = tls_context(pool.connection_class, connection)
        self._shared = SharedConnection(connection, tls)
        self._tracked = TrackedTasks(f"{P}:task:", connection, tls)
        await self._tracked.start()

    async def close(self) -> None:
        if self._tracked is not None:
            await self._tracked.stop()
            self._tracked = None
        if self._shared is not None:
            self._shared.close()
            self._shared = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def _upgrade(self) -> None:
        """Bring an older database to this layout (redis_schema), then make sure every
        queued task is in its key's queue and every key's in-flight count is right. A
        database of a newer layout is refused (RuntimeError), untouched."""
        types = [t.value for t in TaskType]
        found = int(await self._scripts["migrate"](keys=[f"{P}:seq:tasks"], args=[P, *types]))
        if found > SCHEMA:
            await self.redis.aclose()
            self._redis = None
            raise RuntimeError(UPGRADE_REFUSED.format(found=found, known=SCHEMA))
        # In slices: one script over a large backlog would stop Redis for every node.
        first, size = 0, redis_schema.REPAIR_SLICE
        while True:
            seen = int(
                await self._scripts["repair_queues"](keys=[f"{P}:seq:tasks"], args=[P, first, size])
            )
            first += seen
            if seen < size:
                break
        if first <= redis_schema.RECOUNT_AT_START_MAX:
            await self._scripts["recount"](keys=[f"{P}:seq:tasks"], args=[P])
        else:
            log.info(
                "%d tasks in flight: the in-flight counters were not counted again at this"
                " start (it would stop Redis for about %.1f s); they are kept exact as tasks"
                " finish",
                first,
                first / 100_000,
            )

    @property
    def redis(self) -> aioredis.Redis:
        """The open connection pool."""
        if self._redis is None:
            raise RuntimeError("the store is not open")
        return self._redis

    def _args(self, now: float | None, args: tuple[Any, ...]) -> list[Any]:
        # A script that uses no time does not ask Redis for it.
        if now is None:
            return [P, "0", "0", *args]
        return [P, repr(now), self._server_time, *args]

    async def _run(self, name: str, now: float | None, *args: Any) -> Any:
        """Run a script at the caller's time `now` (moved onto Redis' clock, by default;
        None for a script that uses no time)."""
        return await self._scripts[name](keys=[f"{P}:seq:tasks"], args=self._args(now, args))

    # --- keys -------------------------------------------------------------------------

    async def create_key(
        self,
        name: str,
        key_hash: bytes,
        balance: int,
        now: float,
        dialect: str | None = None,
        worker: bool = False,
        allow_ips: Sequence[str] = (),
        site: str | None = None,
    ) -> Key:
        key_id = await self._run(
            "create_key",
            now,
            name,
            key_hash.hex(),
            balance,
            dialect or "",
            int(worker),
            ",".join(allow_ips),
            site or "",
        )
        if not key_id:
            raise ValueError("a key with this secret exists already")
        key = await self.get_key(int(key_id))
        assert key is not None
        return key

    async def key_by_hash(self, key_hash: bytes) -> Key | None:
        key_id = await self.redis.get(f"{P}:keyhash:{key_hash.hex()}")
        return None if key_id is None else await self.get_key(int(key_id))

    async def get_key(self, key_id: int) -> Key | None:
        fields = cast(dict[bytes, bytes], await self.redis.hgetall(f"{P}:key:{key_id}"))
        return _key(fields) if fields else None

    async def list_keys(self) -> list[Key]:
        ids = cast(list[bytes], await self.redis.zrange(f"{P}:keys", 0, -1))
        keys = [await self.get_key(int(i)) for i in ids]
        return [k for k in keys if k is not None]

    async def add_balance(self, key_id: int, amount: int) -> Key | None:
        if not await self.redis.exists(f"{P}:key:{key_id}"):
            return None
        await self.redis.hincrby(f"{P}:key:{key_id}", "balance", amount)
        return await self.get_key(key_id)

    # --- tasks ------------------------------------------------------------------------

    async def create_task(
        self,
        key_id: int,
        spec: TaskSpec,
        cost: int,
        ip: str,
        now: float,
        deadline_at: float,
        expires_at: float,
        idempotency: tuple[str, bytes] | None = None,
        max_in_flight: int = 0,
    ) -> Task:
        server_time = self._server_time == "1"
        arguments = create_arguments(
            key_id,
            spec,
            _encoder.encode(spec.params),
            cost,
            ip,
            now,
            deadline_at,
            expires_at,
            idempotency,
            max_in_flight,
            server_time,
        )
        created, answer = await self._creates.create(arguments)
        if isinstance(answer, bytes):  # a new task: its id
            if server_time:  # as the script made them: Redis' now, and the same spans on it
                moment = float(created)
                deadline_at = moment + float(arguments[7])
                expires_at = moment + float(arguments[8])
                now = moment
            return Task(
                id=int(answer),
                key_id=key_id,
                type=spec.type,
                params=spec.params,
                body=spec.body,
                status=TaskStatus.QUEUED,
                created_at=now,
                deadline_at=deadline_at,
                cost=cost,
                ip=ip,
                expires_at=expires_at,
            )
        outcome = answer[0]
        if outcome == b"zero":
            raise CapgateError(ErrorCode.ZERO_BALANCE, "balance too low for this task")
        if outcome == b"busy":
            raise too_many_in_flight(max_in_flight)
        if outcome == b"conflict":
            assert idempotency is not None
            raise idempotency_conflict(idempotency[0])
        # An idempotent replay: the earlier task.
        task = _task_from_fields(int(answer[1]), answer[2])
        task.body = spec.body  # not sent back: the replayed create sent the same image
        return task

    async def _send_creates(self, arguments: list[Any], count: int) -> Any:
        """One batch of creates (redis_create.CreateBatcher): the script on the shared
        connection, or through redis-py after Redis forgot its scripts (nothing ran)."""
        head = [P, self._server_time, count]
        sha = self._scripts["create"].sha
        try:
            return await self._hot("EVALSHA", sha, 1, f"{P}:seq:tasks", *head, *arguments)
        except NoScriptError:  # Redis restarted and forgot its scripts: nothing ran.
            return await self._scripts["create"](keys=[f"{P}:seq:tasks"], args=[*head, *arguments])

    async def get_task(self, task_id: int) -> Task | None:
        tracked = self._tracked
        if tracked is None:
            return await self._read_task(task_id)
        if (copy := tracked.get(task_id)) is not None:
            return copy
        if (pending := tracked.in_flight(task_id)) is not None:
            with contextlib.suppress(FetchAbandoned):
                found = await asyncio.shield(pending)
                return None if found is None else msgspec.structs.replace(found)
        fetch = tracked.fetching(task_id)
        try:
            task = await self._read_task(task_id)
        except BaseException:
            tracked.abandoned(task_id, fetch)
            raise
        tracked.fetched(task_id, fetch, task)
        return task

    async def _read_task(self, task_id: int) -> Task | None:
        key = f"{P}:task:{task_id}"
        values = await self._hot("HMGET", key, *FIELDS)
        return None if values[_STATUS] is None else _task_from_fields(task_id, values)

    def _changed(self, task_ids: Iterable[int]) -> None:
        """This node wrote these tasks: drop its copies now (Redis' message comes later)."""
        if self._tracked is not None:
            self._tracked.changed(task_ids)

    async def _hot(self, *command: Any) -> Any:
        """A poll's read or a create: on the connection every request shares, pipelined
        with the others of this event-loop turn."""
        if self._shared is None:
            raise RuntimeError("the store is not open")
        return await self._shared.call(*command)

    async def recent_tasks(self, limit: int) -> list[Task]:
        # Ids come from one counter, so the newest tasks are the highest ids still stored.
        last = int(await self.redis.get(f"{P}:seq:tasks") or 0)
        tasks: list[Task] = []
        for start in range(last, 0, -200):
            if len(tasks) >= limit:
                break
            ids = range(start, max(0, start - 200), -1)
            async with self.redis.pipeline(transaction=False) as pipe:
                for task_id in ids:
                    pipe.hgetall(f"{P}:task:{task_id}")
                found = cast(list[dict[bytes, bytes]], await pipe.execute())
            for task_id, stored in zip(ids, found, strict=True):
                if stored and len(tasks) < limit:
                    stored.pop(b"body", None)  # operators see tasks, not images
                    stored[b"id"] = b"%d" % task_id
                    tasks.append(_task_from_dict(stored))
        return tasks

    async def add_polls(self, counts: Mapping[int, int]) -> None:
        if counts:
            await self._run("add_polls", None, *(v for item in counts.items() for v in item))
            self._changed(counts)

    async def report(
        self, task_id: int, key_id: int, correct: bool, limit: RefundLimit | None = None
    ) -> Task | None:
        share, allowance = ("", "") if limit is None else (repr(limit.max_share), limit.allowance)
        answer = await self._run("report", None, task_id, key_id, int(correct), share, allowance)
        if answer and answer[0] == b"refused":
            raise report_not_recorded(int(answer[1]), int(answer[2]))
        self._changed((task_id,))
        return _task_from_fields(task_id, answer) if answer and answer[0] is not None else None

    async def lease(
        self,
        types: Collection[TaskType],
        limit: int,
        lease_seconds: float,
        now: float,
        token: str | None = None,
    ) -> list[Lease]:
        import secrets

        chosen = token or secrets.token_hex(8)
        expires = now + lease_seconds
        rows = await self._run(
            "lease",
            now,
            repr(expires),
            limit,
            chosen,
            int(token is not None),
            *[t.value for t in types],
        )
        tasks = sorted((_task(row) for row in rows), key=lambda t: t.id)
        self._changed(t.id for t in tasks)
        return [Lease(t, chosen, t.lease_expires_at or expires) for t in tasks]

    async def extend_lease(
        self,
        task_id: int,
        token: str,
        expires_at: float,
        now: float,
        *,
        count_attempt: bool = False,
    ) -> bool:
        attempt = "1" if count_attempt else "0"
        extended = await self._run("extend", now, task_id, token, repr(expires_at), attempt)
        self._changed((task_id,))
        return bool(extended)

    async def held_image(self, task_id: int, token: str, now: float) -> bytes | None:
        image = await self._run("held_image", now, task_id, token)
        return image if isinstance(image, bytes) and image else None

    async def complete(
        self, task_id: int, token: str, solution: Solution, solver: str, now: float
    ) -> bool:
        done = await self._run("complete", now, task_id, token, _encoder.encode(solution), solver)
        self._changed((task_id,))
        return bool(done)

    async def fail(
        self,
        task_id: int,
        token: str,
        code: ErrorCode,
        description: str,
        solver: str,
        now: float,
        *,
        retry: bool,
        max_attempts: int,
    ) -> bool:
        done = await self._run(
            "fail",
            now,
            task_id,
            token,
            code.value,
            description,
            solver,
            int(retry),
            max_attempts,
        )
        self._changed((task_id,))
        return bool(done)

    async def requeue_expired_leases(self, now: float, max_attempts: int) -> list[int]:
        moved = sorted(int(i) for i in await self._run("requeue_expired", now, max_attempts))
        self._changed(moved)
        return moved

    async def fail_overdue(self, now: float) -> list[int]:
        failed = sorted(int(i) for i in await self._run("fail_overdue", now))
        self._changed(failed)
        return failed

    async def purge(self, now: float, limit: int) -> int:
        purged = int(await self._run("purge", now, limit))
        if purged and self._tracked is not None:
            self._tracked.clear()
        return purged

    async def hold_maintenance(self, holder: str, seconds: float) -> bool:
        ms = max(1, int(seconds * 1000))
        return bool(await self._run("hold_maintenance", None, holder, ms))

    async def in_flight(self, key_id: int) -> int:
        # Never below 0: a counter made too low (by hand, or by a node of the old layout
        # still running) is counted again at the next start (redis_schema.RECOUNT).
        return max(0, int(await self.redis.hget(f"{P}:key:{key_id}", "inflight") or 0))

    async def queue_depth(self) -> int:
        return int(await self._run("queue_depth", None, *(t.value for t in TaskType)))

    async def spending(self, key_id: int, since: float, until: float) -> list[Spending]:
        # Hours that start in [since, until), no further back than the ledger keeps.
        since = max(since, until - SPENDING_KEEP_SECONDS - HOUR)
        hours = range(math.ceil(since / HOUR) * HOUR, math.ceil(until), HOUR)
        async with self.redis.pipeline(transaction=False) as pipe:
            for hour in hours:
                pipe.hgetall(f"{P}:spend:{key_id}:{hour}")
            ledgers = cast(list[dict[bytes, bytes]], await pipe.execute())
        lines: dict[tuple[int, str, str, str], list[int]] = {}
        for hour, ledger in zip(hours, ledgers, strict=True):
            for field, value in ledger.items():
                type_, ip, soft_id = _ledger_line.decode(field[1:])
                line = lines.setdefault((hour, type_, ip, soft_id), [0, 0])
                line[field[:1] == b"m"] += int(value)
        return [
            Spending(hour, TaskType(type_), ip, soft_id, volume, money)
            for (hour, type_, ip, soft_id), (volume, money) in sorted(lines.items())
        ]

    # --- sites (SiteStore) ------------------------------------------------------------

    async def add_site_label(
        self, site: str, task_id: int, image: bytes, text: str, now: float, keep: int
    ) -> int:
        assert len(site) <= 255, "a site name is at most 255 characters"
        return int(await self._run("add_site_label", now, site, task_id, image, text, keep))

    async def forget_site_label(self, site: str, task_id: int) -> bool:
        return bool(await self._run("forget_site_label", None, site, task_id))

    async def site_labels(self, site: str) -> list[SiteLabel]:
        # One read of the fields hash: a label's fields are written together.
        data = cast(dict[bytes, bytes], await self.redis.hgetall(f"{P}:labeldata:{site}"))
        ids = sorted(int(field[1:]) for field in data if field[:1] == b"i")
        return [
            SiteLabel(
                i,
                data[b"i%d" % i],
                data[b"t%d" % i].decode(),
                float(data[b"c%d" % i]),
            )
            for i in ids
        ]

    async def publish_model(
        self,
        site: str,
        onnx: bytes,
        spec: bytes,
        threshold: float,
        precision: float,
        scores: Mapping[str, Any],
        now: float,
        reason: str,
        labels: int,
    ) -> SiteModel:
        assert len(site) <= 255, "a site name is at most 255 characters"
        version, at = await self._run(
            "publish_model",
            now,
            site,
            onnx,
            spec,
            repr(threshold),
            repr(precision),
            _encoder.encode(scores),
            reason,
            labels,
        )
        return SiteModel(site, int(version), SERVING, float(at), threshold, precision, dict(scores))

    async def reject_candidate(self, site: str, reason: str, now: float, labels: int) -> None:
        assert len(site) <= 255, "a site name is at most 255 characters"
        await self._run("reject_candidate", now, site, reason, labels)

    async def demote_model(self, site: str, version: int, reason: str, now: float) -> bool:
        return bool(await self._run("demote_model", now, site, version, reason))

    async def serving_models(self) -> dict[str, SiteModel]:
        rows = await self._run("serving_models", None)
        models = (
            _site_model(site.decode(), int(version), fields) for site, version, fields in rows
        )
        return {model.site: model for model in models}

    async def site_models(self, site: str) -> list[SiteModel]:
        rows = await self._run("site_models", None, site)
        return [_site_model(site, int(version), fields) for version, fields in rows]

    async def model_files(self, site: str, version: int) -> tuple[bytes, bytes] | None:
        found = await self.redis.hmget(f"{P}:files:{site}", f"o{version}", f"s{version}")
        onnx, spec = cast(list[bytes | None], found)
        return None if onnx is None or spec is None else (onnx, spec)

    async def site_history(self, site: str, limit: int = 50) -> list[SiteEvent]:
        if limit <= 0:
            return []
        lines = cast(list[bytes], await self.redis.lrange(f"{P}:history:{site}", 0, limit - 1))
        return [
            SiteEvent(site, float(at), kind, version, reason, labels)
            for at, kind, version, reason, labels in map(_event.decode, lines)
        ]

    async def count_answer(self, site: str, local: bool, by_model: bool, saved: int) -> None:
        assert len(site) <= 255, "a site name is at most 255 characters"
        await self._run("count_answer", None, site, int(local), int(by_model), saved)

    async def record_audit(
        self, site: str, version: int, agreed: bool, now: float, window: int, report: bool
    ) -> list[bool]:
        assert len(site) <= 255, "a site name is at most 255 characters"
        outcomes = await self._run(
            "record_audit", None, site, version, int(agreed), window, int(report)
        )
        return [outcome == b"1" for outcome in outcomes]

    async def site_counters(self) -> list[SiteCounters]:
        rows = await self._run("site_counters", None)
        counters = []
        for site, labels, flat in rows:
            fields = dict(zip(flat[::2], flat[1::2], strict=True))

            def count(name: bytes, fields: dict[bytes, bytes] = fields) -> int:
                return int(fields.get(name, 0))

            counters.append(
                SiteCounters(
                    site.decode(),
                    int(labels),
                    count(b"local"),
                    count(b"upstream"),
                    count(b"by_model"),
                    count(b"saved"),
                    count(b"audits"),
                    count(b"audits_agreed"),
                    count(b"reported_wrong"),
                )
            )
        return sorted(counters, key=lambda c: c.site)

    async def hold_lock(self, name: str, holder: str, seconds: float, now: float) -> bool:
        return bool(await self._run("hold_lock", now, name, holder, repr(seconds)))

    async def release_lock(self, name: str, holder: str) -> None:
        await self._run("release_lock", None, name, holder)


def _site_model(site: str, version: int, flat: list[bytes]) -> SiteModel:
    """A version from its hash's fields (HGETALL's flat list)."""
    f = dict(zip(flat[::2], flat[1::2], strict=True))
    return SiteModel(
        site,
        version,
        f[b"state"].decode(),
        float(f[b"created_at"]),
        float(f[b"threshold"]),
        float(f[b"precision"]),
        _params.decode(f[b"scores"]),
    )


def _connection_class(base: type[Any]) -> type[Any]:
    """The pool's connection class (TCP or Unix socket) with two changes.

    Commands are packed by hiredis' C packer, as redis-py's own sync client does; its
    asyncio client packs in Python, about 35 µs for a create with a 2 KB image against 5.

    A connection that fails its health check (Redis restarted since it was last used) is
    replaced at once, and the command goes on over the new one. Nothing of the command has
    been sent at that point, so this is no retry; without it each connection the pool
    held across a restart failed one command, and a solved task whose answer met one
    waited for its lease to run out.
    """

    def pack_command(self: Any, *args: Any) -> list[bytes]:
        # As redis-py does: a command name with spaces ("CLIENT SETNAME") is several words.
        if isinstance(args[0], str):
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        return [hiredis.pack_command(args)]

    async def check_health(self: Any) -> None:
        try:
            await base.check_health(self)
        except (RedisConnectionError, RedisTimeoutError):
            await self.disconnect()
            await self.connect()  # still down: this raises, and the command fails

    name = f"Capgate{base.__name__}"
    return type(name, (base,), {"pack_command": pack_command, "check_health": check_health})


def _key(fields: dict[bytes, bytes]) -> Key:
    text = {k.decode(): v.decode() for k, v in fields.items()}
    return Key(
        id=int(text["id"]),
        name=text["name"],
        key_hash=bytes.fromhex(text["key_hash"]),
        balance=int(text["balance"]),
        spent=int(text["spent"]),
        created_at=float(text["created_at"]),
        dialect=text["dialect"] or None,
        worker=text["worker"] == "1",
        # Keys made before these counters existed have none yet.
        solved=int(text.get("solved", 0)),
        refunds=int(text.get("refunds", 0)),
        allow_ips=text["allow_ips"].split(",") if text.get("allow_ips") else [],
        site=text.get("site") or None,
    )


def _task(flat: list[bytes]) -> Task:
    return _task_from_dict(dict(zip(flat[::2], flat[1::2], strict=True)))


def _task_from_fields(task_id: int, values: list[bytes | None]) -> Task:
    """A task from its FIELDS, in order (a script's `view`, or HMGET)."""
    present = zip(_BYTE_FIELDS, values, strict=True)
    fields = {name: value for name, value in present if value is not None}
    fields[b"id"] = b"%d" % task_id
    return _task_from_dict(fields)


def _float(value: bytes | None) -> float | None:
    return float(value) if value else None


def _task_from_dict(raw: dict[bytes, bytes]) -> Task:
    f = {k.decode(): v for k, v in raw.items()}

    def text(name: str) -> str | None:
        value = f.get(name)
        return value.decode() if value else None

    solution = f.get("solution")
    error_code = text("error_code")
    verdict = text("verdict")
    return Task(
        id=int(f["id"]),
        key_id=int(f["key_id"]),
        type=TaskType(f["type"].decode()),
        params=_params.decode(f["params"]),
        body=f.get("body") or None,
        status=TaskStatus(int(f["status"])),
        created_at=float(f["created_at"]),
        deadline_at=float(f["deadline_at"]),
        cost=int(f["cost"]),
        ip=f["ip"].decode(),
        expires_at=float(f["expires_at"]),
        started_at=_float(f.get("started_at")),
        finished_at=_float(f.get("finished_at")),
        attempts=int(f["attempts"]),
        polls=int(f.get("polls", 0)),
        solver=text("solver"),
        solution=_solution.decode(solution) if solution else None,
        error_code=ErrorCode(error_code) if error_code else None,
        error_description=text("error_description"),
        lease_token=text("lease_token"),
        lease_expires_at=_float(f.get("lease_expires_at")),
        verdict=None if verdict is None else verdict == "1",
    )
