"""Receipts: one per (alert, recipient, channel), moved by one forward-only state machine.

Every change is a Lua script over one alert's keys (``{alert id}`` hash tag): the receipt's
status, its history and the alert's per-channel, per-state counters change in the same atomic
step, and one script call handles a whole batch of receipts. A receipt's public id is
``<alert id>.<number>``; under its number in the alert's ``receipts`` hash it is one string
that a script reads and writes with one call each and without a JSON parser:

    channel TAB state TAB attempts TAB last change TAB retry at TAB provider id TAB last error
        TAB {"to", "who", "name", "rg"} (address, recipient id, name, region: JSON, written once)
    state TAB time TAB note          (one history line per state reached)
    ...
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


# Shared by every script: KEYS alert, receipts and counters of one alert.
# Counter changes are summed in ``delta`` and written once per call by ``flush``.
_LUA_COMMON = _lua_next_table() + r"""
local alert_key, receipts_key, counts_key = KEYS[1], KEYS[2], KEYS[3]
local delta = {}
local function bump(key, by) delta[key] = (delta[key] or 0) + by end
local function clean(v)
  if not v or v == cjson.null then return '' end
  return (string.gsub(tostring(v), '[\t\n]', ' '))
end
local function load(n)
  local raw = redis.call('HGET', receipts_key, n)
  if not raw then return nil end
  local nl = string.find(raw, '\n', 1, true)
  local head, h = raw, ''
  if nl then head, h = string.sub(raw, 1, nl - 1), string.sub(raw, nl + 1) end
  local c, s, a, t, ra, p, e, who = string.match(head,
    '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$')
  return {n = n, c = c, s = s, a = tonumber(a), t = t, ra = ra, p = p, e = e, who = who, h = h}
end
local function save(r)
  local head = table.concat({r.c, r.s, r.a, r.t, r.ra, r.p, r.e, r.who}, '\t')
  redis.call('HSET', receipts_key, r.n, head .. '\n' .. r.h)
end
local function move(r, to, now, note)
  if r.s then
    bump(r.c .. ':' .. r.s, -1)
    bump('*:' .. r.s, -1)
  end
  bump(r.c .. ':' .. to, 1)
  bump('*:' .. to, 1)
  r.s = to
  r.t = now
  local line = to .. '\t' .. now .. '\t' .. clean(note)
  r.h = (r.h == '' and line) or (r.h .. '\n' .. line)
end
local function flush()
  for key, by in pairs(delta) do
    if by ~= 0 then redis.call('HINCRBY', counts_key, key, by) end
  end
end
local function settle()
  flush()
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

# ARGV[1] now, ARGV[2] JSON list of new receipts [n, channel, who-and-where JSON, state, note].
# Creates those that do not exist yet. Returns the numbers to enqueue: every receipt that is
# queued and not yet attempted, so that planning an alert again after a crash loses none.
_CREATE = _LUA_COMMON + r"""
local now = ARGV[1]
local out = {}
for _, it in ipairs(cjson.decode(ARGV[2])) do
  local n = tostring(it[1])
  local r = load(n)
  if r then
    if r.s == 'queued' and r.a == 0 then out[#out + 1] = n end
  else
    r = {n = n, c = it[2], a = 0, ra = '', p = '', e = '', who = it[3], h = ''}
    move(r, it[4], now, it[5])
    save(r)
    if it[4] == 'queued' then out[#out + 1] = n end
  end
end
settle()
return out
"""

# ARGV[1] now, ARGV[2] 1 when these were reclaimed from a dead worker, ARGV[3] JSON list of
# [number, attempt the message is for]. Claims receipts for sending. Returns a flat list of
# number, attempt, who-and-where JSON for each receipt to send now; the others were already
# sent (a duplicate message), or end here as cancelled or expired.
_BEGIN = _LUA_COMMON + r"""
local now = ARGV[1]
local reclaimed = ARGV[2] == '1'
local a = redis.call('HMGET', alert_key, 'cancelled', 'expires_at')
local cancelled = a[1] and a[1] ~= ''
local expires_at = tonumber(a[2])
local out = {}
for _, claim in ipairs(cjson.decode(ARGV[3])) do
  local n, attempt = tostring(claim[1]), claim[2]
  local r = load(n)
  if r and (r.s == 'queued' or r.s == 'sending') then
    local send, changed = false, true
    if cancelled then
      move(r, 'cancelled', now, 'alert cancelled')
    elseif expires_at and tonumber(now) >= expires_at then
      move(r, 'expired', now, false)
    elseif r.a == attempt then
      r.a = attempt + 1
      r.ra = ''
      if r.s == 'queued' then move(r, 'sending', now, false) else r.t = now end
      send = true
    elseif reclaimed and r.a == attempt + 1 and r.s == 'sending' then
      send, changed = true, false  -- its worker died mid-send: whether it went out is unknown
    else
      changed = false  -- a stale duplicate of a message already handled
    end
    if changed then save(r) end
    if send then
      out[#out + 1] = n
      out[#out + 1] = r.a
      out[#out + 1] = r.who
    end
  end
end
settle()
return out
"""

