"""Fan-out: one alert to N recipients on the console channel, receipts in Redis.

Measures receipts per second from acceptance until every receipt is ``delivered``, with 1 and
with 2 worker processes, and each worker's peak memory; and, for scale, bare redis-py
pipelined HSET per second of receipt-sized values (the cost of merely writing the receipts).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import redis as redis_sync

from bench.common import bench_alert, bench_redis, own_prefix, start_worker, stop_worker, wait_until
from contacts.synthetic import write_registry
from dispatcher.alerts import AlertStore
from dispatcher.connections import redis_client
from dispatcher.keys import Keys

async def _accept(url: str, prefix: str) -> str:
    client = redis_client(url)
    try:
        alert_id, _ = await AlertStore(client, Keys(prefix)).accept(bench_alert("fanout"))
        return alert_id
    finally:
        await client.aclose()


def run_fanout(url: str, registry: Path, people: int, workers: int, data_dir: Path) -> dict:
    with own_prefix(url) as prefix:
        env = {"SHAOZI_REDIS_URL": url, "SHAOZI_REDIS_PREFIX": prefix, "SHAOZI_REGISTRY": str(registry),
               "SHAOZI_DATA_DIR": str(data_dir), "SHAOZI_LOG_LEVEL": "warning"}
        procs = [start_worker({**env, "SHAOZI_WORKER_NAME": f"bench-{i}"}) for i in range(workers)]
        client = redis_sync.Redis.from_url(url)
        keys = Keys(prefix)
        try:
            wait_until(lambda: client.zcard(keys.workers) == workers, 60)
            start = time.perf_counter()
            alert_id = asyncio.run(_accept(url, prefix))
            counts = keys.counts(alert_id)
            first = wait_until(lambda: int(client.hget(counts, "*:delivered") or 0) > 0 and time.perf_counter(), 120)
            wait_until(lambda: int(client.hget(counts, "*:delivered") or 0) >= people, 600, 0.01)
            elapsed = time.perf_counter() - start
            delivered = int(client.hget(counts, "*:delivered"))
        finally:
            peaks = [stop_worker(p) for p in procs]
            client.close()
        return {"workers": workers, "seconds": elapsed, "first_delivery_s": first - start,
                "receipts_per_s": delivered / elapsed, "peak_rss_mb": max(peaks)}


def bare_hset(url: str, n: int) -> float:
    """Pipelined HSET of n receipt-sized values into one hash, 1,000 per round trip."""
    value = json.dumps({"c": "sms", "to": "+8613900000000", "who": "s000000", "name": "测试0",
                        "rg": "420116001001", "s": "delivered", "a": 1, "t": time.time(),
                        "h": [["queued", time.time(), False], ["sending", time.time(), False],
                              ["delivered", time.time(), False]], "p": "console-x"}, ensure_ascii=False)
    with own_prefix(url) as prefix:
        client = redis_sync.Redis.from_url(url)
        start = time.perf_counter()
        for i in range(0, n, 1000):
            pipe = client.pipeline(transaction=False)
            for j in range(i, min(n, i + 1000)):
                pipe.hset(f"{prefix}:bare", str(j), value)
            pipe.execute()
        elapsed = time.perf_counter() - start
        client.close()
    return n / elapsed


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__)
    p.add_argument("--people", type=int, default=100_000, help="recipients of the alert (default 100000)")
    p.add_argument("--workers", default="1,2", help="worker process counts to try (default 1,2)")
    p.add_argument("--redis-url", default=os.environ.get("SHAOZI_BENCH_REDIS_URL"),
                   help="Redis to use (default 127.0.0.1:6379 if up, else an embedded one)")
    args = p.parse_args()
    with bench_redis(args.redis_url) as url, tempfile.TemporaryDirectory() as tmp:
        registry = write_registry(Path(tmp) / "registry.json", args.people)
        print(f"fan-out of one alert to {args.people} recipients on the console channel ({url})")
        results = []
        for workers in [int(w) for w in args.workers.split(",")]:
            r = run_fanout(url, registry, args.people, workers, Path(tmp) / f"var{workers}")
            results.append(r)
            print(f"  {workers} worker process(es): {r['receipts_per_s']:,.0f} receipts/s "
                  f"({r['seconds']:.2f} s in all, first delivery after {r['first_delivery_s'] * 1000:.0f} ms), "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB per worker")
        hset = bare_hset(url, args.people)
        print(f"  bare redis-py pipelined HSET: {hset:,.0f} per s "
              f"(fan-out with 1 worker reaches {results[0]['receipts_per_s'] / hset:.0%} of it)")
    fields = " ".join(f"w{r['workers']}_receipts_per_s={r['receipts_per_s']:.0f} "
                      f"w{r['workers']}_peak_rss_mb={r['peak_rss_mb']:.0f}" for r in results)
    print(f"RESULT bench=fanout people={args.people} {fields} bare_hset_per_s={hset:.0f}")


if __name__ == "__main__":
    main()
