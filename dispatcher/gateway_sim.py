"""Simulated loudspeaker gateways (``shaozi gateway-sim``), for drills, fault tests and benchmarks.

Each gateway connects with its own client id and a persistent session, leaves ``offline`` as its
retained last will, announces ``online``, and for every command on its topic: checks the
signature with its key, the expiry and that the nonce is new; refuses what fails (``failed``
with the reason); acknowledges ``received``, plays it (optionally speaking it into a WAV file
with espeak-ng) and acknowledges ``played``. A command for a warning it has already played (sent
again because an acknowledgement was lost) is acknowledged again, not played twice.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import structlog

from channels.gateway_contract import ack, ack_topic, cmd_topic, status_topic, verify
from channels.mqtt import client_settings

log = structlog.get_logger("shaozi.gateway-sim")


@dataclass
class Gateway:
    device_id: str
    key: str
    url: str
    prefix: str
    play_s: float = 0.2
    drop_acks: float = 0.0  # the share of acknowledgements not sent (a flaky link)
    speak_dir: Path | None = None
    ca_file: Path | None = None  # for an mqtts broker with a private CA
    seen_nonces: set[str] = field(default_factory=set)
    played: list[str] = field(default_factory=list)  # delivery ids, in the order played
    accepted: list[dict] = field(default_factory=list)  # the commands taken, as received
    refused: list[tuple[str, str]] = field(default_factory=list)  # (delivery id, reason)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    # Acknowledgements not yet taken by the broker: kept across reconnects, like a gateway's
    # firmware keeps them, so that a broker restart loses none.
    pending_acks: list[bytes] = field(default_factory=list)
    _client: aiomqtt.Client | None = None
    _flushing: asyncio.Lock = field(default_factory=asyncio.Lock)
    _handling: set[asyncio.Task] = field(default_factory=set)  # held, so they are not collected mid-way

    async def run(self, stop: asyncio.Event) -> None:
        """Serve commands until ``stop`` is set, reconnecting when the broker goes away."""
        will = aiomqtt.Will(status_topic(self.prefix, self.device_id), b"offline", qos=1, retain=True)
        while not stop.is_set():
            try:
                async with aiomqtt.Client(**client_settings(self.url, self.ca_file), identifier=f"gw-{self.device_id}",
                                          clean_session=False, will=will, timeout=10) as client:
                    await client.subscribe(cmd_topic(self.prefix, self.device_id), qos=1)
                    await client.publish(status_topic(self.prefix, self.device_id), b"online", qos=1, retain=True)
                    self._client = client
                    self.connected.set()
                    await self._flush()
                    reader = asyncio.create_task(self._serve(client))
                    stopper = asyncio.create_task(stop.wait())
                    await asyncio.wait([reader, stopper], return_when=asyncio.FIRST_COMPLETED)
                    stopper.cancel()
                    if reader.done():
                        reader.result()  # raises what ended it
                    reader.cancel()
                    # Going away on purpose: say so, as the will would.
                    await client.publish(status_topic(self.prefix, self.device_id), b"offline", qos=1, retain=True)
            except aiomqtt.MqttError:
                self.connected.clear()
                await asyncio.sleep(0.5)
            finally:
                self._client = None
        self.connected.clear()

    async def _serve(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            # Handled aside, so that a warning being played never holds up the next command.
            task = asyncio.create_task(self.handle(message.payload))
            self._handling.add(task)
            task.add_done_callback(self._handling.discard)

    async def handle(self, payload: object) -> None:
        try:
            command = json.loads(payload)  # type: ignore[arg-type]
            delivery_id = str(command["delivery_id"])
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable command", device=self.device_id)
            return
        reason = verify(command, self.key)
        if reason is None and command["nonce"] in self.seen_nonces:
            reason = "replayed"
        if reason is not None:
            self.refused.append((delivery_id, reason))
            log.warning("command refused", device=self.device_id, delivery_id=delivery_id, reason=reason)
            await self._ack(delivery_id, "failed", reason)
            return
        self.seen_nonces.add(command["nonce"])
        self.accepted.append(command)
        await self._ack(delivery_id, "received")
        if delivery_id not in self.played:
            self.played.append(delivery_id)
            await self._play(command)
        await self._ack(delivery_id, "played")

    async def _play(self, command: dict) -> None:
        if self.speak_dir is not None and shutil.which("espeak-ng"):
            wav = self.speak_dir / f"{self.device_id}-{command['delivery_id']}.wav"
            voice = "cmn" if str(command.get("lang", "")).startswith("zh") else "en"
            proc = await asyncio.create_subprocess_exec(
                "espeak-ng", "-v", voice, "-w", str(wav), command["text"],
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            await proc.wait()
        await asyncio.sleep(self.play_s)

    async def _ack(self, delivery_id: str, state: str, reason: str | None = None) -> None:
        if self.drop_acks and random.random() < self.drop_acks:
            return
        self.pending_acks.append(ack(delivery_id, state, reason))
        await self._flush()

    async def _flush(self) -> None:
        """Publish the pending acknowledgements in order, as far as the connection lets."""
        async with self._flushing:
            while self.pending_acks and self._client is not None:
                try:
                    await self._client.publish(ack_topic(self.prefix, self.device_id), self.pending_acks[0], qos=1)
                except aiomqtt.MqttError:
                    return  # kept for the next connection
                self.pending_acks.pop(0)


async def run_gateways(gateways: list[Gateway], stop: asyncio.Event, *, offline_after: float | None = None,
                       offline_for: float = 30.0) -> None:
    """Run the gateways until ``stop``; for a drill, take them all offline after ``offline_after``
    seconds, for ``offline_for`` seconds, then back online."""
    while not stop.is_set():
        going = asyncio.Event()
        tasks = [asyncio.create_task(g.run(going)) for g in gateways]
        if await _wait(stop, offline_after):
            going.set()
            await asyncio.gather(*tasks)
            log.info("gateways offline for a drill", gateways=len(gateways), seconds=offline_for)
            await _wait(stop, offline_for)
            continue
        going.set()
        await asyncio.gather(*tasks)


async def _wait(stop: asyncio.Event, seconds: float | None) -> bool:
    """Wait for ``stop`` or ``seconds``; True when the time ran out first."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
        return False
    except asyncio.TimeoutError:
        return True


def report(gateways: list[Gateway], since: float) -> str:
    played = sum(len(g.played) for g in gateways)
    refused = sum(len(g.refused) for g in gateways)
    return (f"{len(gateways)} gateways: {played} warnings played, {refused} commands refused "
            f"in {time.time() - since:.0f}s")

