"""Sender workers: drain a channel's delivery streams, highest priority first, through its adapter.

Retries, backoff, rate limits, deadlines and metrics live here once, for every channel. For
each batch read from the streams:

1. ``begin`` claims the receipts (one script per alert): duplicates are dropped, receipts of
   cancelled or expired alerts end there;
2. the adapter sends them, at most ``concurrency`` in flight per process;
3. ``apply`` records each outcome (one script per alert);
4. one transaction on the channel's keys schedules the retries and acknowledges the entries.

A worker killed between 2 and 4 leaves its entries pending; another worker takes them over
after ``reclaim_idle_s`` and sends the receipts still marked ``sending`` again. So at most
``concurrency`` receipts per channel can be sent twice when a worker dies.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict

import structlog
from redis.asyncio import Redis

from channels.base import Channel, ChannelError, Delivery, SendResult
from config import ChannelLimits
from dispatcher import metrics
from dispatcher.acklinks import AckLinks
from dispatcher.connections import TRANSIENT
from dispatcher.keys import SENDER_GROUP, Keys
from dispatcher.messages import MessageCache
from dispatcher.ratelimit import AddressLimiter, RateLimiter
from dispatcher.receipts import Change, ReceiptBook, receipt_id
from dispatcher.streams import Entry, PriorityReader, ensure_groups, reclaim

log = structlog.get_logger("shaozi.sender")

# KEYS[1] retry schedule, KEYS[2..] the channel's streams by priority. ARGV[1] now, ARGV[2] limit.
# Moves due retries onto their streams in one step, so none is lost or doubled; the most urgent
# first (members begin with their priority), so that a reader woken by them gets those first.
_DUE = r"""
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
table.sort(due)
for _, m in ipairs(due) do
  local p, r, n, a = string.match(m, '^(%d+)|([^|]+)|(%d+)|(%d+)$')
  redis.call('XADD', KEYS[2 + tonumber(p)], '*', 'r', r, 'n', n, 'a', a)
  redis.call('ZREM', KEYS[1], m)
end
return #due
"""


def retry_member(priority: int, alert_id: str, number: int, attempt: int) -> str:
    """A retry schedule entry, as ``_DUE`` reads it back."""
    return f"{priority}|{alert_id}|{number}|{attempt}"


def entry_size(limits: ChannelLimits, batch_size: int) -> int:
    """Receipts per delivery entry: small enough that an entry never holds the channel long.

    An urgent entry waits at most for the entries already read, so on a rate-limited channel
    an entry carries about one second of sends.
    """
    size = min(batch_size, limits.concurrency)
    if limits.rate_per_s > 0:
        size = min(size, int(limits.rate_per_s))
    return max(1, size)


def backoff_s(attempt: int, base_s: float, max_s: float, retry_after_s: float | None) -> float:
    """Exponential backoff with jitter (half to all of the step); a provider's Retry-After is a floor."""
    delay = random.uniform(0.5, 1.0) * min(max_s, base_s * 2 ** max(0, attempt - 1))
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return delay


URGENT_PRIORITY = 1  # priorities 0 and 1 may use the room kept for urgent work


