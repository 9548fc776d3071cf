"""Which adapter carries each channel in this deployment, from the settings."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from channels.base import Channel, Delivery
from channels.console import ConsoleChannel
from channels.dingtalk import DingTalkChannel
from channels.feishu import FeishuChannel
from channels.groupbot import GroupTarget
from channels.mqtt import MqttChannel
from channels.telegram import TelegramChannel
from channels.twilio_sms import TwilioSMS
from channels.twilio_voice import TwilioVoice
from channels.wecom import WeComChannel
from config import Settings
from contacts.store import LiveRegistry

log = structlog.get_logger("shaozi.channels")

TWILIO_STATUS_PATH = "/hooks/twilio/status"
TWILIO_VOICE_PATH = "/hooks/twilio/voice"


def twilio_status_url(settings: Settings, delivery: Delivery) -> str:
    """Where Twilio reports a message's progress; the receipt rides in the query."""
    return f"{settings.base_url()}{TWILIO_STATUS_PATH}?r={delivery.receipt_id}"


def build_channels(settings: Settings, live: LiveRegistry | None = None, *,
                   log_messages: bool = True) -> dict[str, Channel]:
    """Channel name -> adapter. A channel that is not configured is not in the map; a chat-group
    channel is there when the registry has a group on it."""
    console = ConsoleChannel(settings.data_dir / "outbox" / "console.jsonl", log_messages=log_messages)
    channels: dict[str, Channel] = {"console": console}
    if settings.twilio_configured:
        # Callbacks are asked for when Twilio can reach the public URL, or when the API base is
        # not Twilio's own (a relay or a double that can reach a private one).
        callbacks = settings.callbacks_reachable() or settings.twilio_api_base is not None
        if not callbacks:
            log.warning("SHAOZI_PUBLIC_URL is not a public address: Twilio cannot report delivery, "
                        "SMS receipts will stay 'sent'", public_url=settings.base_url())
        channels["sms"] = TwilioSMS(
            settings.twilio_account_sid,
            settings.twilio_auth_token.get_secret_value(),
            from_=settings.twilio_from,
            messaging_service_sid=settings.twilio_messaging_service_sid,
            api_base=settings.twilio_api_base,
            status_callback=(lambda d: twilio_status_url(settings, d)) if callbacks else None,
        )
        log.info("sms goes through Twilio", api_base=settings.twilio_api_base or "api.twilio.com")
        if settings.twilio_from:  # a call needs a number; a messaging service cannot place one
            channels["voice"] = TwilioVoice(
                settings.twilio_account_sid,
                settings.twilio_auth_token.get_secret_value(),
                from_=settings.twilio_from,
                api_base=settings.twilio_api_base,
                status_callback=(lambda d: twilio_status_url(settings, d)) if callbacks else None,
                gather_url=(lambda d: f"{settings.base_url()}{TWILIO_VOICE_PATH}?r={d.receipt_id}")
                if callbacks else None,
            )
    else:
        # SMS falls back to the console until an SMS provider is configured.
        channels["sms"] = console
        log.info("sms goes to the console outbox: no SMS provider is configured", outbox=str(console.outbox))
    if settings.telegram_bot_token is not None:
        channels["telegram"] = TelegramChannel(settings.telegram_bot_token.get_secret_value(),
                                               settings.telegram_api_base)
        if settings.telegram_secret_token is None:
            log.warning("SHAOZI_TELEGRAM_SECRET_TOKEN is not set: button presses cannot be accepted")
    # Chat groups and gateways are found in the registry as it is when a message goes out, so a
    # group or gateway added later is reached without a restart.
    if live is not None:
        for adapter in (WeComChannel, DingTalkChannel, FeishuChannel):
            channels[adapter.name] = adapter(group_targets(live))
        if settings.mqtt_url:
            channels["mqtt"] = MqttChannel(
                settings.mqtt_url, settings.mqtt_prefix, f"shaozi-{settings.process_name()}", device_keys(live),
                ack_timeout_s=settings.mqtt_ack_timeout_s, max_inflight=settings.mqtt_max_inflight,
                offline_recheck_s=settings.mqtt_offline_recheck_s, persistent=settings.worker_name is not None,
                ca_file=settings.mqtt_ca_file)
        elif live.current.devices:
            log.warning("the registry has loudspeaker gateways but no MQTT broker is set (SHAOZI_MQTT_URL)")
    return channels


def device_keys(live: LiveRegistry) -> Callable[[str], str | None]:
    """A gateway's signing key by its id, from the registry as it is now."""

    def key(device_id: str) -> str | None:
        device = live.current.device(device_id)
        return device.key.get_secret_value() if device else None

    return key


def group_targets(live: LiveRegistry) -> Callable[[str], GroupTarget | None]:
    """A group's robot by the group's id, from the registry as it is now."""

    def target(group_id: str) -> GroupTarget | None:
        registry = live.current
        group = registry.group(group_id)
        if group is None:
            return None
        return GroupTarget(group.webhook, group.secret.get_secret_value() if group.secret else None,
                           tuple(registry.officer_phones(group.region)))

    return target
