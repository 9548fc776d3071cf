"""What the benchmarks share: a Redis to run against, a key prefix of their own, worker processes."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import redis as redis_sync

from contacts import Registry
from contacts.store import LiveRegistry, RegistryStore
from dispatcher.connections import redis_client
from dispatcher.embedded import EmbeddedRedis
from dispatcher.models import Alert

DISTRICT = "420116000000"
COMMUNITY = "420116001001"


def bench_alert(tag: str, *, severity: str = "Severe", urgency: str = "Immediate", region: str = DISTRICT) -> Alert:
    """A drill alert (status Exercise) with a fresh identifier."""
    return Alert.model_validate({
        "identifier": f"{tag}-{time.time_ns()}", "sender": "bench", "sent": "2026-07-01T08:00:00+08:00",
        "status": "Exercise", "msgType": "Alert", "scope": "Public",
        "info": {"category": "Met", "event": "暴雨", "urgency": urgency, "severity": severity,
                 "certainty": "Likely", "headline": "暴雨预警", "description": "预计未来3小时有强降雨",
                 "instruction": "请转移低洼地带群众", "area": {"areaDesc": "测试区域", "regions": [region]}},
    })


@contextlib.contextmanager
def bench_redis(url: str | None) -> Iterator[str]:
    """The given Redis, else the one on 127.0.0.1:6379, else an embedded one for the run."""
    candidates = [url] if url else ["redis://127.0.0.1:6379/0"]
    for candidate in candidates:
        try:
            if redis_sync.Redis.from_url(candidate, socket_connect_timeout=0.5).ping():
                yield candidate
                return
        except redis_sync.RedisError:
            if url:
                raise
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp))
        try:
            yield server.start()
        finally:
            server.stop()


@contextlib.contextmanager
def own_prefix(url: str) -> Iterator[str]:
    """A key prefix for one run; its keys (and only those) are deleted afterwards."""
    prefix = f"shaozi-bench-{uuid.uuid4().hex[:8]}"
    try:
        yield prefix
    finally:
        client = redis_sync.Redis.from_url(url)
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i:i + 1000])
        client.close()


def start_worker(env: dict[str, str]) -> subprocess.Popen:
    """A worker process, the registry already in Redis as a deployment has it (the first start
    of a deployment seeds it from the file; a benchmark measures the ones after)."""
    if "SHAOZI_REGISTRY" in env:
        seed_registry(env["SHAOZI_REDIS_URL"], env["SHAOZI_REDIS_PREFIX"], Path(env["SHAOZI_REGISTRY"]))
    return subprocess.Popen([sys.executable, "-m", "dispatcher.cli", "worker"], env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def seed_registry(url: str, prefix: str, path: Path) -> None:
    async def seed() -> None:
        client = redis_client(url)
        try:
            await LiveRegistry.open(RegistryStore(client, prefix), lambda: Registry.load(path))
        finally:
            await client.aclose()

    # In a thread of its own: a benchmark may call this from inside its event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, seed()).result()


def stop_worker(proc: subprocess.Popen) -> float:
    """Stop a worker; returns its peak resident memory in MB."""
    peak = peak_rss_mb(proc.pid)
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return peak


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def wait_until(check, timeout_s: float, every_s: float = 0.02):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every_s)
    raise TimeoutError(f"not done within {timeout_s}s")
