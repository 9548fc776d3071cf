"""The Redis client every part of Shaozi uses, configured to ride out a Redis restart."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError

# Commands are retried over about 15 s of Redis being away; longer outages surface as
# errors, and the worker loops wait and try again (see ``outage_pause``).
RETRY = Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=12)
TRANSIENT = (ConnectionError, TimeoutError, OSError)


def redis_client(url: str, max_connections: int = 256) -> Redis:
    # A blocking pool: past max_connections a command waits for a free connection rather
    # than failing, so a burst of requests slows down instead of erroring.
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=20, retry=RETRY,
        retry_on_error=[ConnectionError, TimeoutError], health_check_interval=30, socket_keepalive=True,
        socket_connect_timeout=5,
    )
    return Redis(connection_pool=pool)
