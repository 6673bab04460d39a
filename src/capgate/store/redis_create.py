"""Creating tasks in Redis: creates that meet in time share one script call.

A create used to be a script call of its own, about 80 µs of Redis' CPU, of which the
writes themselves were a third. The rest went to running a script at all (its call, its
arguments made Lua strings, the shared prelude every script defines), to turning numbers
into text and back (every Lua number handed to Redis is printed with `%.17g`, every score
parsed again), and to writes that only the queue depth or the in-flight count needed.

Here a node's creates go to Redis in calls of CREATE (CreateBatcher): those its requests
start in one event-loop turn, and those that come while its previous call is on its way,
at most MAX_BATCH (or MAX_BATCH_BYTES of arguments) a call, on the connection that polls
and creates share. The script decides every create of a batch in order, each exactly as
a script of its own would (the idempotency key, the in-flight limit, the balance), then
writes them, so the batch changes nothing a caller can see: Redis runs a script whole, so
each create is still atomic with its debit. A batch pays once for what every create used
to pay for: the call, the clock (`TIME`), each key's account (read once, written once),
each queue's set of keys, the id counter. The times are text made once per batch (on
Redis' clock, every create of a batch was made at the same moment, and most share their
deadline and retention), never per create. A create that meets no other costs about as
much as before (see benchmarks/redis_create.py): the saving grows with the batches, and
the batches with the load, since the busier Redis the longer a call is on its way.

What a create writes (the data layout of schema 2, see redis_schema): the task's hash
(its fields, no `id`, `polls` or empty idempotency fields: readers know the id and count
missing polls as none), its expiry, its key's queue, the deadline and retention indexes,
and the idempotency key if any; the key's account counts its tasks in flight in a field
(`inflight`), where there used to be a set to add to and count.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from capgate.model import TaskSpec

# A task's fields as callers read them: every field but the image (and the id, which the
# reader knows), in the order of the scripts' `view` and of HMGET.
FIELDS = (
    "key_id",
    "type",
    "params",
    "status",
    "created_at",
    "deadline_at",
    "cost",
    "ip",
    "expires_at",
    "started_at",
    "finished_at",
    "attempts",
    "polls",
    "solver",
    "solution",
    "error_code",
    "error_description",
    "lease_token",
    "lease_expires_at",
    "verdict",
)
LUA_FIELDS = ", ".join(f"'{name}'" for name in FIELDS)

# The arguments of one create, in order (see CREATE).
CREATE_ARITY = 13
MAX_BATCH = 128
MAX_BATCH_BYTES = 4 << 20

# ARGV: prefix, server time on ('1'), the number of creates, then CREATE_ARITY arguments
# for each: key id, type, params (JSON), image ('' for none), cost, ip, then the caller's
# now, deadline and expiry (on Redis' clock: the deadline and expiry as seconds after the
# caller's now, and no now), the expiry of the task's hash in ms, the idempotency key and
# fingerprint ('' for none), the in-flight limit (0 for none).
# The answer: the creates' time (on Redis' clock; '' otherwise), then one entry for each
# create: its new id, or {'ok', earlier id, fields} (a replay), {'conflict'}, {'busy'} or
# {'zero'}.
CREATE = """
local P, server_time, n = ARGV[1], ARGV[2] == '1', tonumber(ARGV[3])
local T, created = 0, nil
if server_time then
  local t = redis.call('TIME')
  T = tonumber(t[1]) + tonumber(t[2]) / 1000000
  created = string.format('%.17g', T)
end
-- A time given as seconds after the caller's now, on Redis' clock, as text (made once).
local times = {}
local function on_clock(seconds)
  local text = times[seconds]
  if text == nil then
    text = string.format('%.17g', T + tonumber(seconds))
    times[seconds] = text
  end
  return text
