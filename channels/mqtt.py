"""Loudspeaker and broadcast gateways over MQTT (``channels.gateway_contract``).

One long-lived connection per process: QoS 1, a persistent session under the worker's name
(when it has a stable one), and the reconnect loop aiomqtt's documentation recommends. A command is signed
with the device's key and published; the gateway's own acknowledgements (``received``,
``played``, ``failed``) come back on the ack topics and are handed to ``on_message``, which
moves the receipts. Until one does, the receipt stays ``sending``, and the sender publishes
the command again after ``ack_timeout_s``. A gateway whose retained status says ``offline`` is
not sent to: its command waits for it to come back (until the alert expires).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiomqtt
import structlog

from channels.base import Channel, ChannelError, Delivery, SendResult
from channels.gateway_contract import cmd_topic, command_for, device_of, encode, status_of
from config import ChannelLimits

log = structlog.get_logger("shaozi.mqtt")

OnMessage = Callable[[str, str, bytes], Awaitable[None]]  # device id, kind (ack | status), payload
RECONNECT_S = 1.0
CONNECT_WAIT_S = 5.0  # how long a send waits for a connection before it is retried later


def client_settings(url: str, ca_file: str | Path | None = None) -> dict:
    """aiomqtt.Client arguments from ``mqtt[s]://user:pass@host:port`` (``mqtts`` verifies the
    broker's certificate against ``ca_file``, else the system's CAs)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
        raise ValueError(f"not an MQTT URL: {parts.scheme}://{parts.hostname or ''} (mqtt://host:1883 or mqtts://…)")
    tls = parts.scheme in ("mqtts", "ssl")
    return {
        "hostname": parts.hostname,
        "port": parts.port or (8883 if tls else 1883),
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "tls_context": ssl.create_default_context(cafile=ca_file) if tls else None,
    }


class MqttChannel(Channel):
    name = "mqtt"
    default_limits = ChannelLimits(concurrency=64, max_attempts=3)
    secret_fields = ("url",)

    def __init__(
        self,
        url: str,
        prefix: str,
        client_id: str,
        keys: Callable[[str], str | None],
        *,
        ack_timeout_s: float = 30.0,
        max_inflight: int = 10,
        offline_recheck_s: float = 5.0,
        persistent: bool = True,
        ca_file: str | Path | None = None,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.client_id = client_id
        self.keys = keys  # device id -> its key, from the registry
        self.ack_timeout_s = ack_timeout_s
        self.max_inflight = max_inflight
        self.offline_recheck_s = offline_recheck_s
        # A persistent session only under a name that comes back: a session per process id would
        # be kept by the broker, and fed every acknowledgement, long after its process is gone.
        self.persistent = persistent
        self.on_message: OnMessage | None = None
        self.presence: dict[str, str] = {}  # device id -> online | offline, as last announced
        self._settings = client_settings(url, ca_file)
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._inflight = asyncio.Semaphore(max_inflight)
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def wait_connected(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._connected.wait(), timeout_s)
            return True
        except asyncio.TimeoutError:
            return False

    async def _run(self) -> None:
        """Connect, subscribe and read, reconnecting for as long as the process runs."""
        said_down = False  # one warning per outage, not one a second
        while True:
            try:
                async with aiomqtt.Client(
                    **self._settings, identifier=self.client_id, clean_session=not self.persistent,
                    protocol=aiomqtt.ProtocolVersion.V311, max_inflight_messages=self.max_inflight, timeout=10,
                ) as client:
                    await client.subscribe([(f"{self.prefix}/gw/+/ack", 1), (f"{self.prefix}/gw/+/status", 1)])
                    self._client = client
                    self._connected.set()
                    said_down = False
                    log.info("mqtt connected", broker=f"{self._settings['hostname']}:{self._settings['port']}",
                             client_id=self.client_id)
                    async for message in client.messages:
                        await self._dispatch(str(message.topic), message.payload)
            except aiomqtt.MqttError as exc:
                if not said_down:
                    log.warning("mqtt broker unreachable; reconnecting every second", error=str(exc),
                                broker=f"{self._settings['hostname']}:{self._settings['port']}")
                    said_down = True
            finally:
                self._client = None
                self._connected.clear()
            await asyncio.sleep(RECONNECT_S)

    async def _dispatch(self, topic: str, payload: object) -> None:
        found = device_of(topic)
        if found is None or not isinstance(payload, (bytes, bytearray)):
            return
        device, kind = found
        if kind == "status":
            state = status_of(bytes(payload))
            if state in ("online", "offline"):
                self.presence[device] = state
        if self.on_message is not None:
            try:
                await self.on_message(device, kind, bytes(payload))
            except Exception:
                # A bad message from one gateway must never stop the others' from being read.
                log.exception("gateway message not handled", device=device, kind=kind)

    async def send(self, delivery: Delivery) -> SendResult:
        key = self.keys(delivery.address)
        if key is None:
            raise ChannelError(f"gateway {delivery.address} is not in the registry", recoverable=False,
                               code="unknown-device")
        if self.presence.get(delivery.address) == "offline":
            raise ChannelError("gateway offline: waiting for it to come back", recoverable=True, throttled=True,
                               code="offline", retry_after_s=self.offline_recheck_s)
        # Waiting for the broker is nobody's failed attempt: the command waits (as throttled)
        # until the broker is back, or the alert expires.
        client = self._client
        if client is None and await self.wait_connected(CONNECT_WAIT_S):
            client = self._client
        if client is None:
            raise ChannelError("MQTT broker unreachable", recoverable=True, throttled=True, code="broker",
                               retry_after_s=RECONNECT_S)
        command = command_for(delivery, key)
        try:
            async with self._inflight:  # bounded: paho keeps the rest queued, aiomqtt warns past ten waiting
                await client.publish(cmd_topic(self.prefix, delivery.address), encode(command), qos=1, timeout=10)
        except aiomqtt.MqttError as exc:
            raise ChannelError(f"publish failed: {exc}", recoverable=True, throttled=True, code="broker",
                               retry_after_s=RECONNECT_S) from exc
        return SendResult(provider_id=command["nonce"], note="published; waiting for the gateway",
                          await_ack_s=self.ack_timeout_s)

