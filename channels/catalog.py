"""Which adapter carries each channel in this deployment, from the settings."""

from __future__ import annotations

import structlog

from channels.base import Channel
from channels.console import ConsoleChannel
from config import Settings

log = structlog.get_logger("shaozi.channels")


def build_channels(settings: Settings, *, log_messages: bool = True) -> dict[str, Channel]:
    """Channel name -> adapter. A channel that is not configured is not in the map."""
    console = ConsoleChannel(settings.data_dir / "outbox" / "console.jsonl", log_messages=log_messages)
    channels: dict[str, Channel] = {"console": console}
    # SMS falls back to the console until an SMS provider is configured.
    channels["sms"] = console
    log.info("sms goes to the console outbox: no SMS provider is configured", outbox=str(console.outbox))
    return channels
