"""Receipts: one per (alert, recipient, channel), moved by one forward-only state machine.

Every change is a Lua script over one alert's keys (``{alert id}`` hash tag): the receipt's
status, its history and the alert's per-channel, per-state counters change in the same atomic
step, and one script call handles a whole batch of receipts with one read and one write. A
receipt's public id is ``<alert id>.<number>``; under its number in the alert's ``receipts``
hash it is one string that a script reads with a pattern, no JSON parser:

    state TAB attempts TAB last change TAB retry at TAB channel TAB provider id TAB last error
        TAB address TAB recipient id TAB name TAB region TAB via    (the last five written once)
    state TAB time TAB note          (one history line per state reached)
    ...

``via`` is empty for a receipt planned from the alert's targets; an escalation step writes
``<step>:<action>:<person id>`` (whose silence it follows up; empty for a supervisor's list).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from dispatcher.codec import dumps, text
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
local match, concat, tostring, tonumber = string.match, table.concat, tostring, tonumber
local delta, dirty = {['*'] = {}}, {}
local function bump(channel, state, by)
  local d = delta[channel]
  if not d then d = {}; delta[channel] = d end
  d[state] = (d[state] or 0) + by
  delta['*'][state] = (delta['*'][state] or 0) + by
end
local function clean(v)
  if not v or v == cjson.null then return '' end
  return (string.gsub(tostring(v), '[\t\n]', ' '))
end
-- Most changes touch only the head of a record; the rest is carried along unparsed. The time
-- of the last change is not kept: every change sets it anew.
local function parse(n, raw)
  local s, a, ra, c, rest = match(raw, '^([^\t]*)\t([^\t]*)\t[^\t]*\t([^\t]*)\t([^\t]*)\t(.*)$')
  return {n = n, s = s, a = tonumber(a), ra = ra, c = c, rest = rest}
end
local function load(numbers)
  local found = {}
  for i = 1, #numbers, 1000 do
    local chunk = {unpack(numbers, i, math.min(i + 999, #numbers))}
    local raws = redis.call('HMGET', receipts_key, unpack(chunk))
    for j = 1, #chunk do
      if raws[j] then found[chunk[j]] = parse(chunk[j], raws[j]) end
    end
  end
  return found
end
-- The receipts a batch names (each item's first element is a receipt number).
local function load_listed(items)
  local numbers = {}
  for i, it in ipairs(items) do numbers[i] = tostring(it[1]) end
  return numbers, load(numbers)
end
local function save(r)
  if not r.dirty then r.dirty = true; dirty[#dirty + 1] = r end
end
local function who(r) return match(r.rest, '^[^\t]*\t[^\t]*\t([^\n]*)') end
local function set_detail(r, p, e)
  local op, oe, tail = match(r.rest, '^([^\t]*)\t([^\t]*)\t(.*)$')
  r.rest = concat({p and clean(p) or op, e and clean(e) or oe, tail}, '\t')
end
local function move(r, to, now, note)
  if r.s then bump(r.c, r.s, -1) end
  bump(r.c, to, 1)
  r.s = to
  r.t = now
  r.rest = r.rest .. '\n' .. to .. '\t' .. now .. '\t' .. clean(note)
end
local function settle()
  local args = {}
  for _, r in ipairs(dirty) do
    args[#args + 1] = r.n
    args[#args + 1] = concat({r.s, r.a, r.t, r.ra, r.c, r.rest}, '\t')
    if #args >= 2000 then redis.call('HSET', receipts_key, unpack(args)); args = {} end
  end
  if #args > 0 then redis.call('HSET', receipts_key, unpack(args)) end
  for channel, states in pairs(delta) do
    for state, by in pairs(states) do
      if by ~= 0 then redis.call('HINCRBY', counts_key, channel .. ':' .. state, by) end
    end
  end
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
local items = cjson.decode(ARGV[2])
local numbers, found = load_listed(items)
local out = {}
for i, it in ipairs(items) do
  local n = numbers[i]
  local r = found[n]
  if r then
    if r.s == 'queued' and r.a == 0 then out[#out + 1] = n end
  else
    r = {n = n, a = 0, ra = '', c = it[2], rest = '\t\t' .. it[3]}
    found[n] = r
    move(r, it[4], now, it[5])
    save(r)
    if it[4] == 'queued' then out[#out + 1] = n end
  end
end
settle()
return out
"""

