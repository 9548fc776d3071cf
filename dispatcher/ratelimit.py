"""Send rates shared by every worker, kept in Redis, on Redis' clock.

``RateLimiter`` is a channel's rate:
Each ``take`` reserves its sends in one script and learns how long to wait before making them;
the bucket may go into debt, so later callers wait behind earlier ones. Workers on several
hosts therefore hold one rate together — what a sender number or messaging service allows —
without trusting each other's clocks.

``AddressLimiter`` is a limit per address, such as a chat group's robot that takes 20 messages
a minute and throttles past that: a sliding window, so no minute ever holds more.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable, Sequence

from redis.asyncio import Redis

# KEYS one window (sorted set of send times) per address. ARGV[1] limit, ARGV[2] window (s),
# ARGV[3] a unique tag, ARGV[4..] sends wanted per key. Returns per key the sends granted and,
# when not all, the time (Redis' clock) the window has room again: the same for every message
# waiting on one address, so they come due together and the most urgent goes first.
_WINDOW = r"""
local limit, window, tag = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local out = {}
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local granted = math.max(0, math.min(tonumber(ARGV[3 + i]), limit - redis.call('ZCARD', key)))
  for j = 1, granted do redis.call('ZADD', key, now, tag .. ':' .. i .. ':' .. j) end
  redis.call('EXPIRE', key, math.ceil(window) + 1)
  local at = 0
  if granted < tonumber(ARGV[3 + i]) then
    at = tonumber(redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2]) + window
  end
  out[#out + 1] = tostring(granted)
  out[#out + 1] = string.format('%.6f', at)
end
return out
"""

# KEYS[1] the bucket. ARGV: rate per second, capacity, sends to reserve.
# Returns the seconds to wait before sending them (as a string: Lua numbers lose precision).
_TAKE = r"""
local rate, capacity, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local b = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(b[1]) or capacity
local stamp = tonumber(b[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - stamp) * rate) - n
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('EXPIRE', KEYS[1], 3600)
if tokens >= 0 then return '0' end
return tostring(-tokens / rate)
"""


class RateLimiter:
    """Sends per second across all workers; ``rate`` 0 turns it off."""

    def __init__(self, redis: Redis, key: str, rate: float, capacity: float | None = None) -> None:
        self.key = key
        self.rate = rate
        self.capacity = capacity if capacity is not None else max(1.0, rate)
        self._take = redis.register_script(_TAKE)

    async def take(self, n: int = 1) -> float:
        """Wait until ``n`` sends fit the rate; returns the seconds waited."""
        if self.rate <= 0:
            return 0.0
        wait = float(await self._take([self.key], [self.rate, self.capacity, n]))
        if wait > 0:
            await asyncio.sleep(wait)
        return wait


class AddressLimiter:
    """At most ``limit`` sends to one address per ``window_s``, across all workers."""

    def __init__(self, redis: Redis, key_of: Callable[[str], str], limit: int, window_s: float) -> None:
        self.key_of = key_of
        self.limit = limit
        self.window_s = window_s
        self._window = redis.register_script(_WINDOW)

    async def grant(self, addresses: Sequence[str]) -> list[float]:
        """For each address in order: 0 if it may be sent to now, else when (unix s) to try again."""
        wanted = Counter(addresses)
        tag = uuid.uuid4().hex[:12]
        out = await self._window([self.key_of(a) for a in wanted], [self.limit, self.window_s, tag, *wanted.values()])
        room = {a: int(out[2 * i]) for i, a in enumerate(wanted)}
        again = {a: float(out[2 * i + 1]) for i, a in enumerate(wanted)}
        verdict = []
        for a in addresses:
            verdict.append(0.0 if room[a] > 0 else again[a])
            room[a] -= 1
        return verdict
