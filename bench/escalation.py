"""Escalation: one step for every silent recipient of a large alert.

A worker process fans a Severe alert out to N recipients on the console channel; nobody
acknowledges. Then the escalator is called with a clock past the first wait (Severe: resend),
as a worker would be at that moment. Measures how long the step takes (reading every receipt,
taking the step per person, queuing the resends), silent people handled per second, how long
until the worker has delivered every resend, and Redis's answer time to a PING sent every
5 ms meanwhile, and the lag of the escalating process's event loop (the step runs in chunks so
that it holds up neither Redis nor that worker's senders for long).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import tempfile
import threading
import time
from pathlib import Path

import redis as redis_sync

from bench.common import bench_alert, bench_redis, own_prefix, percentile, start_worker, stop_worker, wait_until
from config import Settings
from contacts.store import LiveRegistry
from contacts.synthetic import synthetic_registry, write_registry
from dispatcher.alerts import AlertStore
from dispatcher.connections import redis_client
from dispatcher.escalation import Escalator, Policies
from dispatcher.keys import Keys


def _probe(url: str, stop: threading.Event, latencies: list[float]) -> None:
    """PING every 5 ms from a thread of its own, so the step's own Python work is not counted."""
    with redis_sync.Redis.from_url(url) as client:
        while not stop.is_set():
            start = time.perf_counter()
            client.ping()
            latencies.append(time.perf_counter() - start)
            time.sleep(0.005)


async def _loop_lag(stop: asyncio.Event, lags: list[float]) -> None:
    """How late a 5 ms sleep wakes in the escalating process: how long its senders could wait."""
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(0.005)
        lags.append(time.perf_counter() - start - 0.005)


async def _accept_and_escalate(url: str, prefix: str, people: int) -> dict:
    client = redis_client(url)
    keys = Keys(prefix)
    store = AlertStore(client, keys)
    counts = keys.counts
    try:
        alert_id, _ = await store.accept(bench_alert("escalation", severity="Severe"))
        await asyncio.to_thread(wait_until, lambda: _delivered(url, counts(alert_id)) >= people, 600, 0.05)
        policies = Policies(Settings().escalation)
        registry = synthetic_registry(people)
        gc.freeze()  # as a worker does once its registry is loaded
        escalator = Escalator(client, keys, store, LiveRegistry(registry), policies, {"sms": 1000, "console": 1000})
        at = time.time() + policies.first_wait("Severe") + 1

        stop, latencies = threading.Event(), []
        probe = threading.Thread(target=_probe, args=(url, stop, latencies))
        probe.start()
        stop_lag, lags = asyncio.Event(), []
        lag = asyncio.create_task(_loop_lag(stop_lag, lags))
        start = time.perf_counter()
        await escalator.work(alert_id, at)
        step_s = time.perf_counter() - start
        stop.set()
        stop_lag.set()
        probe.join()
        await lag
        await asyncio.to_thread(wait_until, lambda: _delivered(url, counts(alert_id)) >= 2 * people, 600, 0.05)
        delivered_s = time.perf_counter() - start
        receipts = await store.receipts.size(alert_id)
    finally:
        await client.aclose()
    return {"step_s": step_s, "people_per_s": people / step_s, "delivered_s": delivered_s,
            "created": receipts - people, "ping_p50_ms": percentile(latencies, 50) * 1000,
            "ping_p99_ms": percentile(latencies, 99) * 1000, "ping_max_ms": max(latencies) * 1000,
            "lag_p99_ms": percentile(lags, 99) * 1000, "lag_max_ms": max(lags) * 1000}


def _delivered(url: str, counts_key: str) -> int:
    with redis_sync.Redis.from_url(url) as client:
        return int(client.hget(counts_key, "*:delivered") or 0)


def _workers(url: str, prefix: str) -> int:
    with redis_sync.Redis.from_url(url) as client:
        return int(client.zcard(Keys(prefix).workers))


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.escalation", description=__doc__)
    p.add_argument("--people", type=int, default=100_000, help="recipients of the alert (default 100000)")
    p.add_argument("--redis-url", default=os.environ.get("SHAOZI_BENCH_REDIS_URL"),
                   help="Redis to use (default 127.0.0.1:6379 if up, else an embedded one)")
    args = p.parse_args()
    with bench_redis(args.redis_url) as url, tempfile.TemporaryDirectory() as tmp, own_prefix(url) as prefix:
        registry = write_registry(Path(tmp) / "registry.json", args.people)
        env = {"SHAOZI_REDIS_URL": url, "SHAOZI_REDIS_PREFIX": prefix, "SHAOZI_REGISTRY": str(registry),
               "SHAOZI_DATA_DIR": str(Path(tmp) / "var"), "SHAOZI_LOG_LEVEL": "warning",
               "SHAOZI_WORKER_NAME": "bench-escalation"}
        worker = start_worker(env)
        try:
            wait_until(lambda: _workers(url, prefix) == 1, 60)
            r = asyncio.run(_accept_and_escalate(url, prefix, args.people))
        finally:
            stop_worker(worker)
    print(f"escalation step (resend) for {args.people} silent recipients ({url})")
    print(f"  step taken in {r['step_s']:.2f} s ({r['people_per_s']:,.0f} people/s), {r['created']} receipts created")
    print(f"  every resend delivered {r['delivered_s']:.2f} s after the step began")
    print(f"  Redis PING meanwhile: p50 {r['ping_p50_ms']:.1f} ms, p99 {r['ping_p99_ms']:.1f} ms, "
          f"max {r['ping_max_ms']:.1f} ms")
    print(f"  event-loop lag of the escalating process: p99 {r['lag_p99_ms']:.1f} ms, max {r['lag_max_ms']:.1f} ms")
    print(f"RESULT bench=escalation people={args.people} step_s={r['step_s']:.2f} people_per_s={r['people_per_s']:.0f} "
          f"delivered_s={r['delivered_s']:.2f} ping_p99_ms={r['ping_p99_ms']:.1f} ping_max_ms={r['ping_max_ms']:.1f} "
          f"lag_max_ms={r['lag_max_ms']:.1f}")


if __name__ == "__main__":
    main()