# KEYS[4] the alert's escalation hash. ARGV[1] now, ARGV[2] the step (1, 2, ...), ARGV[3] JSON
# list of items {ps = [[person id, name, [their receipt numbers]], ...], r = [[channel, who-and-
# where], ...], why = history note, note = opening line or false, in which {count} and {names}
# stand for the people the step is taken for, names joined by sep}.
# Takes the step for the people of an item who have taken the step before it and none of whose
# receipts is acknowledged, creating the item's receipts once; a step already taken, or any
# step of a cancelled or expired alert, is not taken again. Returns number, channel of each
# receipt created.
_ESCALATE = _LUA_COMMON + r"""
local esc_key, now, step = KEYS[4], ARGV[1], tonumber(ARGV[2])
local a = redis.call('HMGET', alert_key, 'cancelled', 'expires_at', 'state')
if (a[1] and a[1] ~= '') or (tonumber(a[2]) and tonumber(now) >= tonumber(a[2])) then return {} end
local size = redis.call('HLEN', receipts_key)
local out = {}
for _, it in ipairs(cjson.decode(ARGV[3])) do
  local names = {}
  for _, p in ipairs(it.ps) do
    local taken = tonumber(match(redis.call('HGET', esc_key, p[1]) or '0', '^(%d+)'))
    if taken == step - 1 then
      local acked = false
      local numbers = {}
      for i, n in ipairs(p[3]) do numbers[i] = tostring(n) end
      for _, r in pairs(load(numbers)) do acked = acked or r.s == 'acknowledged' end
      if not acked then
        redis.call('HSET', esc_key, p[1], step .. '	' .. now)
        names[#names + 1] = p[2]
      end
    end
  end
  if #names > 0 then
    for _, nr in ipairs(it.r) do
      local n = tostring(size)
      size = size + 1
      local r = {n = n, a = 0, ra = '', c = nr[1], rest = '		' .. nr[2]}
      move(r, 'queued', now, it.why)
      save(r)
      if it.note then
        local shown = names
        if #names > 20 then shown = {unpack(names, 1, 20)}; shown[21] = '…' end
        local note = string.gsub(it.note, '{count}', function() return tostring(#names) end)
        note = string.gsub(note, '{names}', function() return concat(shown, it.sep) end)
        redis.call('HSET', esc_key, 'note:' .. n, note)
      end
      out[#out + 1] = n
      out[#out + 1] = nr[1]
    end
  end
end
if #out > 0 then
  redis.call('HSET', alert_key, 'receipts', size)
  if a[3] == 'settled' then redis.call('HSET', alert_key, 'state', 'dispatching') end
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
local claims = cjson.decode(ARGV[3])
local numbers, found = load_listed(claims)
local out = {}
for i, claim in ipairs(claims) do
  local n, attempt = numbers[i], claim[2]
  local r = found[n]
  if r and (r.s == 'queued' or r.s == 'sending') then
    local send = false
    if cancelled then
      move(r, 'cancelled', now, 'alert cancelled')
      save(r)
    elseif expires_at and tonumber(now) >= expires_at then
      move(r, 'expired', now, false)
      save(r)
    elseif r.a == attempt then
      r.a = attempt + 1
      r.ra = ''
      if r.s == 'queued' then move(r, 'sending', now, false) else r.t = now end
      save(r)
      send = true
    elseif reclaimed and r.a == attempt + 1 and r.s == 'sending' then
      send = true  -- its worker died mid-send: whether it went out is unknown, so again
    end
    if send then
      out[#out + 1] = n
      out[#out + 1] = r.a
      out[#out + 1] = who(r)
    end
  end
end
settle()
return out
"""

