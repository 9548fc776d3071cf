"""Escalation: nobody stays silent unnoticed.

An alert that a policy covers has a deadline in one sorted set (``Keys.escalations``): when its
silent recipients are next looked at. Any worker takes due deadlines; taking one pushes it a
lease ahead, so the alert is taken again if that worker dies half-way. The worker reads the
alert's receipts and, for each person none of whose receipts is acknowledged, takes the next
step of their policy once its wait is over: resend, try their next channel, call them, tell
their backup, or send their supervisor the list of the silent. A step is one script over the
alert's keys (``ReceiptBook.escalate``) that records it per person, so two workers, or one
after a restart, never take the same step twice, and an acknowledgement at any time stops the
rest. Cancel and expiry drop the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import structlog
from redis.asyncio import Redis

from channels.templates import FOLLOW_UP, NAME_SEP, SILENT_LIST, language
from config import EscalationStep
from contacts import Person, Registry
from contacts.store import LiveRegistry
from dispatcher.alerts import AlertStore
from dispatcher.codec import text
from dispatcher.keys import Keys
from dispatcher.models import Alert, Info
from dispatcher.receipts import EscalationItem, NewReceipt, escalation_of
from dispatcher.streams import enqueue

log = structlog.get_logger("shaozi.escalation")

# KEYS[1] the deadlines. ARGV[1] now, ARGV[2] lease (s), ARGV[3] limit. Takes the due alerts,
# pushing each deadline a lease ahead.
_TAKE = r"""
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(due) do redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), id) end
return due
"""

ESCALATED_STATUSES = ("Actual", "Exercise")  # a drill tests the follow-up too; Test and Draft do not
COALESCE_S = 5.0  # an alert is looked at no more often than this; steps due meanwhile are taken together
CHUNK = 250  # people per script call
REACHED = ("sent", "delivered")  # a resend goes again where the first message got through


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector paused while a step builds its hundreds of thousands of
    short-lived objects: its full passes over them stalled this worker's sending for up to a
    tenth of a second each. Reference counting frees them as before; cycles wait until after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Policies:
    """Escalation policies by severity, and by severity and role (the role's own wins)."""

    def __init__(self, table: Mapping[str, list[EscalationStep]]) -> None:
        self.table = dict(table)

    def steps(self, severity: str, role: str | None) -> list[EscalationStep]:
        return self.table.get(f"{severity}:{role}", self.table.get(severity, []))

    def first_wait(self, severity: str) -> float | None:
        waits = [steps[0].wait_s for key, steps in self.table.items()
                 if steps and key.partition(":")[0] == severity]
        return min(waits) if waits else None

    async def schedule(self, redis: Redis, keys: Keys, alert_id: str, alert: Alert, start: float) -> None:
        """Set an alert's first deadline, when a policy covers it (planning calls this)."""
        info = alert.main_info()
        wait = self.first_wait(info.severity) if info and alert.status in ESCALATED_STATUSES else None
        if wait is not None:
            await redis.zadd(keys.escalations, {alert_id: start + wait})


@dataclass(slots=True)
class Recipient:
    """One person of an alert, as their receipts tell it."""

    id: str
    name: str
    region: str
    first_at: float
    numbers: list[int] = field(default_factory=list)  # every receipt that counts for them
    acknowledged: bool = False
    reached: dict[str, str] = field(default_factory=dict)  # channel -> address the alert got through on
    tried: set[str] = field(default_factory=set)  # channels they were sent to


class Escalator:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        store: AlertStore,
        registry: LiveRegistry,
        policies: Policies,
        entry_size: Mapping[str, int],
        *,
        lease_s: float = 60.0,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.store = store
        self.book = store.receipts
        self.registry = registry
        self.policies = policies
        self.entry_size = dict(entry_size)  # its keys are the channels enabled
        self.lease_s = lease_s
        self._take = redis.register_script(_TAKE)

    async def tick(self, now: float | None = None) -> int:
        """Work the alerts whose deadline has come; returns how many."""
        now = time.time() if now is None else now
        due = [text(a) for a in await self._take([self.keys.escalations], [now, self.lease_s, 20])]
        for alert_id in due:
            try:
                next_at = await self.work(alert_id, now)
            except Exception:
                # Its deadline stays a lease ahead: the alert is looked at again then.
                log.exception("escalation failed", alert_id=alert_id)
                continue
            if next_at is None:
                await self.redis.zrem(self.keys.escalations, alert_id)
            else:
                await self.redis.zadd(self.keys.escalations, {alert_id: next_at})
        return len(due)

    async def work(self, alert_id: str, now: float) -> float | None:
        """Take the steps due for an alert's silent people; returns when to look again, or None."""
        doc, state = await self.store.doc_and_state(alert_id)
        if doc is None or state.get("cancelled") or state.get("state") in ("cancelled", "expired"):
            return None
        expires_at = float(state["expires_at"]) if state.get("expires_at") else None
        if expires_at is not None and now >= expires_at:
            return None
        if state.get("planned") != "1":
            return now + COALESCE_S  # not everyone is known yet
        alert = Alert.model_validate(doc["alert"])
        info = alert.main_info()
        if info is None:
            return None
        with collector_paused():
            # In a method of its own, so that what it builds is freed before the collector resumes.
            next_at = await self._take_steps(alert_id, doc, info, now)
        if next_at is None or (expires_at is not None and next_at >= expires_at):
            return None
        return max(next_at, now + COALESCE_S)

    async def _take_steps(self, alert_id: str, doc: dict, info: Info, now: float) -> float | None:
        """Take the steps due now; returns when the next one will be due, if any."""
        registry = await self.registry.refresh(now=True)  # the registry as it is at this moment
        people, requeue = await self._recipients(alert_id, now)
        taken = await self._taken(alert_id)

        due: dict[tuple[int, str], list[tuple[Recipient, Person | None]]] = defaultdict(list)
        next_at: float | None = None
        for i, r in enumerate(people.values()):
            if i % 2000 == 1999:
                await asyncio.sleep(0)  # let this worker's senders run
            if r.acknowledged:
                continue
            person = registry.person(r.id)
            steps = self.policies.steps(info.severity, person.role if person else None)
            done, done_at = taken.get(r.id, (0, r.first_at))
            if done >= len(steps):
                continue
            at = done_at + steps[done].wait_s
            if at <= now:
                due[(done + 1, steps[done].do)].append((r, person))
                at = now + steps[done + 1].wait_s if done + 1 < len(steps) else None
            if at is not None:
                next_at = at if next_at is None else min(next_at, at)

        lang = language(info.language)
        created = list(requeue)
        for (step, action), group in sorted(due.items()):
            made = []
            # Chunk by chunk, awaiting between, so a large step never holds up this worker's
            # senders (or Redis) for long; a supervisor's list is built whole.
            parts = [group] if action == "supervisor" else [group[i:i + CHUNK] for i in range(0, len(group), CHUNK)]
            for part in parts:
                items = self._items(registry, step, action, part, lang)
                for i in range(0, len(items), CHUNK):
                    made += await self.book.escalate(alert_id, step, items[i:i + CHUNK], now)
            log.info("escalated", alert_id=alert_id, step=step, action=action, people=len(group), receipts=len(made))
            created += made
        await enqueue(self.redis, self.keys, self.entry_size, alert_id, created, int(doc["priority"]))
        return next_at

    async def _recipients(self, alert_id: str, now: float) -> tuple[dict[str, Recipient], list[tuple[int, str]]]:
        """Everyone the alert reached, from its receipts; and the escalated receipts that were
        created but, it seems, never queued (their worker died in between)."""
        people: dict[str, Recipient] = {}
        requeue: list[tuple[int, str]] = []
        total = await self.book.size(alert_id)
        for start in range(0, total, 1000):
            for n, r in await self.book.page(alert_id, start, 1000):
                whose = ""
                if r["via"]:
                    whose = escalation_of(r["via"])["for"] or ""
                    if r["s"] == "queued" and r["a"] == 0 and r["t"] < now - self.lease_s:
                        requeue.append((n, r["c"]))
                    if not whose:
                        continue  # a supervisor's list counts for nobody
                owner = whose or r["who"]
                first_at = float(r["h"][0][1]) if r["h"] else r["t"]
                p = people.get(owner)
                if p is None:
                    p = people[owner] = Recipient(owner, r["name"], r["rg"], first_at)
                p.numbers.append(n)
                p.acknowledged |= r["s"] == "acknowledged"
                p.first_at = min(p.first_at, first_at)
                if owner == r["who"]:
                    p.tried.add(r["c"])
                    if not r["via"] and r["s"] in REACHED:
                        p.reached.setdefault(r["c"], r["to"])
        return people, requeue

    async def _taken(self, alert_id: str) -> dict[str, tuple[int, float]]:
        """Person id -> the last step taken for them and when."""
        taken = {}
        # Scanned, not read whole: a district-wide alert has a field per person.
        async for key, value in self.redis.hscan_iter(self.keys.escalation(alert_id), count=1000):
            key = text(key)
            if not key.startswith("note:"):
                step, at = text(value).split("\t")
                taken[key] = (int(step), float(at))
        return taken

    def _items(self, registry: Registry, step: int, action: str, group: list[tuple[Recipient, Person | None]],
               lang: str) -> list[EscalationItem]:
        why = f"escalation step {step}: {action}"

        def item(people: list[Recipient], receipts: list[NewReceipt], note: str | None) -> EscalationItem:
            return EscalationItem([(r.id, r.name, r.numbers) for r in people], receipts, why, note, NAME_SEP[lang])

        if action == "supervisor":
            by_supervisor: dict[str | None, list[Recipient]] = defaultdict(list)
            for r, person in group:
                by_supervisor[person.supervisor if person else None].append(r)
            return [item(people, self._reach(registry.person(sid) if sid else None, f"{step}:supervisor:"),
                         SILENT_LIST[lang]) for sid, people in by_supervisor.items()]

        items = []
        for r, person in group:
            via = f"{step}:{action}:{r.id}"
            note = None  # a reminder's opening line goes without saying (see ``MessageCache.escalated``)
            if action == "resend":
                receipts = [NewReceipt(0, c, address, r.id, r.name, r.region, via=via)
                            for c, address in r.reached.items() if c in self.entry_size]
            elif action == "next_channel":
                untried = [c for c in person.channels if c not in r.tried] if person else []
                receipts = self._reach(person, via, untried)
            elif action == "voice":
                receipts = self._reach(person, via, ["voice"])
            else:  # backup
                receipts = self._reach(registry.person(person.backup) if person and person.backup else None, via)
                note = FOLLOW_UP[lang]
            items.append(item([r], receipts, note))
        return items

    def _reach(self, person: Person | None, via: str, channels: list[str] | None = None) -> list[NewReceipt]:
        """One receipt to a person on the first of ``channels`` (default: their own, in their
        order) that is enabled here and on which they have an address; none if there is none."""
        if person is None:
            return []
        for channel in person.channels if channels is None else channels:
            address = person.address(channel) if channel in self.entry_size else None
            if address:
                return [NewReceipt(0, channel, address, person.id, person.name, person.region, via=via)]
        return []
