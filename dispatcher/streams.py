"""Redis streams: queuing receipts on the delivery streams, and reading streams by priority
through consumer groups."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from dispatcher.codec import text
from dispatcher.keys import Keys


@dataclass(frozen=True, slots=True)
class Entry:
    stream: str
    id: str
    fields: dict[str, str]
    numbers: tuple[int, ...] = ()  # the receipt numbers a delivery entry carries (field ``n``)

    @classmethod
    def of(cls, stream: bytes | str, msg_id: bytes | str, raw: dict | None) -> Entry:
        fields = {text(k): text(v) for k, v in (raw or {}).items()}
        try:
            numbers = tuple(decode_numbers(fields.get("n", "")))
        except ValueError:
            numbers = ()
        return cls(text(stream), text(msg_id), fields, numbers)


def _entries(reply: Sequence | dict | None) -> list[Entry]:
    if not reply:
        return []
    items = reply.items() if isinstance(reply, dict) else reply
    out = []
    for stream, messages in items:
        if messages and isinstance(messages[0], list) and messages and isinstance(messages[0][0], (list, tuple)):
            messages = messages[0]  # RESP3 shape
        for msg_id, fields in messages:
            out.append(Entry.of(stream, msg_id, fields))
    return out


async def ensure_groups(redis: Redis, streams: Sequence[str], group: str) -> None:
    for stream in streams:
        try:
            await redis.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


# KEYS: streams, most urgent first (one hash tag). ARGV: group, consumer, count.
# New entries of the first stream that has any, in one round trip instead of one per stream.
_READ_FIRST = r"""
for _, key in ipairs(KEYS) do
  local got = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', key, '>')
  if got then return got end
end
return false
"""


class PriorityReader:
    """Reads a set of streams through a consumer group, most urgent stream first."""

    def __init__(self, redis: Redis, group: str, consumer: str) -> None:
        self.redis = redis
        self.group = group
        self.consumer = consumer
        self._read_first = redis.register_script(_READ_FIRST)

    async def read(self, streams: Sequence[str], count: int, block_ms: int) -> list[Entry]:
        """New entries from the first of ``streams`` that has any; when all are empty, block on
        all of them at once for up to ``block_ms``."""
        got = await self._first(streams, count)
        if got:
            return got
        woken = _entries(await self.redis.xreadgroup(self.group, self.consumer, {s: ">" for s in streams},
                                                     count=count, block=block_ms))
        if not woken:
            return woken
        # Redis wakes a blocked read with the stream that got an entry first, which need not be
        # the most urgent of those that got one at the same moment: look there too, and first.
        most_urgent = min(streams.index(e.stream) for e in woken)
        return (await self._first(streams[:most_urgent], count) if most_urgent else []) + woken

    async def _first(self, streams: Sequence[str], count: int) -> list[Entry]:
        got = await self._read_first(list(streams), [self.group, self.consumer, count])
        return [Entry.of(stream, msg_id, _pairs(fields)) for stream, messages in got or [] for msg_id, fields in messages]


def _pairs(flat: Sequence) -> dict:
    return dict(zip(flat[::2], flat[1::2]))


async def reclaim(
    redis: Redis, stream: str, group: str, consumer: str, min_idle_ms: int, count: int
) -> tuple[list[Entry], list[str]]:
    """Take over entries another consumer left pending for ``min_idle_ms``.

    Returns the live entries and the ids of pending entries whose data was already deleted.
    """
    live: list[Entry] = []
    gone: list[str] = []
    start = "0-0"
    while True:
        reply = await redis.xautoclaim(stream, group, consumer, min_idle_ms, start_id=start, count=count)
        start = text(reply[0])
        for msg_id, fields in reply[1]:
            if fields:
                live.append(Entry.of(stream, msg_id, fields))
            else:
                gone.append(text(msg_id))
        if len(reply) > 2:
            gone.extend(text(i) for i in reply[2] or [])
        if start == "0-0" or len(live) >= count:
            return live, gone


def encode_numbers(numbers: Sequence[int]) -> str:
    """Receipt numbers as compact ranges: [0, 1, 2, 5, 7, 8] -> '0-2,5,7-8'."""
    ordered = sorted(numbers)
    if not ordered:
        return ""
    if ordered[-1] - ordered[0] == len(ordered) - 1:  # the usual case: one run (numbers are unique)
        return str(ordered[0]) if len(ordered) == 1 else f"{ordered[0]}-{ordered[-1]}"
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def decode_numbers(text: str) -> list[int]:
    numbers: list[int] = []
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        numbers.extend(range(int(first), int(last or first) + 1))
    return numbers


async def enqueue(redis: Redis, keys: Keys, entry_size: Mapping[str, int], alert_id: str,
                  receipts: Iterable[tuple[int, str]], priority: int) -> None:
    """Queue receipts (number, channel) on their channels' streams, several receipts to an entry."""
    by_channel: dict[str, list[int]] = {}
    for n, channel in receipts:
        by_channel.setdefault(channel, []).append(n)
    if not by_channel:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for channel, numbers in by_channel.items():
            size = entry_size.get(channel, 1)
            for i in range(0, len(numbers), size):
                pipe.xadd(keys.deliveries(channel, priority), {"r": alert_id, "n": encode_numbers(numbers[i:i + size]),
                                                               "a": 0})
        await pipe.execute()