# KEYS[4] the alert's drill acknowledgements. ARGV[1] now, ARGV[2] JSON list of [number, state,
# {e: error, p: provider id, retry_at, note, back: 1 to hand the attempt back (it waited, it was
# not tried)}]. An acknowledgement of a drill notes when its recipient's region last answered.
# 'sending' again only updates the fields (a failed attempt that will be retried stays
# 'sending'); any other repeated state is refused like a backward one. Returns 1 or 0 per
# change: applied or refused.
_APPLY = _LUA_COMMON + r"""
local now = ARGV[1]
local drill = nil
local changes = cjson.decode(ARGV[2])
local numbers, found = load_listed(changes)
local out = {}
for i, change in ipairs(changes) do
  local r, to, fields = found[numbers[i]], change[2], change[3]
  local ok = 0
  if r and ((r.s == to and to == 'sending') or NEXT[r.s][to]) then
    if fields.p or fields.e then set_detail(r, fields.p, fields.e) end
    if fields.retry_at then r.ra = clean(fields.retry_at) end
    if fields.back then r.a = math.max(0, r.a - 1) end
    if r.s == to then r.t = now else move(r, to, now, fields.note or fields.e) end
    save(r)
    ok = 1
    if to == 'acknowledged' then
      if drill == nil then drill = redis.call('HGET', alert_key, 'status') == 'Exercise' end
      if drill then
        local region = match(r.rest, '^[^\t]*\t[^\t]*\t[^\t]*\t[^\t]*\t[^\t]*\t([^\t\n]*)')
        if region and region ~= '' then redis.call('HSET', KEYS[4], region, now) end
      end
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
local now, to, note = ARGV[1], ARGV[2], ARGV[3]
local numbers = {}
for n = tonumber(ARGV[4]), tonumber(ARGV[5]) do numbers[#numbers + 1] = tostring(n) end
local found = load(numbers)
local ended = 0
for _, n in ipairs(numbers) do
  local r = found[n]
  if r and (r.s == 'queued' or (r.s == 'sending' and r.ra ~= '')) then
    move(r, to, now, note)
    save(r)
    ended = ended + 1
  end
end
settle()
return ended
"""

