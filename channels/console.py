"""The console channel: every message goes to an outbox file (JSON lines) and to the log.

It is the embedded default for SMS until a provider is configured, and what demos and
benchmarks send through. A message written to the outbox counts as delivered.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import structlog

from channels.base import Channel, ChannelError, Delivery, SendResult, mask
from config import ChannelLimits
from channels.templates import ack_suffix, render_body

log = structlog.get_logger("shaozi.channels.console")
_encode = json.JSONEncoder(ensure_ascii=False).encode


class ConsoleChannel(Channel):
    name = "console"
    default_limits = ChannelLimits(concurrency=4000)
    carries_links = True

    def __init__(self, outbox: Path, *, log_messages: bool = True) -> None:
        self.outbox = outbox
        self.log_messages = log_messages
        self._file = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self.outbox.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.outbox, "a", encoding="utf-8")  # noqa: SIM115 - held open for the process

    async def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    async def send(self, delivery: Delivery) -> SendResult:
        outcome = (await self.send_many([delivery]))[0]
        if isinstance(outcome, ChannelError):
            raise outcome
        return outcome

    async def send_many(self, deliveries: list[Delivery]) -> list[SendResult | ChannelError]:
        if self._file is None:
            await self.start()
        now = time.time()
        # Message -> its text and the text's JSON, rendered once: deliveries of one alert share a
        # Message (escalated ones have their own), so its id is the key.
        bodies: dict[int, tuple[str, str]] = {}
        lines = []
        for d in deliveries:
            alert_id = d.message.alert_id
            body = bodies.get(id(d.message))
            if body is None:
                text = render_body(d.message)
                body = bodies[id(d.message)] = (text, _encode(text))
            suffix = ack_suffix(d.message, d.ack_url)
            # Two JSON strings join into one by dropping the quotes between them (escapes are local).
            text_json = body[1][:-1] + _encode(suffix)[1:] if suffix else body[1]
            # Ids and channel names are plain ASCII; everything else goes through the encoder.
            lines.append(f'{{"at":{now!r},"receipt":"{d.receipt_id}","alert":"{alert_id}",'
                         f'"channel":"{d.channel}","to":{_encode(d.address)},"name":{_encode(d.name)},'
                         f'"attempt":{d.attempt},"text":{text_json}}}')
        payload = "\n".join(lines) + "\n"
        async with self._lock:
            try:
                await asyncio.to_thread(self._write, payload)
            except OSError as exc:
                return [ChannelError(f"outbox write failed: {exc}", recoverable=True)] * len(deliveries)
        if self.log_messages:
            for d in deliveries:
                log.info("message", alert_id=d.message.alert_id, delivery_id=d.receipt_id, channel=d.channel,
                         to=mask(d.address), text=bodies[id(d.message)][0])
        return [SendResult(state="delivered") for _ in deliveries]

    def _write(self, payload: str) -> None:
        self._file.write(payload)
        self._file.flush()
