"""The one interface every channel adapter implements.

A channel gets everything it needs in a ``Delivery``: the warning's parts, the address and
the receipt it reports on. It formats the message for its medium and says how the send went:
a ``SendResult`` on success, a ``ChannelError`` saying whether a retry is worth it. It never
retries, sleeps or rate-limits by itself; the sender workers do that once for every channel.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import ClassVar, Literal

from config import ChannelLimits


@dataclass(frozen=True, slots=True)
class Message:
    """The parts of one warning; the same for every recipient of an alert."""

    alert_id: str
    event: str
    severity: str
    urgency: str
    headline: str
    text: str
    instruction: str
    area: str
    lang: str = "zh-CN"
    drill: bool = False
    msg_type: str = "Alert"
    sender_name: str = ""
    expires_at: float | None = None  # unix seconds
    note: str = ""  # an escalated message opens with it: a reminder, or whose silence to follow up


@dataclass(slots=True)  # not frozen: one per message, and frozen dataclasses build several times slower
class Delivery:
    """One message to one address: what a channel sends and the receipt it reports on."""

    receipt_id: str
    channel: str
    address: str
    recipient: str
    name: str
    message: Message
    attempt: int = 1
    ack_url: str | None = None


@dataclass(frozen=True, slots=True)
class SendResult:
    """A send that worked. ``await_ack_s`` says the far end acknowledges by itself (a loudspeaker
    gateway): the receipt stays ``sending`` and is sent again if no acknowledgement moves it on
    within that many seconds."""

    state: Literal["sent", "delivered"] = "sent"
    provider_id: str | None = None
    note: str | None = None  # kept on the receipt's history line, e.g. "2 SMS segments"
    await_ack_s: float | None = None


class ChannelError(Exception):
    """A send that did not work. ``recoverable`` says whether trying again may help."""

    def __init__(
        self,
        reason: str,
        *,
        recoverable: bool,
        code: str | None = None,
        retry_after_s: float | None = None,
        throttled: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.recoverable = recoverable or throttled
        self.code = code
        self.retry_after_s = retry_after_s
        # Told to slow down (a provider's rate limit, or a group's own): the message waits its
        # turn and is tried again until the alert expires; waiting is not a failed attempt.
        self.throttled = throttled


class Channel:
    """Base class of the adapters. Subclasses set ``name`` and implement ``send``."""

    name: ClassVar[str]
    #: how hard a worker may drive it unless the settings say otherwise
    default_limits: ClassVar[ChannelLimits] = ChannelLimits()
    #: whether a reply from an address acknowledges the latest message sent to it (SMS)
    replies_acknowledge: ClassVar[bool] = False
    #: whether its messages are text that can carry a signed ack link
    carries_links: ClassVar[bool] = False
    #: fields of the adapter's configuration that must never be logged or printed
    secret_fields: ClassVar[tuple[str, ...]] = ()

    async def start(self) -> None:
        """Open connections; called once before the first send."""

    async def close(self) -> None:
        """Release connections; called once at shutdown."""

    async def send(self, delivery: Delivery) -> SendResult:
        raise NotImplementedError

    async def send_many(self, deliveries: list[Delivery]) -> list[SendResult | ChannelError]:
        """Send a batch; one outcome per delivery, in order. Adapters that can batch override it."""
        outcomes = await asyncio.gather(*(self.send(d) for d in deliveries), return_exceptions=True)
        return [_as_outcome(o) for o in outcomes]


def mask(address: str) -> str:
    """An address fit for a log line or a viewer: enough to recognise, not enough to call."""
    if len(address) <= 6:
        return "***"
    return f"{address[:4]}****{address[-3:]}"


def _as_outcome(outcome: object) -> SendResult | ChannelError:
    if isinstance(outcome, (SendResult, ChannelError)):
        return outcome
    if isinstance(outcome, (asyncio.TimeoutError, OSError)):
        return ChannelError(f"{type(outcome).__name__}: {outcome}", recoverable=True)
    if isinstance(outcome, BaseException):
        # A bug in an adapter must not lose the receipt: report it, retry it.
        return ChannelError(f"adapter error {type(outcome).__name__}: {outcome}", recoverable=True)
    raise TypeError(f"channel returned {type(outcome).__name__}, not SendResult")