# KEYS[4] the set of parts planned. ARGV[1] now, ARGV[2] this part, ARGV[3] parts in all,
# ARGV[4] recipients. Once every part is planned, the alert is planned and dispatching.
_PART_PLANNED = _LUA_COMMON + r"""
redis.call('SADD', KEYS[4], ARGV[2])
if redis.call('SCARD', KEYS[4]) >= tonumber(ARGV[3]) then
  redis.call('HSET', alert_key, 'planned', 1, 'recipients', ARGV[4], 'receipts', redis.call('HLEN', receipts_key))
  if redis.call('HGET', alert_key, 'state') ~= 'cancelled' then redis.call('HSET', alert_key, 'state', 'dispatching') end
end
settle()
return redis.call('HGET', alert_key, 'state')
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


# The per-receipt records below are built by the hundred thousand and are not frozen: a frozen
# dataclass builds several times slower.


@dataclass(slots=True)
class NewReceipt:
    number: int
    channel: str
    address: str
    recipient: str
    name: str
    region: str
    state: str = "queued"
    note: str | None = None
    via: str = ""

    def who_and_where(self) -> str:
        return "\t".join(map(_clean, (self.address, self.recipient, self.name, self.region, self.via)))


@dataclass(slots=True)
class Claimed:
    """A receipt claimed for sending: what a channel needs of it."""

    number: int
    address: str
    recipient: str
    name: str
    attempt: int
    via: str = ""


@dataclass(slots=True)
class EscalationItem:
    """One escalation step for some silent people: the receipts it creates, once."""

    people: list[tuple[str, str, list[int]]]  # person id, name, their receipt numbers
    receipts: list[NewReceipt]  # numbers are given when they are created
    why: str
    note: str | None = None  # the line the messages open with; may name the people: {count}, {names}
    sep: str = "、"  # between names


@dataclass(slots=True)
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
        self._part_planned = redis.register_script(_PART_PLANNED)
        self._escalate = redis.register_script(_ESCALATE)

    async def create(self, alert_id: str, receipts: Sequence[NewReceipt], now: float) -> list[int]:
        rows = [[r.number, r.channel, r.who_and_where(), r.state, r.note or False] for r in receipts]
        out = await self._create(self.keys.alert_keys(alert_id), [now, dumps(rows)])
        return list(map(int, out))

    async def begin(
        self, alert_id: str, claims: Iterable[tuple[int, int]], now: float, *, reclaimed: bool = False
    ) -> list[Claimed]:
        """Claim receipts for sending; returns those to send now."""
        out = await self._begin(self.keys.alert_keys(alert_id), [now, 1 if reclaimed else 0, dumps(list(claims))])
        claimed = []
        for i in range(0, len(out), 3):
            address, recipient, name, _region, via = text(out[i + 2]).split("\t", 4)
            claimed.append(Claimed(int(out[i]), address, recipient, name, int(out[i + 1]), via))
        return claimed

    async def escalate(self, alert_id: str, step: int, items: Sequence[EscalationItem],
                       now: float) -> list[tuple[int, str]]:
        """Take an escalation step (see ``_ESCALATE``); returns (number, channel) of each receipt created."""
        rows = [{"ps": [[pid, name, numbers] for pid, name, numbers in it.people],
                 "r": [[r.channel, r.who_and_where()] for r in it.receipts],
                 "why": it.why, "note": it.note or False, "sep": it.sep} for it in items]
        keys = [*self.keys.alert_keys(alert_id), self.keys.escalation(alert_id)]
        out = await self._escalate(keys, [now, step, dumps(rows)])
        return [(int(out[i]), text(out[i + 1])) for i in range(0, len(out), 2)]

    async def apply(self, alert_id: str, changes: Sequence[Change], now: float) -> list[bool]:
        rows = [[c.number, c.state, c.fields or {}] for c in changes]
        out = await self._apply([*self.keys.alert_keys(alert_id), self.keys.drill_acks(alert_id)], [now, dumps(rows)])
        return [bool(x) for x in out]

    async def sweep(self, alert_id: str, state: str, note: str, first: int, last: int, now: float) -> int:
        return int(await self._sweep(self.keys.alert_keys(alert_id), [now, state, note, first, last]))

    async def mark(self, alert_id: str, now: float, **fields: object) -> str | None:
        args: list = [now]
        for k, v in fields.items():
            args += [k, v]
        return text(await self._mark(self.keys.alert_keys(alert_id), args))

    async def part_planned(self, alert_id: str, part: int, parts: int, recipients: int, now: float) -> str | None:
        """Record one part of an alert as planned; returns the alert's state."""
        keys = [*self.keys.alert_keys(alert_id), self.keys.plan_parts(alert_id)]
        return text(await self._part_planned(keys, [now, part, parts, recipients]))

    async def size(self, alert_id: str) -> int:
        """How many receipts the alert has so far (they are numbered 0 .. size-1)."""
        return int(await self.redis.hlen(self.keys.receipts(alert_id)))

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
            key = text(key)
            n = int(value)
            if n == 0:
                continue
            channel, _, state = key.rpartition(":")
            if channel == "*":
                totals[state] = n
            else:
                per_channel.setdefault(channel, {})[state] = n
        return per_channel, totals


def _clean(value: str) -> str:
    if "\t" in value or "\n" in value:
        return value.replace("\t", " ").replace("\n", " ")
    return value


def _stored(raw: bytes | str) -> dict:
    head, _, history = text(raw).partition("\n")
    s, a, t, ra, c, p, e, to, who, name, rg, via = head.split("\t", 11)
    return {"s": s, "a": int(a), "t": float(t), "ra": ra, "c": c, "p": p, "e": e, "to": to, "who": who,
            "name": name, "rg": rg, "via": via, "h": [line.split("\t", 2) for line in history.split("\n")] if history else []}


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
        **({"escalation": escalation_of(r["via"])} if r["via"] else {}),
    }


def escalation_of(via: str) -> dict:
    """What a ``via`` says: the step, its action and whose silence it follows up."""
    step, action, person = via.split(":", 2)
    return {"step": int(step), "action": action, "for": person or None}
