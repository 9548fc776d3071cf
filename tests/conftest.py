"""Shared fixtures: a real Redis (the one running on 127.0.0.1:6379, else an embedded one),
a key prefix of each test's own, and a harness that runs the real API and a real worker."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
import redis as redis_sync
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from channels.base import Channel
from channels.catalog import build_channels
from config import Settings
from contacts import Registry
from contacts.store import LiveRegistry, RegistryStore
from dispatcher.api import build_app
from dispatcher.connections import redis_client
from dispatcher.embedded import EmbeddedRedis
from dispatcher.worker import Worker

ROOT = Path(__file__).resolve().parent.parent
SHARED_CAP = ROOT.parent / "shared" / "cap"
KEYS = {"admin": "k-admin", "officer": "k-officer", "feed": "k-feed", "viewer": "k-viewer"}


def _reachable(url: str) -> bool:
    try:
        return bool(redis_sync.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis_sync.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory):
    url = os.environ.get("SHAOZI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    if _reachable(url):
        yield url
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    yield server.start()
    server.stop()


@pytest.fixture
def prefix(redis_url: str):
    """A key prefix of this test's own; its keys, and only those, are deleted afterwards."""
    name = f"sztest-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis_sync.Redis.from_url(redis_url)
    batch = list(client.scan_iter(match=f"{name}:*", count=1000))
    if batch:
        client.delete(*batch)
    client.close()


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, prefix: str) -> Settings:
    return Settings(
        redis_url=redis_url,
        redis_prefix=prefix,
        data_dir=tmp_path / "var",
        api_keys={v: k for k, v in KEYS.items()},
        reclaim_idle_s=1.0,
        reclaim_interval_s=0.2,
        retry_base_s=0.05,
        retry_max_s=0.2,
        port=0,
    )


@pytest.fixture
async def redis(redis_url: str):
    client = redis_client(redis_url)
    yield client
    await client.aclose()


async def eventually(check: Callable[[], Awaitable[object]], timeout_s: float = 30.0, every_s: float = 0.05):
    """Poll until ``check`` returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every_s)
    raise AssertionError(f"not reached within {timeout_s}s; last value: {last!r}")


class Harness:
    """The real API on a real port and, when started, a real worker in this process."""

    def __init__(self, settings: Settings, redis: Redis, registry: Registry, port: int = 0) -> None:
        self.settings = settings
        self.redis = redis
        self.seed = registry
        self.port = port
        self.session: aiohttp.ClientSession | None = None
        self._worker_stop: asyncio.Event | None = None
        self._worker_task: asyncio.Task | None = None

    async def __aenter__(self) -> Harness:
        # The registry goes into Redis, under the test's prefix, as a deployment keeps it.
        self.registry = await LiveRegistry.open(RegistryStore(self.redis, self.settings.redis_prefix), lambda: self.seed)
        self.server = TestServer(build_app(self.settings, self.redis, self.registry), port=self.port)
        await self.server.start_server()
        self.session = aiohttp.ClientSession(base_url=str(self.server.make_url("")))
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop_worker()
        await self.session.close()
        await self.server.close()

    def start_worker(self, channels: dict[str, Channel] | None = None) -> Worker:
        self._worker_stop = asyncio.Event()
        # A registry of its own over the same store, as a worker process has: it sees changes
        # made through the API by reloading, not by sharing the API's copy.
        live = LiveRegistry(self.registry.current, self.registry.store, self.registry.version)
        if channels is None:
            channels = build_channels(self.settings, live, log_messages=False)
        worker = Worker(self.settings, self.redis, live, channels)
        self._worker_task = asyncio.create_task(worker.run(self._worker_stop))
        return worker

    async def stop_worker(self) -> None:
        if self._worker_task is not None:
            self._worker_stop.set()
            await self._worker_task
            self._worker_task = None

    async def request(self, method: str, path: str, *, role: str | None = "admin", **kw) -> tuple[int, object]:
        headers = kw.pop("headers", {})
        if role:
            headers["Authorization"] = f"Bearer {KEYS[role]}"
        async with self.session.request(method, path, headers=headers, **kw) as resp:
            text = await resp.text()
            ctype = resp.headers.get("Content-Type", "")
            body = json.loads(text) if "json" in ctype else text
            return resp.status, body

    async def post_alert(self, alert: dict, **kw) -> tuple[int, dict]:
        return await self.request("POST", "/v1/alerts", json=alert, **kw)

    async def summary(self, alert_id: str) -> dict:
        status, body = await self.request("GET", f"/v1/alerts/{alert_id}")
        assert status == 200, body
        return body

    async def receipts(self, alert_id: str, by: str | None = None) -> list[dict] | dict[str, dict]:
        """An alert's receipts (up to 1,000); with ``by``, keyed by that field (recipient, address)."""
        status, body = await self.request("GET", f"/v1/alerts/{alert_id}/receipts?limit=1000")
        assert status == 200, body
        return {r[by]: r for r in body["items"]} if by else body["items"]

    async def until_state(self, alert_id: str, *states: str, timeout_s: float = 30.0) -> dict:
        async def check():
            s = await self.summary(alert_id)
            return s if s["state"] in states else None

        return await eventually(check, timeout_s)

    def outbox(self) -> list[dict]:
        path = self.settings.data_dir / "outbox" / "console.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@pytest.fixture
def sample_registry(settings: Settings) -> Registry:
    return Registry.load(settings.registry)


def community_registry(sample: Registry, code: str, change=lambda i, person: {}) -> Registry:
    """The people of one community alone (their backups and supervisors, who are elsewhere,
    left out), each changed as ``change(index, person)`` says."""
    people = [p.model_copy(update={"backup": None, "supervisor": None, **change(i, p)})
              for i, p in enumerate(sample.people_in([code]))]
    return Registry(sample.regions, people)


@pytest.fixture
async def harness(settings: Settings, redis: Redis, sample_registry: Registry):
    async with Harness(settings, redis, sample_registry) as h:
        yield h


def alert_json(regions: list[str] | None = None, *, severity: str = "Severe", urgency: str = "Immediate",
               **top: object) -> dict:
    """A JSON alert as a duty officer posts it."""
    info = {
        "category": "Met", "event": "暴雨", "urgency": urgency, "severity": severity, "certainty": "Likely",
        "headline": "暴雨预警", "description": "预计未来3小时有强降雨", "instruction": "请转移低洼地带群众",
        "area": {"areaDesc": "测试区域", "regions": regions if regions is not None else ["420116001000"]},
    }
    return {"status": "Actual", "msgType": "Alert", "scope": "Public", "info": info, **top}
