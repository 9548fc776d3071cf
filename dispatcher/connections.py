"""The Redis client every part of Shaozi uses, configured to ride out a Redis restart."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError

# Commands are retried over about 15 s of Redis being away; longer outages surface as
# errors, and the worker loops wait and try again (see ``outage_pause``).
RETRY = Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=12)
TRANSIENT = (ConnectionError, TimeoutError, OSError)


def redis_client(url: str) -> Redis:
    return Redis.from_url(url, retry=RETRY, retry_on_error=[ConnectionError, TimeoutError],
                          health_check_interval=30, socket_keepalive=True, socket_connect_timeout=5)
