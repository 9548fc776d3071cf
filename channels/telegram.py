"""Telegram Bot API ``sendMessage`` to each person's chat, with an inline 收到 / Acknowledge button.

The button's ``callback_data`` (at most 64 bytes) carries the receipt id; a press comes back to
``/hooks/telegram``, which acknowledges that receipt when the press comes from the same chat.
"""

from __future__ import annotations

from channels.base import ChannelError, Delivery, SendResult
from channels.http_base import JsonHttpChannel
from channels.templates import ACK_BUTTON, render_text
from config import ChannelLimits

ACK_PREFIX = "ack:"


def error_of(status: int, body: dict) -> ChannelError:
    """Telegram's failures: 429 waits ``parameters.retry_after`` (not counted as an attempt); 5xx
    retried; the rest (chat not found, bot blocked, bad request) are permanent."""
    code = str(body.get("error_code") or status)
    reason = str(body.get("description") or f"HTTP {status}")
    retry_after = (body.get("parameters") or {}).get("retry_after")
    recoverable = status == 429 or status >= 500
    return ChannelError(reason, recoverable=recoverable, throttled=status == 429, code=code,
                        retry_after_s=float(retry_after) if recoverable and retry_after is not None else None)


class TelegramChannel(JsonHttpChannel):
    name = "telegram"
    secret_fields = ("bot_token",)
    default_limits = ChannelLimits(concurrency=16, rate_per_s=25)  # Telegram: about 30 messages a second

    def __init__(self, bot_token: str, api_base: str = "https://api.telegram.org") -> None:
        super().__init__()
        self.bot_token = bot_token
        self.api_base = api_base.rstrip("/")

    def method_url(self, method: str) -> str:
        return f"{self.api_base}/bot{self.bot_token}/{method}"

    async def send(self, delivery: Delivery) -> SendResult:
        callback_data = f"{ACK_PREFIX}{delivery.receipt_id}"
        if len(callback_data.encode()) > 64:
            raise ChannelError("receipt id too long for callback_data", recoverable=False, code="callback_data")
        payload = {
            "chat_id": delivery.address,
            "text": render_text(delivery.message),
            "reply_markup": {"inline_keyboard": [[{"text": ACK_BUTTON["zh-CN"], "callback_data": callback_data}]]},
        }
        status, body = await self.post_json(self.method_url("sendMessage"), payload)
        if status == 200 and body.get("ok"):
            return SendResult("sent", provider_id=str((body.get("result") or {}).get("message_id", "")) or None)
        raise error_of(status, body)
