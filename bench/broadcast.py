"""Broadcast: one alert to N loudspeaker gateways through Mosquitto.

N simulated gateways (``dispatcher.gateway_sim``, playing instantly) connect to a Mosquitto of
the benchmark's own; a worker process fans one district-wide alert out to them. For each bound
on the publishes a worker keeps in flight, measures commands per second (gateways that have
said ``received``, over the time from acceptance to the last of them) and the time from
acceptance to each gateway's ``played``: first, p50, p99 and last. Times are the receipts'
own, as Redis recorded them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import redis as redis_sync

from bench.common import bench_alert, bench_redis, own_prefix, percentile, start_worker, stop_worker, wait_until
from contacts import Registry
from contacts.synthetic import write_registry
from dispatcher.alerts import AlertStore
from dispatcher.connections import redis_client
from dispatcher.embedded import EmbeddedMosquitto
from dispatcher.gateway_sim import Gateway
from dispatcher.keys import Keys
from dispatcher.receipts import ReceiptBook


async def _fan_out(url: str, prefix: str, gateways: int) -> dict:
    client = redis_client(url)
    keys = Keys(prefix)
    store = AlertStore(client, keys)
    try:
        posted = time.time()
        alert_id, _ = await store.accept(bench_alert("broadcast", severity="Extreme"))
        counts = keys.counts(alert_id)

        async def done() -> bool:
            return int(await client.hget(counts, "mqtt:acknowledged") or 0) >= gateways

        deadline = time.monotonic() + 300
        while not await done():
            if time.monotonic() > deadline:
                raise TimeoutError("not every gateway played within 300 s")
            await asyncio.sleep(0.05)
        book = ReceiptBook(client, keys)
        received, played = [], []
        for _, r in await book.page(alert_id, 0, gateways):
            times = {state: float(at) for state, at, _ in r["h"]}
            received.append(times.get("delivered", times["acknowledged"]) - posted)
            played.append(times["acknowledged"] - posted)
    finally:
        await client.aclose()
    return {"commands_per_s": gateways / max(received), "first_s": min(played), "p50_s": percentile(played, 50),
            "p99_s": percentile(played, 99), "last_s": max(played)}


async def _run(url: str, mqtt_url: str, registry: Path, gateways: int, bounds: list[int], data: Path) -> list:
    devices = Registry.load(registry).devices
    stop = asyncio.Event()
    sims = [Gateway(d.id, d.key.get_secret_value(), mqtt_url, "bench", play_s=0.0) for d in devices]
    tasks = [asyncio.create_task(g.run(stop)) for g in sims]
    results = []
    try:
        await asyncio.wait_for(asyncio.gather(*(g.connected.wait() for g in sims)), 120)
        for bound in bounds:
            with own_prefix(url) as prefix:
                env = {"SHAOZI_REDIS_URL": url, "SHAOZI_REDIS_PREFIX": prefix, "SHAOZI_REGISTRY": str(registry),
                       "SHAOZI_DATA_DIR": str(data), "SHAOZI_LOG_LEVEL": "warning", "SHAOZI_MQTT_URL": mqtt_url,
                       "SHAOZI_MQTT_PREFIX": "bench", "SHAOZI_MQTT_MAX_INFLIGHT": str(bound),
                       "SHAOZI_WORKER_NAME": f"bench-broadcast-{bound}",
                       "SHAOZI_CHANNELS": '{"mqtt": {"concurrency": 1000, "max_attempts": 3}}'}
                worker = start_worker(env)
                try:
                    with redis_sync.Redis.from_url(url) as r:
                        await asyncio.to_thread(wait_until, lambda: r.zcard(Keys(prefix).workers) == 1, 60)
                    await asyncio.sleep(1.0)  # its MQTT connection and the gateways' retained statuses
                    results.append({"bound": bound, **await _fan_out(url, prefix, gateways)})
                finally:
                    stop_worker(worker)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    return results


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.broadcast", description=__doc__)
    p.add_argument("--gateways", type=int, default=1000, help="simulated gateways (default 1000)")
    p.add_argument("--bounds", default="1,10,20,100", help="publishes in flight per worker to try (default 1,10,20,100)")
    p.add_argument("--redis-url", default=os.environ.get("SHAOZI_BENCH_REDIS_URL"))
    args = p.parse_args()
    bounds = [int(b) for b in args.bounds.split(",")]
    with bench_redis(args.redis_url) as url, tempfile.TemporaryDirectory() as tmp:
        broker = EmbeddedMosquitto(Path(tmp) / "mqtt")
        mqtt_url = broker.start()
        try:
            registry = write_registry(Path(tmp) / "registry.json", 0, devices=args.gateways)
            results = asyncio.run(_run(url, mqtt_url, registry, args.gateways, bounds, Path(tmp) / "var"))
        finally:
            broker.stop()
    print(f"one alert to {args.gateways} simulated gateways through Mosquitto ({mqtt_url}), one worker:")
    for r in results:
        print(f"  {r['bound']:>3} publishes in flight: {r['commands_per_s']:,.0f} commands/s; played after "
              f"first {r['first_s'] * 1000:.0f} ms, p50 {r['p50_s'] * 1000:.0f} ms, p99 {r['p99_s'] * 1000:.0f} ms, "
              f"last {r['last_s'] * 1000:.0f} ms")
    best = max(results, key=lambda r: r["commands_per_s"])
    print(f"RESULT bench=broadcast gateways={args.gateways} best_bound={best['bound']} "
          f"commands_per_s={best['commands_per_s']:.0f} p50_ms={best['p50_s'] * 1000:.0f} "
          f"p99_ms={best['p99_s'] * 1000:.0f}")


if __name__ == "__main__":
    main()
