"""A send rate shared by every worker: a token bucket kept in Redis, on Redis' clock.

Each ``take`` reserves its sends in one script and learns how long to wait before making them;
the bucket may go into debt, so later callers wait behind earlier ones. Workers on several
hosts therefore hold one rate together — what a sender number or messaging service allows —
without trusting each other's clocks.
"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

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
