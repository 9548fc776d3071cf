"""Receipts: one per (alert, recipient, channel), moved by one forward-only state machine.

Every change is a Lua script over one alert's keys (``{alert id}`` hash tag): the receipt,
its history and the alert's per-channel, per-state counters change in the same atomic step,
and one script call handles a whole batch of receipts. A receipt is stored as compact JSON in
the alert's ``receipts`` hash under its number; its public id is ``<alert id>.<number>``.

Stored fields: ``c`` channel, ``to`` address, ``who`` recipient id, ``name``, ``rg`` region,
``s`` state, ``a`` attempts started, ``t`` last change (unix s), ``e`` last error,
``p`` provider message id, ``h`` history ``[[state, time, note], ...]``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from dispatcher.keys import Keys

# Which state may follow which. Anything not listed is refused, so a late or repeated
# provider callback can never move a receipt backwards.
NEXT: dict[str, tuple[str, ...]] = {
    "queued": ("sending", "sent", "delivered", "acknowledged", "failed", "undeliverable", "cancelled", "expired"),
    "sending": ("sent", "delivered", "acknowledged", "failed", "cancelled", "expired"),
    "sent": ("delivered", "acknowledged", "failed"),
    "delivered": ("acknowledged",),
    "failed": ("acknowledged",),
    "acknowledged": (),
    "undeliverable": (),
    "cancelled": (),
    "expired": (),
}
OPEN_STATES = ("queued", "sending")


def receipt_id(alert_id: str, number: int | str) -> str:
    return f"{alert_id}.{number}"


def parse_receipt_id(rid: str) -> tuple[str, int]:
    alert_id, _, number = rid.rpartition(".")
    if not alert_id or not number.isdigit():
        raise ValueError(f"not a receipt id: {rid!r}")
    return alert_id, int(number)


def _lua_next_table() -> str:
    rows = []
    for state, nexts in NEXT.items():
        rows.append(f"{state}={{" + ",".join(f"{n}=true" for n in nexts) + "}")
    return "local NEXT = {" + ",".join(rows) + "}\n"


# Shared by every script: KEYS[1] alert hash, KEYS[2] receipts hash, KEYS[3] counters hash.
_LUA_COMMON = _lua_next_table() + r"""
local alert_key, receipts_key, counts_key = KEYS[1], KEYS[2], KEYS[3]
local function move(r, to, now, note)
  local from = r.s
  if from then
    redis.call('HINCRBY', counts_key, r.c .. ':' .. from, -1)
    redis.call('HINCRBY', counts_key, '*:' .. from, -1)
  end
  redis.call('HINCRBY', counts_key, r.c .. ':' .. to, 1)
  redis.call('HINCRBY', counts_key, '*:' .. to, 1)
  r.s = to
  r.t = now
  local h = r.h or {}
  h[#h + 1] = {to, now, note or false}
  r.h = h
end
local function settle()
  local a = redis.call('HMGET', alert_key, 'state', 'planned')
  if a[1] ~= 'dispatching' or a[2] ~= '1' then return end
  local c = redis.call('HMGET', counts_key, '*:queued', '*:sending', '*:expired', '*:sent', '*:delivered', '*:acknowledged')
  if (tonumber(c[1]) or 0) + (tonumber(c[2]) or 0) > 0 then return end
  local reached = (tonumber(c[4]) or 0) + (tonumber(c[5]) or 0) + (tonumber(c[6]) or 0)
  local final = 'settled'
  if (tonumber(c[3]) or 0) > 0 and reached == 0 then final = 'expired' end
  redis.call('HSET', alert_key, 'state', final, 'settled_at', ARGV[1])
end
"""

# ARGV[1] now, ARGV[2] JSON list of new receipts [n, channel, to, who, name, region, state].
# Creates those that do not exist yet. Returns the numbers to enqueue: every receipt that is
# queued and not yet attempted, so that planning an alert again after a crash loses none.
_CREATE = _LUA_COMMON + r"""
local now = tonumber(ARGV[1])
local out = {}
for _, it in ipairs(cjson.decode(ARGV[2])) do
  local n = tostring(it[1])
  local raw = redis.call('HGET', receipts_key, n)
  if raw then
    local r = cjson.decode(raw)
    if r.s == 'queued' and r.a == 0 then out[#out + 1] = n end
  else
    local r = {c = it[2], to = it[3], who = it[4], name = it[5], rg = it[6], a = 0}
    move(r, it[7], now, it[8])
    redis.call('HSET', receipts_key, n, cjson.encode(r))
    if it[7] == 'queued' then out[#out + 1] = n end
  end
end
return out
"""

# ARGV[1] now, ARGV[2] 1 when these messages were reclaimed from a dead worker,
# then pairs (number, attempt the message is for). Claims receipts for sending.
# Returns [number, receipt JSON, ...] for each receipt to send now; the rest were already
# sent (a duplicate message), or ended here as cancelled or expired.
_BEGIN = _LUA_COMMON + r"""
local now = tonumber(ARGV[1])
local reclaimed = ARGV[2] == '1'
local a = redis.call('HMGET', alert_key, 'cancelled', 'expires_at')
local cancelled = a[1] and a[1] ~= ''
local expires_at = tonumber(a[2])
local out = {}
for i = 3, #ARGV, 2 do
  local n, attempt = ARGV[i], tonumber(ARGV[i + 1])
  local raw = redis.call('HGET', receipts_key, n)
  if raw then
    local r = cjson.decode(raw)
    if r.s == 'queued' or r.s == 'sending' then
      local send = false
      if cancelled then
        move(r, 'cancelled', now, 'alert cancelled')
      elseif expires_at and now >= expires_at then
        move(r, 'expired', now, false)
      elseif r.a == attempt then
        r.a = attempt + 1
        r.retry_at = nil
        if r.s == 'queued' then move(r, 'sending', now, false) else r.t = now end
        send = true
      elseif reclaimed and r.a == attempt + 1 and r.s == 'sending' then
        send = true  -- its worker died mid-send: whether it went out is unknown, send again
      end
      if r.s ~= 'sending' or send then
        raw = cjson.encode(r)
        redis.call('HSET', receipts_key, n, raw)
      end
      if send then out[#out + 1] = n; out[#out + 1] = raw end
    end
  end
end
settle()
return out
"""

# ARGV[1] now, then triples (number, state, JSON of fields to set: e, p, retry_at, ...).
# A state equal to the current one only updates the fields (a failed attempt that will be
# retried stays 'sending'). Returns 1 or 0 per triple: applied or refused.
_APPLY = _LUA_COMMON + r"""
local now = tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV, 3 do
  local n, to = ARGV[i], ARGV[i + 1]
  local fields = cjson.decode(ARGV[i + 2])
  local raw = redis.call('HGET', receipts_key, n)
  local ok = 0
  if raw then
    local r = cjson.decode(raw)
    if r.s == to or NEXT[r.s][to] then
      for k, v in pairs(fields) do if k ~= 'note' then r[k] = v end end
      if r.s == to then r.t = now else move(r, to, now, fields.note or fields.e or false) end
      redis.call('HSET', receipts_key, n, cjson.encode(r))
      ok = 1
    end
  end
  out[#out + 1] = ok
end
settle()
return out
"""

# ARGV[1] now, ARGV[2] target end state, ARGV[3] note, ARGV[4] first number, ARGV[5] last.
# Ends every receipt in the range that is queued or waiting for a retry (cancel, expiry);
# one being sent right now is left to record how that send went. Returns how many it ended.
_SWEEP = _LUA_COMMON + r"""
local now, to, note = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local ended = 0
for n = tonumber(ARGV[4]), tonumber(ARGV[5]) do
  local raw = redis.call('HGET', receipts_key, tostring(n))
  if raw then
    local r = cjson.decode(raw)
    if r.s == 'queued' or (r.s == 'sending' and r.retry_at) then
      move(r, to, now, note)
      redis.call('HSET', receipts_key, tostring(n), cjson.encode(r))
      ended = ended + 1
    end
  end
end
settle()
return ended
"""

# ARGV[1] now, then field/value pairs to set on the alert; then settle (used once planning ends).
# A cancelled alert keeps its state whatever else is marked on it.
_MARK = _LUA_COMMON + r"""
local current = redis.call('HGET', alert_key, 'state')
for i = 2, #ARGV, 2 do
  if ARGV[i] ~= 'state' or current ~= 'cancelled' then redis.call('HSET', alert_key, ARGV[i], ARGV[i + 1]) end
end
settle()
return redis.call('HGET', alert_key, 'state')
"""


@dataclass(frozen=True, slots=True)
class NewReceipt:
    number: int
    channel: str
    address: str
    recipient: str
    name: str
    region: str
    state: str = "queued"
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """A state change asked of one receipt, with the fields to record."""

    number: int
    state: str
    fields: dict


class ReceiptBook:
    """The receipt state machine over Redis. Every method is one script call per batch."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._create = redis.register_script(_CREATE)
        self._begin = redis.register_script(_BEGIN)
        self._apply = redis.register_script(_APPLY)
        self._sweep = redis.register_script(_SWEEP)
        self._mark = redis.register_script(_MARK)

    async def create(self, alert_id: str, receipts: Sequence[NewReceipt], now: float) -> list[int]:
        rows = [[r.number, r.channel, r.address, r.recipient, r.name, r.region, r.state, r.note or False]
                for r in receipts]
        out = await self._create(self.keys.alert_keys(alert_id), [now, json.dumps(rows, ensure_ascii=False)])
        return [int(n) for n in out]

    async def begin(
        self, alert_id: str, claims: Iterable[tuple[int, int]], now: float, *, reclaimed: bool = False
    ) -> list[tuple[int, dict]]:
        args: list = [now, 1 if reclaimed else 0]
        for number, attempt in claims:
            args += [number, attempt]
        out = await self._begin(self.keys.alert_keys(alert_id), args)
        return [(int(out[i]), json.loads(out[i + 1])) for i in range(0, len(out), 2)]

    async def apply(self, alert_id: str, changes: Sequence[Change], now: float) -> list[bool]:
        args: list = [now]
        for c in changes:
            args += [c.number, c.state, json.dumps(c.fields or {}, ensure_ascii=False)]
        out = await self._apply(self.keys.alert_keys(alert_id), args)
        return [bool(x) for x in out]

    async def sweep(self, alert_id: str, state: str, note: str, first: int, last: int, now: float) -> int:
        return int(await self._sweep(self.keys.alert_keys(alert_id), [now, state, note, first, last]))

    async def mark(self, alert_id: str, now: float, **fields: object) -> str | None:
        args: list = [now]
        for k, v in fields.items():
            args += [k, v]
        state = await self._mark(self.keys.alert_keys(alert_id), args)
        return state.decode() if isinstance(state, bytes) else state

    async def get(self, alert_id: str, number: int) -> dict | None:
        raw = await self.redis.hget(self.keys.receipts(alert_id), str(number))
        return json.loads(raw) if raw else None

    async def page(self, alert_id: str, start: int, count: int) -> list[tuple[int, dict]]:
        numbers = list(range(start, start + count))
        raws = await self.redis.hmget(self.keys.receipts(alert_id), [str(n) for n in numbers])
        return [(n, json.loads(raw)) for n, raw in zip(numbers, raws) if raw]

    async def counts(self, alert_id: str) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
        raw = await self.redis.hgetall(self.keys.counts(alert_id))
        per_channel: dict[str, dict[str, int]] = {}
        totals: dict[str, int] = {}
        for key, value in raw.items():
            key = key.decode() if isinstance(key, bytes) else key
            n = int(value)
            if n == 0:
                continue
            channel, _, state = key.rpartition(":")
            if channel == "*":
                totals[state] = n
            else:
                per_channel.setdefault(channel, {})[state] = n
        return per_channel, totals


def receipt_view(alert_id: str, number: int, r: dict) -> dict:
    """The public shape of a stored receipt."""
    return {
        "id": receipt_id(alert_id, number),
        "alert_id": alert_id,
        "channel": r["c"],
        "recipient": r["who"],
        "name": r["name"],
        "region": r["rg"],
        "address": r["to"],
        "state": r["s"],
        "attempts": r["a"],
        "updated_at": r["t"],
        "error": r.get("e") or None,
        "provider_id": r.get("p") or None,
        "history": [{"state": s, "at": t, **({"note": n} if n else {})} for s, t, n in r["h"]],
    }
