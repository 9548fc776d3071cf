"""Priority: time from posting an Extreme alert behind a large Minor backlog to its first delivery.

A Minor alert to N recipients is posted first; while its backlog drains, Extreme alerts to one
community are posted one after another, and for each the time from acceptance to its first
message in the console outbox is taken (both clocks are this machine's).
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

from bench.common import (
    COMMUNITY,
    bench_alert,
    bench_redis,
    own_prefix,
    percentile,
    start_worker,
    stop_worker,
    wait_until,
)
from contacts.synthetic import write_registry
from dispatcher.alerts import AlertStore
from dispatcher.connections import redis_client
from dispatcher.keys import Keys

async def _run_tries(url: str, prefix: str, backlog: int, tries: int, gap_s: float) -> list:
    client = redis_client(url)
    store = AlertStore(client, Keys(prefix))
    try:
        backlog_id, _ = await store.accept(bench_alert("minor", severity="Minor", urgency="Future"))
        counts = Keys(prefix).counts(backlog_id)
        while int(await client.hget(counts, "*:delivered") or 0) < 1000:
            await asyncio.sleep(0.01)
        posted = []  # (alert id, when posted, backlog then undelivered)
        for i in range(tries):
            behind = backlog - int(await client.hget(counts, "*:delivered") or 0)
            at = time.time()
            alert_id, _ = await store.accept(bench_alert(f"extreme-{i}", severity="Extreme", region=COMMUNITY))
            posted.append((alert_id, at, behind))
            await asyncio.sleep(gap_s)
        return posted
    finally:
        await client.aclose()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.priority", description=__doc__)
    p.add_argument("--backlog", type=int, default=100_000, help="Minor recipients (default 100000)")
    p.add_argument("--tries", type=int, default=20, help="Extreme alerts posted during the backlog (default 20)")
    p.add_argument("--gap-s", type=float, default=0.05, help="seconds between Extreme alerts (default 0.05)")
    p.add_argument("--redis-url", default=os.environ.get("SHAOZI_BENCH_REDIS_URL"))
    args = p.parse_args()
    with bench_redis(args.redis_url) as url, own_prefix(url) as prefix, tempfile.TemporaryDirectory() as tmp:
        registry = write_registry(Path(tmp) / "registry.json", args.backlog)
        data = Path(tmp) / "var"
        worker = start_worker({"SHAOZI_REDIS_URL": url, "SHAOZI_REDIS_PREFIX": prefix,
                               "SHAOZI_REGISTRY": str(registry), "SHAOZI_DATA_DIR": str(data),
                               "SHAOZI_LOG_LEVEL": "warning", "SHAOZI_WORKER_NAME": "bench-priority"})
        client = redis_sync.Redis.from_url(url)
        try:
            wait_until(lambda: client.zcard(Keys(prefix).workers) == 1, 60)
            posted = asyncio.run(_run_tries(url, prefix, args.backlog, args.tries, args.gap_s))
            ids = {a for a, _, _ in posted}
            wait_until(lambda: all(client.hget(Keys(prefix).counts(a), "*:delivered") for a in ids), 120)
        finally:
            stop_worker(worker)
            client.close()
        first: dict[str, float] = {}
        with open(data / "outbox" / "console.jsonl", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                if row["alert"] in ids and row["alert"] not in first:
                    first[row["alert"]] = row["at"]
    # Only the tries posted while the backlog was still there count: the others had no queue to jump.
    latencies = [(first[a] - at) * 1000 for a, at, behind in posted if behind > 0]
    print("  each try, ms (backlog then undelivered):",
          " ".join(f"{(first[a] - at) * 1000:.0f} ({behind})" for a, at, behind in posted))
    if not latencies:
        raise SystemExit("the backlog drained before the first try: pass a larger --backlog or a smaller --gap-s")
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    print(f"Extreme alert behind a {args.backlog}-receipt Minor backlog, {len(latencies)} of {len(posted)} tries "
          f"posted while some of it was undelivered:")
    print(f"  first delivery after p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(latencies):.1f} ms")
    print(f"RESULT bench=priority backlog={args.backlog} tries={len(latencies)} p50_ms={p50:.1f} p99_ms={p99:.1f}")


if __name__ == "__main__":
    main()
