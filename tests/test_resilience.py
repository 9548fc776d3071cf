"""What must hold when things go wrong: a worker killed mid-fan-out, Redis restarted,
an Extreme warning posted behind a large Minor backlog."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter


from config import Settings
from contacts.store import LiveRegistry
from contacts.synthetic import synthetic_registry, write_registry
from dispatcher.connections import redis_client
from dispatcher.alerts import AlertStore
from dispatcher.embedded import EmbeddedRedis
from dispatcher.keys import Keys
from dispatcher.planner import Planner
from tests.conftest import Harness, alert_json, eventually

DISTRICT = "420116000000"


def _worker(settings: Settings, registry_file, extra_env: dict[str, str]) -> subprocess.Popen:
    env = {**os.environ,
           "SHAOZI_REDIS_URL": settings.redis_url, "SHAOZI_REDIS_PREFIX": settings.redis_prefix,
           "SHAOZI_DATA_DIR": str(settings.data_dir), "SHAOZI_REGISTRY": str(registry_file),
           "SHAOZI_LOG_LEVEL": "warning", **extra_env}
    return subprocess.Popen([sys.executable, "-m", "dispatcher.cli", "worker"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def test_sigkill_mid_fanout_loses_nothing(settings, redis, tmp_path):
    people = 20_000
    concurrency, batch = 200, 100
    in_flight = concurrency + batch  # the window the README states: concurrency plus one batch kept for urgent work
    registry_file = write_registry(tmp_path / "registry.json", people)
    registry = synthetic_registry(people)
    env = {"SHAOZI_CHANNELS": json.dumps({"sms": {"concurrency": concurrency, "rate_per_s": 4000}}),
           "SHAOZI_BATCH_SIZE": str(batch), "SHAOZI_RECLAIM_IDLE_S": "1", "SHAOZI_RECLAIM_INTERVAL_S": "0.2"}
    async with Harness(settings, redis, registry) as h:
        _, accepted = await h.post_alert(alert_json([DISTRICT]))
        first = _worker(settings, registry_file, env)
        try:
            async def some_delivered():
                return (await h.summary(accepted["id"]))["totals"].get("delivered", 0) >= 3000
            await eventually(some_delivered, 60)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        killed_at = (await h.summary(accepted["id"]))["totals"]
        assert killed_at.get("delivered", 0) < people, "the fan-out ended before the kill"

        second = _worker(settings, registry_file, env)
        try:
            summary = await h.until_state(accepted["id"], "settled", timeout_s=120)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(30) == 0, second.stderr.read().decode()[-2000:]
        assert summary["totals"] == {"delivered": people}
        lines = Counter(line["receipt"] for line in h.outbox())
        assert len(lines) == people  # every receipt reached the outbox
        twice = sum(n - 1 for n in lines.values())
        assert twice <= in_flight, f"{twice} sent twice, more than the in-flight window {in_flight}"


async def test_redis_restart_between_202_and_fanout(settings, tmp_path, sample_registry):
    server = EmbeddedRedis(tmp_path / "own-redis", appendfsync="always")
    url = server.start()
    settings = settings.model_copy(update={"redis_url": url})
    redis = redis_client(url)
    try:
        async with Harness(settings, redis, sample_registry) as h:
            status, accepted = await h.post_alert(alert_json(["420116001000"]))
            assert status == 202
            await asyncio.to_thread(server.stop)
            server = EmbeddedRedis(tmp_path / "own-redis", port=server.port)
            await asyncio.to_thread(server.start)
            h.start_worker()
            summary = await h.until_state(accepted["id"], "settled")
            assert summary["totals"] == {"delivered": 13}
    finally:
        await redis.aclose()
        server.stop()


async def test_extreme_goes_before_a_minor_backlog(settings, redis):
    registry = synthetic_registry(20_000)
    async with Harness(settings, redis, registry) as h:
        # Plan the backlog with no sender running, so it is all waiting on the streams.
        keys = Keys(settings.redis_prefix)
        planner = Planner(redis, keys, AlertStore(redis, keys), LiveRegistry(registry), {"sms": 100}, "planner-only")
        await planner.setup()
        stop = asyncio.Event()
        planning = asyncio.create_task(planner.run(stop))
        _, minor = await h.post_alert(alert_json([DISTRICT], severity="Minor", urgency="Future"))
        await h.until_state(minor["id"], "dispatching")
        _, extreme = await h.post_alert(alert_json(["420116001001"], severity="Extreme"))
        await h.until_state(extreme["id"], "dispatching")
        stop.set()
        await planning
        assert (await h.summary(minor["id"]))["totals"] == {"queued": 20_000}  # all waiting on the streams

        h.start_worker()
        await h.until_state(minor["id"], "settled", timeout_s=120)
        order = [line["alert"] for line in h.outbox()]
        extreme_positions = [i for i, a in enumerate(order) if a == extreme["id"]]
        assert len(extreme_positions) == 100
        assert max(extreme_positions) < order.index(minor["id"]), "a Minor message went before the Extreme ones"


async def test_large_alert_is_planned_in_parts_once_each(settings, redis):
    people = 5_000
    registry = synthetic_registry(people)
    settings = settings.model_copy(update={"plan_part_size": 700, "planner_concurrency": 3})
    async with Harness(settings, redis, registry) as h:
        h.start_worker()
        _, accepted = await h.post_alert(alert_json([DISTRICT]))
        summary = await h.until_state(accepted["id"], "settled", timeout_s=60)
        assert summary["recipients"] == people and summary["totals"] == {"delivered": people}
        assert await redis.scard(Keys(settings.redis_prefix).plan_parts(accepted["id"])) == 8  # 5,000 / 700
        receipts = Counter(line["receipt"] for line in h.outbox())
        assert set(receipts) == {f"{accepted['id']}.{n}" for n in range(people)}
        assert set(receipts.values()) == {1}
        phones = Counter(line["to"] for line in h.outbox())
        assert len(phones) == people


async def test_planner_kept_for_urgent_alerts_leaves_minor_ones(settings, redis, sample_registry):
    """With planners busy on a large Minor alert, the one kept for urgent alerts stays free."""
    keys = Keys(settings.redis_prefix)
    urgent = Planner(redis, keys, AlertStore(redis, keys), LiveRegistry(sample_registry), {"sms": 100}, "urgent",
                     urgent_only=True)
    await urgent.setup()
    async with Harness(settings, redis, sample_registry) as h:
        await h.post_alert(alert_json([DISTRICT], severity="Minor", urgency="Future"))
        await h.post_alert(alert_json([DISTRICT], severity="Moderate", urgency="Expected"))
        assert await urgent.reader.read(urgent.intakes, 10, 10) == []
        _, extreme = await h.post_alert(alert_json(["420116001001"], severity="Extreme"))
        taken = await urgent.reader.read(urgent.intakes, 10, 10)
        assert [e.fields["id"] for e in taken] == [extreme["id"]]
