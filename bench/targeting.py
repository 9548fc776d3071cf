"""Targeting and import over a registry of N people (synthetic, each with a location).

Measures recipients resolved per second for a district-wide alert and for a polygon alert
covering about half the people (shapely's vectorised test over the located recipients), and the
rows per second of importing the registry's people as CSV (reading, checking every row and
every reference, and writing to Redis in one transaction), plus the time a process takes to
load the stored registry again.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time

from bench.common import bench_redis, own_prefix
from contacts import Registry
from contacts.imports import plan, read, to_csv
from contacts.store import RegistryStore
from contacts.synthetic import synthetic
from contacts.targeting import Target, parse_polygon
from dispatcher.connections import redis_client

# Synthetic people are spread over a 1° square from 30.0N 114.0E; this triangle covers half.
HALF = "30.0,114.0 30.0,115.0 31.0,115.0 30.0,114.0"


def _timed(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


async def _import(url: str, people: int) -> dict:
    regions, persons, _ = synthetic(people)
    rng = random.Random(7)
    persons = [p.model_copy(update={"lat": 30.0 + rng.random(), "lon": 114.0 + rng.random()}) for p in persons]
    empty = Registry(regions, [])
    body = to_csv(persons, "people").encode()
    started = time.perf_counter()
    change = plan(empty, read(body, "people.csv"))
    checked = time.perf_counter() - started
    with own_prefix(url) as prefix:
        client = redis_client(url)
        try:
            store = RegistryStore(client, prefix)
            await store.replace(empty, by="bench", note="regions")
            started = time.perf_counter()
            await store.write(change.upserts, change.removals, by="bench", note="people.csv")
            written = time.perf_counter() - started
            started = time.perf_counter()
            loaded, _ = await store.load()
            load_s = time.perf_counter() - started
        finally:
            await client.aclose()
    return {"registry": change.registry, "checked_s": checked, "written_s": written, "load_s": load_s,
            "rows_per_s": people / (checked + written), "loaded": loaded.size}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.targeting", description=__doc__)
    p.add_argument("--people", type=int, default=100_000)
    p.add_argument("--redis-url", default=os.environ.get("SHAOZI_BENCH_REDIS_URL"))
    args = p.parse_args()
    with bench_redis(args.redis_url) as url:
        r = asyncio.run(_import(url, args.people))
    registry: Registry = r["registry"]
    district = Target(codes=("420116000000",))
    polygon = Target(polygons=(parse_polygon(HALF),))
    registry.reach(polygon)  # builds the located arrays once, as the first polygon alert would
    n_district = len(registry.reach(district))
    n_polygon = len(registry.reach(polygon))
    t_district = _timed(lambda: registry.reach(district), 5)
    t_polygon = _timed(lambda: registry.reach(polygon), 5)
    print(f"targeting and import over {args.people} people ({url})")
    print(f"  district-wide: {n_district} recipients in {t_district * 1000:.0f} ms "
          f"({n_district / t_district:,.0f} recipients/s)")
    print(f"  polygon over half the district: {n_polygon} recipients in {t_polygon * 1000:.0f} ms "
          f"({n_polygon / t_polygon:,.0f} recipients/s)")
    print(f"  CSV import: {r['rows_per_s']:,.0f} rows/s (checked in {r['checked_s']:.1f} s, written in "
          f"{r['written_s']:.1f} s); the stored registry loads again in {r['load_s']:.1f} s")
    print(f"RESULT bench=targeting people={args.people} district_per_s={n_district / t_district:.0f} "
          f"polygon_per_s={n_polygon / t_polygon:.0f} import_rows_per_s={r['rows_per_s']:.0f} "
          f"load_s={r['load_s']:.2f}")


if __name__ == "__main__":
    main()
