"""Feishu / Lark custom bot: ``POST <webhook>`` (``/open-apis/bot/v2/hook/TOKEN``).

With a signing secret the body carries ``timestamp`` (seconds, a string) and ``sign``: the
base64 of HMAC-SHA256 keyed with "timestamp\\nsecret" over an empty message (not DingTalk's
scheme); a wrong one answers code 19021. The message is an interactive card: a header coloured
by severity, the warning in markdown, and a button that opens the ack link.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from channels.base import Delivery
from channels.groupbot import GroupBotChannel, GroupTarget
from channels.templates import ACK_BUTTON, language, render_markdown, render_title
from config import ChannelLimits

HEADER_COLOUR = {"Extreme": "red", "Severe": "orange", "Moderate": "yellow", "Minor": "blue"}


def sign(secret: str, timestamp: str) -> str:
    digest = hmac.new(f"{timestamp}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def card(delivery: Delivery) -> dict[str, Any]:
    message = delivery.message
    elements: list[dict[str, Any]] = [{"tag": "markdown", "content": render_markdown(message)}]
    if delivery.ack_url:
        elements.append({"tag": "action", "actions": [{
            "tag": "button", "type": "primary", "url": delivery.ack_url,
            "text": {"tag": "plain_text", "content": ACK_BUTTON[language(message.lang)]}}]})
    return {
        "header": {"title": {"tag": "plain_text", "content": render_title(message)},
                   "template": HEADER_COLOUR.get(message.severity, "grey")},
        "elements": elements,
    }


class FeishuChannel(GroupBotChannel):
    name = "feishu"
    # 100 a minute and 5 a second per bot: 5 in any 3 seconds keeps both.
    default_limits = ChannelLimits(concurrency=16, per_address=5, per_address_window_s=3)

    @staticmethod
    def answer_code(body: dict[str, Any]) -> tuple[int | None, str]:
        code = body.get("code", body.get("StatusCode"))  # older answers say StatusCode
        return (int(code) if code is not None else None), str(body.get("msg") or body.get("StatusMessage") or "")

    def request(self, target: GroupTarget, delivery: Delivery) -> tuple[str, dict[str, Any]]:
        payload: dict[str, Any] = {"msg_type": "interactive", "card": card(delivery)}
        if target.secret:
            timestamp = str(int(time.time()))
            payload = {"timestamp": timestamp, "sign": sign(target.secret, timestamp), **payload}
        return target.webhook, payload
