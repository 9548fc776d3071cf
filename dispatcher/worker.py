"""A worker process: planners, one sender per channel, the retry pump, reclaiming, escalation
and a heartbeat."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog
from redis.asyncio import Redis

from channels.base import Channel
from channels.mqtt import MqttChannel
from config import Settings
from contacts.store import LiveRegistry
from dispatcher.acklinks import AckLinks
from dispatcher.alerts import AlertStore
from dispatcher.escalation import Escalator, Policies
from dispatcher.gateway_acks import GatewayAcks
from dispatcher.keys import Keys
from dispatcher.messages import MessageCache
from dispatcher.planner import Planner
from dispatcher.sender import Sender

log = structlog.get_logger("shaozi.worker")

HEARTBEAT_S = 5.0
ALIVE_WITHIN_S = 15.0
PRUNE_EVERY_S = 3600.0


class Worker:
    def __init__(self, settings: Settings, redis: Redis, registry: LiveRegistry, channels: dict[str, Channel]) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = Keys(settings.redis_prefix)
        self.name = settings.process_name()
        self.store = AlertStore(redis, self.keys)
        self.channels = channels
        messages = MessageCache(self.store)
        ack_links = AckLinks(settings.signing_secret(), settings.base_url())
        self.senders = [
            Sender(redis, self.keys, self.store.receipts, messages, name, adapter,
                   settings.limits(name, adapter), self.name,
                   batch_size=settings.batch_size, reclaim_idle_s=settings.reclaim_idle_s,
                   retry_base_s=settings.retry_base_s, retry_max_s=settings.retry_max_s, ack_links=ack_links)
            for name, adapter in channels.items()
        ]
        entry_sizes = {s.channel: s.entry_size for s in self.senders}
        policies = Policies(settings.escalation)
        self.planners = [
            Planner(redis, self.keys, self.store, registry, entry_sizes, f"{self.name}/plan{i}",
                    reclaim_idle_s=settings.reclaim_idle_s, part_size=settings.plan_part_size, urgent_only=i > 0,
                    policies=policies)
            for i in range(settings.planner_concurrency)
        ]
        if isinstance(channels.get("mqtt"), MqttChannel):
            channels["mqtt"].on_message = GatewayAcks(redis, self.keys, self.store.receipts,
                                                      retry_s=settings.retry_base_s).handle
        self.escalator = Escalator(redis, self.keys, self.store, registry, policies, entry_sizes,
                                   lease_s=settings.reclaim_idle_s)

    async def run(self, stop: asyncio.Event) -> None:
        for adapter in {id(a): a for a in self.channels.values()}.values():
            await adapter.start()
        for part in (*self.planners, *self.senders):
            await part.setup()
        log.info("worker started", worker=self.name, channels=sorted(self.channels))
        tasks = [asyncio.create_task(p.run(stop)) for p in self.planners]
        tasks += [asyncio.create_task(s.run(stop)) for s in self.senders]
        tasks.append(asyncio.create_task(self._every(stop, HEARTBEAT_S, self.heartbeat)))
        tasks.append(asyncio.create_task(self._every(stop, 0.25, self._pump)))
        tasks.append(asyncio.create_task(self._every(stop, self.settings.reclaim_interval_s, self._reclaim)))
        tasks.append(asyncio.create_task(self._every(stop, self.settings.escalation_interval_s, self.escalator.tick)))
        if self.settings.retention_days > 0:
            tasks.append(asyncio.create_task(self._every(stop, PRUNE_EVERY_S, self.prune)))
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.redis.zrem(self.keys.workers, self.name)
            for adapter in {id(a): a for a in self.channels.values()}.values():
                await adapter.close()
            log.info("worker stopped", worker=self.name)

    async def heartbeat(self) -> None:
        await self.redis.zadd(self.keys.workers, {self.name: time.time()})

    async def prune(self, now: float | None = None) -> int:
        """Forget alerts older than the retention period; returns how many."""
        before = (now or time.time()) - self.settings.retention_days * 86400
        pruned = 0
        while (n := await self.store.prune(before)) > 0:
            pruned += n
        if pruned:
            log.info("pruned old alerts", count=pruned, retention_days=self.settings.retention_days)
        return pruned

    async def _pump(self) -> None:
        for sender in self.senders:
            await sender.pump_retries()

    async def _reclaim(self) -> None:
        await self.planners[0].reclaim_once()
        for sender in self.senders:
            await sender.reclaim_once()

    @staticmethod
    async def _every(stop: asyncio.Event, period_s: float, job: Callable[[], Awaitable[object]]) -> None:
        while not stop.is_set():
            try:
                await job()
            except Exception:
                log.exception("periodic job failed", job=getattr(job, "__name__", "job"))
            try:
                await asyncio.wait_for(stop.wait(), period_s)
            except asyncio.TimeoutError:
                pass


async def workers_alive(redis: Redis, keys: Keys) -> int:
    return int(await redis.zcount(keys.workers, time.time() - ALIVE_WITHIN_S, "+inf"))
