"""Intake: alerts accepted per second by one API process, and latency at a fixed 500/s.

Starts `shaozi api` (no workers: only intake is measured) against Redis, then posts JSON
alerts over HTTP from this process: first as fast as 64 connections allow, then open-loop at
a fixed rate, timing each request from its scheduled start (so queueing counts).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time

import aiohttp

from bench.common import bench_redis, own_prefix, percentile, peak_rss_mb
from dispatcher.embedded import free_port

KEY = "bench-intake-key"


def body(i: int) -> dict:
    return {"identifier": f"intake-{i}-{time.time_ns()}", "sender": "bench", "status": "Exercise",
            "msgType": "Alert", "scope": "Public",
            "info": {"category": "Met", "event": "大风", "urgency": "Expected", "severity": "Moderate",
                     "certainty": "Likely", "headline": "大风蓝色预警", "description": "阵风8级",
                     "area": {"areaDesc": "长轩岭街道", "regions": ["420116002000"]}}}


async def _post(session: aiohttp.ClientSession, url: str, i: int) -> None:
    async with session.post(url, json=body(i)) as resp:
        if resp.status != 202:
            raise RuntimeError(f"{resp.status}: {await resp.text()}")
        await resp.read()


async def saturate(url: str, total: int, connections: int) -> float:
    counter = iter(range(total))
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"},
                                     connector=aiohttp.TCPConnector(limit=connections)) as session:
        async def lane():
            for i in counter:
                await _post(session, url, i)

        start = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(connections)))
        return total / (time.perf_counter() - start)


async def fixed_rate(url: str, rate: float, seconds: float) -> list[float]:
    latencies: list[float] = []
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"},
                                     connector=aiohttp.TCPConnector(limit=256)) as session:
        start = time.perf_counter()

        async def one(i: int, due: float):
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            await _post(session, url, 10_000_000 + i)
            latencies.append((time.perf_counter() - due) * 1000)

        n = int(rate * seconds)
        await asyncio.gather(*(one(i, start + i / rate) for i in range(n)))
    return latencies


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.intake", description=__doc__)
    p.add_argument("--total", type=int, default=5000, help="alerts for the throughput run (default 5000)")
    p.add_argument("--rate", type=float, default=500, help="fixed rate for the latency run (default 500/s)")
    p.add_argument("--seconds", type=float, default=10, help="length of the latency run (default 10)")
    p.add_argument("--redis-url", default=os.environ.get("SHAOZI_BENCH_REDIS_URL"))
    args = p.parse_args()
    with bench_redis(args.redis_url) as redis_url, own_prefix(redis_url) as prefix, \
            tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = {**os.environ, "SHAOZI_REDIS_URL": redis_url, "SHAOZI_REDIS_PREFIX": prefix,
               "SHAOZI_API_KEYS": f"{KEY}:feed", "SHAOZI_PORT": str(port), "SHAOZI_DATA_DIR": tmp,
               "SHAOZI_LOG_LEVEL": "warning"}
        api = subprocess.Popen([sys.executable, "-m", "dispatcher.cli", "api"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        base = f"http://127.0.0.1:{port}"
        try:
            asyncio.run(_wait_up(base))
            url = f"{base}/v1/alerts"
            per_s = asyncio.run(saturate(url, args.total, 64))
            latencies = asyncio.run(fixed_rate(url, args.rate, args.seconds))
            rss = peak_rss_mb(api.pid)
        finally:
            api.terminate()
            api.wait(30)
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    print("one API process, JSON alerts, client on the same machine:")
    print(f"  {per_s:,.0f} alerts accepted per second (64 connections, {args.total} alerts)")
    print(f"  at a fixed {args.rate:.0f}/s for {args.seconds:.0f} s: p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
          f"API peak RSS {rss:.0f} MB")
    print(f"RESULT bench=intake alerts_per_s={per_s:.0f} rate={args.rate:.0f} p50_ms={p50:.1f} p99_ms={p99:.1f} "
          f"peak_rss_mb={rss:.0f}")


async def _wait_up(base: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(f"{base}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("the API did not come up")


if __name__ == "__main__":
    main()