class Sender:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        book: ReceiptBook,
        messages: MessageCache,
        channel: str,
        adapter: Channel,
        limits: ChannelLimits,
        consumer: str,
        *,
        batch_size: int = 500,
        reclaim_idle_s: float = 60.0,
        retry_base_s: float = 2.0,
        retry_max_s: float = 300.0,
        send_timeout_s: float = 60.0,
        ack_links: AckLinks | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.book = book
        self.messages = messages
        self.channel = channel
        self.adapter = adapter
        self.limits = limits
        self.consumer = consumer
        self.reader = PriorityReader(redis, SENDER_GROUP, consumer)
        self.batch_size = batch_size
        self.reclaim_idle_ms = int(reclaim_idle_s * 1000)
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.send_timeout_s = send_timeout_s
        self.ack_links = ack_links if adapter.carries_links else None
        self.streams = keys.delivery_streams(channel)
        self.entry_size = entry_size(limits, batch_size)
        self.limiter = RateLimiter(redis, keys.rate(channel), limits.rate_per_s)
        self.per_address = AddressLimiter(redis, lambda a: keys.window(channel, a), limits.per_address,
                                          limits.per_address_window_s) if limits.per_address else None
        self._in_flight = 0
        self._busy: Counter[int] = Counter()  # entries in flight per priority
        self._room = asyncio.Condition()
        self._tasks: set[asyncio.Task] = set()
        self._due = redis.register_script(_DUE)

    async def setup(self) -> None:
        await ensure_groups(self.redis, self.streams, SENDER_GROUP)

    # --- loops ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Read and send until ``stop`` is set, then let the batches in flight finish."""
        try:
            while not stop.is_set():
                async with self._room:
                    # One entry's room is kept for urgent work: a full window of Minor sends never
                    # makes an Extreme entry wait for one of them to finish.
                    await self._room.wait_for(lambda: self._in_flight <= self.limits.concurrency)
                    room = self.limits.concurrency - self._in_flight
                    count = max(1, room // self.entry_size)
                    # While more urgent entries are being sent, read nothing less urgent than
                    # them: the urgent ones go out first, not side by side with a backlog.
                    urgent = min((p for p, n in self._busy.items() if n), default=len(self.streams) - 1)
                    if room < self.entry_size and self._in_flight:
                        urgent = min(urgent, URGENT_PRIORITY)
                streams = self.streams[:urgent + 1]
                block_ms = 500 if len(streams) == len(self.streams) else 20
                try:
                    entries = await self.reader.read(streams, count, block_ms)
                except TRANSIENT as exc:
                    log.warning("redis unavailable; sender waits", channel=self.channel, error=str(exc))
                    await asyncio.sleep(1)
                    continue
                if entries:
                    size = sum(len(e.numbers) for e in entries)
                    # Waiting for the rate here, before reading more, keeps what is read
                    # ready to send, so an urgent entry is never queued behind throttled ones.
                    await self.limiter.take(size)
                    self._spawn(entries, size)
        finally:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    async def pump_retries(self) -> int:
        """Move due retries onto the streams; returns how many moved."""
        keys = [self.keys.retries(self.channel), *self.streams]
        return int(await self._due(keys, [time.time(), 1000]))

    async def reclaim_once(self) -> int:
        """Take over entries that a dead worker left pending; returns how many."""
        taken = 0
        for stream in self.streams:
            live, gone = await reclaim(self.redis, stream, SENDER_GROUP, self.consumer, self.reclaim_idle_ms,
                                       self.batch_size)
            if gone:
                await self.redis.xack(stream, SENDER_GROUP, *gone)
            if live:
                taken += len(live)
                log.warning("reclaimed delivery entries", channel=self.channel, count=len(live))
                await self.process(live, reclaimed=True)
        return taken

    def _spawn(self, entries: list[Entry], size: int) -> None:
        self._in_flight += size
        for e in entries:
            self._busy[self.streams.index(e.stream)] += 1
        task = asyncio.create_task(self._process_and_release(entries, size))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _process_and_release(self, entries: list[Entry], size: int) -> None:
        try:
            await self.process(entries, reclaimed=False)
        except Exception:
            # The entries stay pending and are reclaimed later: nothing is lost.
            log.exception("batch failed", channel=self.channel, size=len(entries))
        finally:
            async with self._room:
                self._in_flight -= size
                for e in entries:
                    self._busy[self.streams.index(e.stream)] -= 1
                self._room.notify_all()

    # --- one batch --------------------------------------------------------------------------

    async def process(self, entries: list[Entry], *, reclaimed: bool) -> None:
        claims: dict[str, list[tuple[int, int]]] = defaultdict(list)
        priority_of: dict[str, int] = {}
        for e in entries:
            alert_id = e.fields.get("r", "")
            if not alert_id or not e.numbers:
                log.error("malformed delivery entry", stream=e.stream, entry=e.id)
                continue
            attempt = int(e.fields.get("a", 0))
            claims[alert_id].extend((n, attempt) for n in e.numbers)
            priority_of[alert_id] = min(priority_of.get(alert_id, 9), self.streams.index(e.stream))

        retries: dict[str, float] = {}
        reached: dict[str, str] = {}  # address -> receipt id, for channels whose replies acknowledge
        for alert_id, alert_claims in claims.items():
            started = time.time()
            claimed = await self.book.begin(alert_id, alert_claims, started, reclaimed=reclaimed)
            if not claimed:
                continue
            message = await self.messages.get(alert_id)
            own = await self.messages.escalated(message, [(c.number, c.via) for c in claimed if c.via])
            links = self.ack_links
            # Claimed past the last attempt only when the far end never acknowledged the last
            # one (a gateway): that is where it ends, unsent.
            to_send = [c for c in claimed if c.attempt <= self.limits.max_attempts]
            deliveries = [
                Delivery(receipt_id=rid, channel=self.channel, address=c.address, recipient=c.recipient,
                         name=c.name, message=own.get(c.number, message), attempt=c.attempt,
                         ack_url=links.url(rid, message.expires_at) if links else None)
                for c in to_send
                for rid in (receipt_id(alert_id, c.number),)
            ]
            sent = iter(await self._send(deliveries) if deliveries else [])
            changes = []
            for c in claimed:
                outcome = next(sent) if c.attempt <= self.limits.max_attempts else None
                change, retry_at, retry_attempt = self._change(c.number, c.attempt, outcome)
                changes.append(change)
                if retry_at is not None:
                    retries[retry_member(priority_of[alert_id], alert_id, c.number, retry_attempt)] = retry_at
                elif self.adapter.replies_acknowledge and isinstance(outcome, SendResult):
                    reached[c.address] = receipt_id(alert_id, c.number)
            applied = await self.book.apply(alert_id, changes, time.time())
            metrics.record(self.channel, [c.state for c, ok in zip(changes, applied) if ok], time.time() - started)

        await self._finish(entries, retries, reached)

    async def _send(self, deliveries: list[Delivery]) -> list[SendResult | ChannelError]:
        """Send a batch, one outcome per delivery. Where an address has a limit of its own (a chat
        group), what its window has no room for is not sent but waits its turn as a retry, so more
        urgent messages to a busy group go first and other groups are not held up."""
        if self.per_address is None:
            return await self._send_now(deliveries)
        again = await self.per_address.grant([d.address for d in deliveries])
        allowed = [d for d, at in zip(deliveries, again) if at == 0]
        sent = iter(await self._send_now(allowed) if allowed else [])
        limit = f"waiting: at most {self.limits.per_address} per {self.limits.per_address_window_s:g}s to one address"
        now = time.time()
        return [next(sent) if at == 0 else ChannelError(limit, throttled=True, recoverable=True, retry_after_s=at - now)
                for at in again]

    async def _send_now(self, deliveries: list[Delivery]) -> list[SendResult | ChannelError]:
        try:
            return await asyncio.wait_for(self.adapter.send_many(deliveries), self.send_timeout_s)
        except asyncio.TimeoutError:
            return [ChannelError(f"no answer within {self.send_timeout_s:g}s", recoverable=True)] * len(deliveries)

    def _change(self, number: int, attempt: int,
                outcome: SendResult | ChannelError | None) -> tuple[Change, float | None, int]:
        """The change an outcome makes, and when and as which attempt to send again, if at all.
        ``None`` is the check after the last attempt that nobody acknowledged."""
        now = time.time()
        if outcome is None:
            error = f"no-ack: no acknowledgement of {self.limits.max_attempts} attempts"
            return Change(number, "failed", {"e": error, "back": 1}), None, attempt
        if isinstance(outcome, SendResult):
            fields = {k: v for k, v in (("p", outcome.provider_id), ("note", outcome.note)) if v}
            if outcome.await_ack_s is not None:  # sent again unless acknowledged by then
                retry_at = now + outcome.await_ack_s
                return Change(number, "sending", {**fields, "retry_at": round(retry_at, 3)}), retry_at, attempt
            return Change(number, outcome.state, fields), None, attempt
        error = f"{outcome.code}: {outcome.reason}" if outcome.code else outcome.reason
        if not outcome.recoverable:
            return Change(number, "failed", {"e": error}), None, attempt
        if outcome.throttled:
            # Waits until there is room, however long (expiry ends it); waiting is not an attempt,
            # so it is handed back. No jitter: what is due together goes most urgent first.
            wait = outcome.retry_after_s if outcome.retry_after_s is not None else self.limits.throttled_wait_s
            retry_at = now + wait
            return Change(number, "sending", {"e": error, "retry_at": round(retry_at, 3), "back": 1}), retry_at, \
                attempt - 1
        if attempt >= self.limits.max_attempts:
            return Change(number, "failed", {"e": f"{error} (gave up after {attempt} attempts)"}), None, attempt
        retry_at = now + backoff_s(attempt, self.retry_base_s, self.retry_max_s, outcome.retry_after_s)
        return Change(number, "sending", {"e": error, "retry_at": round(retry_at, 3)}), retry_at, attempt

    async def _finish(self, entries: list[Entry], retries: dict[str, float], reached: dict[str, str]) -> None:
        """Schedule retries, note each address's latest receipt and acknowledge the entries, in
        one transaction on the channel's keys."""
        by_stream: dict[str, list[str]] = defaultdict(list)
        for e in entries:
            by_stream[e.stream].append(e.id)
        async with self.redis.pipeline(transaction=True) as tx:
            if retries:
                tx.zadd(self.keys.retries(self.channel), retries)
            if reached:
                tx.hset(self.keys.latest(self.channel), mapping=reached)
            for stream, ids in by_stream.items():
                tx.xack(stream, SENDER_GROUP, *ids)
                tx.xdel(stream, *ids)
            await asyncio.shield(tx.execute())
