"""The planner: from an accepted alert to receipts queued on the delivery streams.

It reads the intake streams (highest priority first), works out the recipients from the
registry, creates one receipt per (recipient, channel) in batches and queues each on its
channel's stream at the alert's priority. A large alert is planned in parts, by as many
planners as take them. Planning is idempotent: a planner that dies half-way leaves its intake
entry pending, another takes it over and plans that alert or part again, and only what is
missing is created or queued.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice

import structlog
from redis.asyncio import Redis

from contacts import Device, Group, Person, Registry
from contacts.store import LiveRegistry
from contacts.targeting import Target
from dispatcher.alerts import AlertStore
from dispatcher.connections import TRANSIENT
from dispatcher.escalation import Policies
from dispatcher.keys import INTAKE_GROUP, Keys
from dispatcher.models import Alert
from dispatcher.receipts import NewReceipt
from dispatcher.streams import Entry, PriorityReader, enqueue, ensure_groups, reclaim

log = structlog.get_logger("shaozi.planner")

CHUNK = 250  # receipts per script call: small enough not to hold Redis up for urgent work
URGENT_PRIORITIES = 2  # priorities 0 and 1 are read by the planners kept for urgent alerts


def plan_receipts(
    people: Iterable[Person | Group | Device], enabled: Iterable[str], only: Iterable[str] | None, *, first_number: int = 0
) -> Iterator[NewReceipt]:
    """One receipt per (person, channel): each channel of theirs that is enabled and allowed.

    Receipts come in registry order, numbered on from ``first_number``, so planning the same
    alert (or the same part of it) again yields the same numbers.
    """
    enabled = set(enabled)
    allowed = set(only) if only else None
    number = first_number
    for person in people:
        for channel, address, state, note in _person_receipts(person, enabled, allowed):
            yield NewReceipt(number, channel, address, person.id, person.name, person.region, state, note)
            number += 1


def count_receipts(people: Iterable[Person | Group | Device], enabled: Iterable[str], only: Iterable[str] | None) -> int:
    enabled = set(enabled)
    allowed = set(only) if only else None
    return sum(len(_person_receipts(p, enabled, allowed)) for p in people)


def _person_receipts(person: Person | Group | Device, enabled: set[str], allowed: set[str] | None) -> list[tuple]:
    """(channel, address, state, note) of each receipt one person gets.

    Someone none of whose channels can carry the alert still gets a receipt, ``undeliverable``,
    so that nobody in the area is silently left out.
    """
    out = []
    for channel in person.channels:
        if (allowed is not None and channel not in allowed) or channel not in enabled:
            continue
        address = person.address(channel)
        if address:
            out.append((channel, address, "queued", None))
        else:
            out.append((channel, "", "undeliverable", f"no {channel} address"))
    if not out and allowed is None:
        out.append((person.channels[0] if person.channels else "sms", "", "undeliverable",
                    f"none of the channels {person.channels} is enabled"))
    return out


def batched(items: Iterable[NewReceipt], size: int) -> Iterator[list[NewReceipt]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


class Planner:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        store: AlertStore,
        registry: LiveRegistry,
        entry_size: Mapping[str, int],
        consumer: str,
        *,
        reclaim_idle_s: float = 60.0,
        part_size: int = 20_000,
        urgent_only: bool = False,
        policies: Policies | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.store = store
        self.book = store.receipts
        self.registry = registry
        self.entry_size = dict(entry_size)  # channel -> receipts per delivery entry; its keys are the channels enabled
        self.enabled = tuple(entry_size)
        self.consumer = consumer
        self.reader = PriorityReader(redis, INTAKE_GROUP, consumer)
        self.reclaim_idle_ms = int(reclaim_idle_s * 1000)
        self.part_size = part_size
        self.policies = policies
        self._reached: tuple[str, Registry, list] | None = None  # (alert id, registry, recipients)
        # A planner kept for urgent alerts reads only the two most urgent intake streams, so an
        # Extreme warning never waits while every planner is busy with a large Minor one.
        self.intakes = self.keys.intakes()[:URGENT_PRIORITIES] if urgent_only else self.keys.intakes()

    async def setup(self) -> None:
        await ensure_groups(self.redis, self.keys.intakes(), INTAKE_GROUP)

    async def run(self, stop: asyncio.Event) -> None:
        """Plan alerts until ``stop`` is set; one alert at a time, highest priority first."""
        while not stop.is_set():
            try:
                entries = await self.reader.read(self.intakes, 1, 500)
            except TRANSIENT as exc:
                log.warning("redis unavailable; planner waits", error=str(exc))
                await asyncio.sleep(1)
                continue
            for entry in entries:
                await self.handle(entry)

    async def reclaim_once(self) -> int:
        """Take over intake entries of planners that died; returns how many were planned."""
        done = 0
        for stream in self.keys.intakes():
            live, gone = await reclaim(self.redis, stream, INTAKE_GROUP, self.consumer, self.reclaim_idle_ms, 10)
            if gone:
                await self.redis.xack(stream, INTAKE_GROUP, *gone)
            for entry in live:
                await self.handle(entry)
                done += 1
        return done

    async def handle(self, entry: Entry) -> None:
        alert_id = entry.fields.get("id", "")
        part = entry.fields.get("part")
        try:
            await self.plan(alert_id, int(part) if part is not None else None, entry.stream)
        except Exception:
            # Left pending: it is planned again once reclaimed. Never lost.
            log.exception("planning failed", alert_id=alert_id, part=part)
            return
        await self.redis.xack(entry.stream, INTAKE_GROUP, entry.id)

    async def plan(self, alert_id: str, part: int | None = None, stream: str | None = None) -> None:
        """Plan an alert, or one part of it.

        An alert reaching more than ``part_size`` people is split: its entry becomes one intake
        entry per part, which any planner of any worker takes, so several plan it at once.
        """
        doc, state = await self.store.doc_and_state(alert_id)
        if doc is None:
            log.error("intake entry names no stored alert", alert_id=alert_id)
            return
        if state.get("planned") == "1":
            return
        alert = Alert.model_validate(doc["alert"])
        now = time.time()
        if part is None:
            expires_at = alert.expires_at()
            await self.book.mark(
                alert_id, now, state="planning", priority=doc["priority"], status=alert.status,
                expires_at=expires_at if expires_at is not None else "",
            )
            referenced = await self._supersede(alert_id, alert, now)
            if self.policies is not None:
                await self.policies.schedule(self.redis, self.keys, alert_id, alert, now)
        else:
            referenced = await self._referenced(alert_id, alert)

        target = alert.target()
        if not (target.codes or target.has_shapes) and alert.msgType == "Cancel":
            target = await self._target_of(referenced)  # a Cancel without an area goes where its alert went
        registry = await self.registry.refresh(now=True)  # an alert right after a change must see it
        recipients = self._reach(alert_id, registry, target)
        parts = max(1, math.ceil(len(recipients) / self.part_size))
        if part is None and parts > 1:
            # Other planners take parts 1.. while this one plans part 0 at once.
            async with self.redis.pipeline(transaction=False) as pipe:
                for k in range(1, parts):
                    pipe.xadd(stream or self.keys.intake(doc["priority"]), {"id": alert_id, "part": k})
                await pipe.execute()
            log.info("planning in parts", alert_id=alert_id, recipients=len(recipients), parts=parts)

        k = part or 0
        first, last = k * self.part_size, min(len(recipients), (k + 1) * self.part_size)
        number = count_receipts(recipients[:first], self.enabled, alert.channels)
        # Chunk by chunk, so the first messages go out while the rest is still being planned.
        for chunk in batched(plan_receipts(recipients[first:last], self.enabled, alert.channels, first_number=number),
                             CHUNK):
            to_queue = await self.book.create(alert_id, chunk, now)
            channels = {r.number: r.channel for r in chunk}
            await enqueue(self.redis, self.keys, self.entry_size, alert_id, [(n, channels[n]) for n in to_queue],
                          doc["priority"])
        final = await self.book.part_planned(alert_id, k, parts, len(recipients), time.time())
        log.info("planned", alert_id=alert_id, part=k, parts=parts, recipients=len(recipients), state=final,
                 unknown_regions=registry.unknown_codes(target.codes) or None)

    async def _referenced(self, alert_id: str, alert: Alert) -> list[str]:
        """Ids of the earlier alerts an Update or Cancel references."""
        if alert.msgType not in ("Update", "Cancel"):
            return []
        found = []
        for sender, identifier in alert.referenced():
            ref = await self.store.find(sender, identifier)
            if ref is None or ref == alert_id:
                log.warning("reference to an unknown alert", alert_id=alert_id, sender=sender, identifier=identifier)
                continue
            found.append(ref)
        return found

    async def _supersede(self, alert_id: str, alert: Alert, now: float) -> list[str]:
        """An Update or Cancel ends what is still unsent of the alerts it references."""
        found = await self._referenced(alert_id, alert)
        for ref in found:
            await self.cancel(ref, by=alert_id, now=now)
        return found

    async def cancel(self, alert_id: str, *, by: str, now: float) -> int:
        await self.book.mark(alert_id, now, cancelled=by, state="cancelled")
        total = await self.book.size(alert_id)
        ended = 0
        for first in range(0, total, CHUNK * 2):
            ended += await self.book.sweep(alert_id, "cancelled", f"cancelled by {by}", first,
                                           min(total, first + CHUNK * 2) - 1, now)
        log.info("cancelled", alert_id=alert_id, by=by, ended=ended)
        return ended

    def _reach(self, alert_id: str, registry: Registry, target: Target) -> list:
        """Whom the alert reaches; kept for the alert's next part, which this planner often plans too."""
        if self._reached is not None and self._reached[0] == alert_id and self._reached[1] is registry:
            return self._reached[2]
        recipients = registry.reach(target)
        self._reached = (alert_id, registry, recipients)
        return recipients

    async def _target_of(self, alert_ids: list[str]) -> Target:
        target = Target()
        for ref in alert_ids:
            doc = await self.store.doc(ref)
            if doc:
                target = target.merged(Alert.model_validate(doc["alert"]).target())
        return target