end
local FIELDS = {%FIELDS%}
local seq = KEYS[1]
local last = tonumber(redis.call('GET', seq) or '0')
-- First every create's outcome, by reads alone; then the counters (ids, balances, counts
-- in flight); then the new tasks. An error while deciding writes nothing, and Redis
-- refuses a script for want of memory at its first write only (the id counter's), so a
-- batch is written whole or not at all: never half, with ids to be given twice.
local made, accounts, made_with, plan, replays, out = 0, {}, {}, {}, {}, {}
for c = 0, n - 1 do
  local i = 4 + c * %ARITY%
  local key_id, idem_key, idem_hash = ARGV[i], ARGV[i + 10], ARGV[i + 11]
  local result, idem
  if idem_key ~= '' then
    idem = P .. ':idem:' .. key_id .. ':' .. idem_key
    local mine = made_with[idem]  -- made by an earlier create of this batch
    if mine then
      if mine[2] == idem_hash then
        result = {'ok', mine[1]}
        replays[#replays + 1] = c + 1
      else
        result = {'conflict'}
      end
    else
      local earlier = redis.call('GET', idem)
      if earlier then
        -- No fingerprint: the task is gone (Redis expired it), and the key is free again.
        local t = P .. ':task:' .. earlier
        local fingerprint = redis.call('HGET', t, 'idem_hash')
        if fingerprint == idem_hash then
          result = {'ok', earlier, redis.call('HMGET', t, unpack(FIELDS))}
        elseif fingerprint then
          result = {'conflict'}
        end
      end
    end
  end
  if result == nil then
    -- The key's account, read once a batch: balance, in flight, debit, created.
    local account = accounts[key_id]
    if account == nil then
      local f = redis.call('HMGET', P .. ':key:' .. key_id, 'balance', 'inflight')
      account = {tonumber(f[1]) or 0, math.max(0, tonumber(f[2]) or 0), 0, 0}
      accounts[key_id] = account
    end
    local price, cap = tonumber(ARGV[i + 4]), tonumber(ARGV[i + 12])
    if cap > 0 and account[2] >= cap then
      result = {'busy'}
    elseif price > 0 and account[1] < price then
      result = {'zero'}
    else
      account[1], account[2] = account[1] - price, account[2] + 1
      account[3], account[4] = account[3] + price, account[4] + 1
      made = made + 1
      result = string.format('%d', last + made)
      plan[made] = {i, result, idem}
      if idem then made_with[idem] = {result, idem_hash} end
    end
  end
  out[c + 1] = result
end
if made == 0 then return {created or '', out} end
redis.call('INCRBY', seq, made)
for key_id, account in pairs(accounts) do
  if account[4] > 0 then
    local key = P .. ':key:' .. key_id
    if account[3] > 0 then redis.call('HINCRBY', key, 'balance', -account[3]) end
    -- The count as read (never below 0) and the tasks made: a counter left too low is
    -- mended by the next create, not carried on.
    redis.call('HSET', key, 'inflight', account[2])
  end
end
local listed = {}
local unfinished, expiring = P .. ':unfinished', P .. ':expiring'
for _, entry in ipairs(plan) do
  local i, id, idem = entry[1], entry[2], entry[3]
  local key_id, typ, params, body = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local cost, ip, now, deadline = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
  local expires, ttl = ARGV[i + 8], ARGV[i + 9]
  local t = P .. ':task:' .. id
  if server_time then
    now, deadline, expires = created, on_clock(deadline), on_clock(expires)
  end
  local extra = {}
  if body ~= '' then extra[1], extra[2] = 'body', body end
  if idem then
    extra[#extra + 1], extra[#extra + 2] = 'idem_key', ARGV[i + 10]
    extra[#extra + 1], extra[#extra + 2] = 'idem_hash', ARGV[i + 11]
  end
  redis.call('HSET', t, 'key_id', key_id, 'type', typ, 'params', params, 'status', '0',
    'created_at', now, 'deadline_at', deadline, 'cost', cost, 'ip', ip,
    'expires_at', expires, 'attempts', '0', unpack(extra))
  -- Retention by Redis expiry as well as by the sweep: an hour after the sweep would
  -- have purged it, Redis drops the task even if no node is running.
  redis.call('PEXPIRE', t, ttl)
  local queue = P .. ':kq:' .. typ .. ':' .. key_id
  redis.call('ZADD', queue, id, id)
  if listed[queue] == nil then
    redis.call('SADD', P .. ':qkeys:' .. typ, key_id)
    listed[queue] = true
  end
  redis.call('ZADD', unfinished, deadline, id)
  redis.call('ZADD', expiring, expires, id)
  if idem then redis.call('SET', idem, id, 'PX', ttl) end
end
-- Replays of a task made earlier in this batch: its fields, now that it is written.
for _, c in ipairs(replays) do
  local entry = out[c]
  entry[3] = redis.call('HMGET', P .. ':task:' .. entry[2], unpack(FIELDS))
end
return {created or '', out}
""".replace("%FIELDS%", LUA_FIELDS).replace("%ARITY%", str(CREATE_ARITY))


def create_arguments(
    key_id: int,
    spec: TaskSpec,
    params: bytes,
    cost: int,
    ip: str,
    now: float,
    deadline_at: float,
    expires_at: float,
    idempotency: tuple[str, bytes] | None,
    max_in_flight: int,
    server_time: bool,
) -> list[Any]:
    """One create's CREATE_ARITY arguments of CREATE."""
    if server_time:  # Redis' clock: seconds after the caller's now, made exact by Redis
        times = ["", repr(deadline_at - now), repr(expires_at - now)]
    else:
        times = [repr(now), repr(deadline_at), repr(expires_at)]
    return [
        key_id,
        spec.type.value,
        params,
        spec.body or b"",
        cost,
        ip,
        *times,
        math.floor((expires_at - now + 3600) * 1000),
        idempotency[0] if idempotency else "",
        idempotency[1].hex() if idempotency else "",
        max_in_flight,
    ]


def batch_size(arguments: Sequence[Any]) -> int:
    """About how many bytes one create adds to a batch."""
    return sum(len(a) for a in arguments if isinstance(a, bytes | str)) + 64


_Entry = tuple[list[Any], asyncio.Future[tuple[bytes, Any]]]


class CreateBatcher:
    """Collects creates and sends them as one CREATE call: those of one event-loop turn,
    and those that come while the batch before is on its way.

    One batch is on its way at a time. A create that finds none sends its batch once its
    turn ends (a lone create waits for nothing more); the creates that come while one is on
    its way go together as soon as its answer is in. The busier Redis, the longer an answer
    takes and the larger the next batch, so that what a create costs Redis falls as Redis
    fills up, whatever the number of nodes and however their requests are spread in time.

    `send` runs CREATE with the arguments of a batch (prefix and flags first) and returns
    its answer. Each create waits for its own entry of the answer; an error (the call's, or
    a lost connection) goes to every create of the batch. A create is sent whatever becomes
    of its caller: a caller that went away finds its task created, as when it had sent a
    script of its own.
    """

    def __init__(self, send: Callable[[list[Any], int], Awaitable[Any]]) -> None:
        self._send = send
        self._pending: list[_Entry] = []
        self._scheduled = False  # a _flush is coming
        self._sending = False  # a batch is on its way

    async def create(self, arguments: list[Any]) -> tuple[bytes, Any]:
        """Queue one create (its CREATE_ARITY arguments); its time text and its entry."""
        answer: asyncio.Future[tuple[bytes, Any]] = asyncio.get_running_loop().create_future()
        self._pending.append((arguments, answer))
        self._wake()
        return await answer

    def _wake(self) -> None:
        if self._pending and not self._scheduled and not self._sending:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Send the oldest pending creates, at most MAX_BATCH (or MAX_BATCH_BYTES)."""
        self._scheduled = False
        batch: list[_Entry] = []
        size = 0
        for entry in self._pending:
            weight = batch_size(entry[0])
            if batch and (len(batch) == MAX_BATCH or size + weight > MAX_BATCH_BYTES):
                break
            batch.append(entry)
            size += weight
        del self._pending[: len(batch)]
        self._sending = True
        job = asyncio.ensure_future(self._run(batch))
        _running.add(job)
        job.add_done_callback(_running.discard)

    async def _run(self, batch: list[_Entry]) -> None:
        arguments = [a for entry in batch for a in entry[0]]
        try:
            created, results = await self._send(arguments, len(batch))
        except Exception as exc:
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(exc)
            return
        except BaseException:
            for _, answer in batch:
                answer.cancel()
            raise
        finally:
            self._sending = False
            self._wake()
        for (_, answer), result in zip(batch, results, strict=True):
            if not answer.done():
                answer.set_result((created, result))


# Batches on their way: a reference to each, so none is collected before it ends.
_running: set[asyncio.Future[None]] = set()