# ARGV[1] now, ARGV[2] JSON list of [number, state, {e: error, p: provider id, retry_at, note}].
# A state equal to the current one only updates the fields (a failed attempt that will be
# retried stays 'sending'). Returns 1 or 0 per change: applied or refused.
_APPLY = _LUA_COMMON + r"""
local now = ARGV[1]
local out = {}
for _, change in ipairs(cjson.decode(ARGV[2])) do
  local n, to, fields = tostring(change[1]), change[2], change[3]
  local r = load(n)
  local ok = 0
  if r and (r.s == to or NEXT[r.s][to]) then
    if fields.e then r.e = clean(fields.e) end
    if fields.p then r.p = clean(fields.p) end
    if fields.retry_at then r.ra = clean(fields.retry_at) end
    if r.s == to then r.t = now else move(r, to, now, fields.note or fields.e) end
    save(r)
    ok = 1
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
local now, to, note = ARGV[1], ARGV[2], ARGV[3]
local ended = 0
for n = tonumber(ARGV[4]), tonumber(ARGV[5]) do
  local r = load(tostring(n))
  if r and (r.s == 'queued' or (r.s == 'sending' and r.ra ~= '')) then
    move(r, to, now, note)
    save(r)
    ended = ended + 1
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
class Claimed:
    """A receipt claimed for sending: what a channel needs of it."""

    number: int
    address: str
    recipient: str
    name: str
    attempt: int


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
        rows = [
            [r.number, r.channel,
             json.dumps({"to": r.address, "who": r.recipient, "name": r.name, "rg": r.region},
                        ensure_ascii=False),
             r.state, r.note or False]
            for r in receipts
        ]
        out = await self._create(self.keys.alert_keys(alert_id), [now, json.dumps(rows, ensure_ascii=False)])
        return [int(n) for n in out]

    async def begin(
        self, alert_id: str, claims: Iterable[tuple[int, int]], now: float, *, reclaimed: bool = False
    ) -> list[Claimed]:
        """Claim receipts for sending; returns those to send now."""
        args = [now, 1 if reclaimed else 0, json.dumps(list(claims))]
        out = await self._begin(self.keys.alert_keys(alert_id), args)
        claimed = []
        for i in range(0, len(out), 3):
            who = json.loads(out[i + 2])
            claimed.append(Claimed(int(out[i]), who["to"], who["who"], who["name"], int(out[i + 1])))
        return claimed

    async def apply(self, alert_id: str, changes: Sequence[Change], now: float) -> list[bool]:
        rows = [[c.number, c.state, c.fields or {}] for c in changes]
        out = await self._apply(self.keys.alert_keys(alert_id), [now, json.dumps(rows, ensure_ascii=False)])
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
        found = await self.page(alert_id, number, 1)
        return found[0][1] if found else None

    async def page(self, alert_id: str, start: int, count: int) -> list[tuple[int, dict]]:
        """Receipts numbered start .. start+count-1 that exist, in the stored shape (see ``receipt_view``)."""
        raws = await self.redis.hmget(self.keys.receipts(alert_id), [str(n) for n in range(start, start + count)])
        return [(n, _stored(raw)) for n, raw in zip(range(start, start + count), raws) if raw]

    async def counts(self, alert_id: str) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
        """Receipts per channel per state, and per state in all."""
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


def _stored(raw: bytes | str) -> dict:
    text = raw.decode() if isinstance(raw, bytes) else raw
    head, _, history = text.partition("\n")
    c, s, a, t, ra, p, e, who = head.split("\t", 7)
    r = json.loads(who)
    r.update(c=c, s=s, a=int(a), t=float(t), ra=ra, p=p, e=e)
    r["h"] = [line.split("\t", 2) for line in history.split("\n")] if history else []
    return r


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
        "error": r["e"] or None,
        "provider_id": r["p"] or None,
        "retry_at": float(r["ra"]) if r["ra"] else None,
        "history": [{"state": s, "at": float(t), **({"note": n} if n else {})} for s, t, n in r["h"]],
    }
