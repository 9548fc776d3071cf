"""DingTalk (钉钉) custom robot: ``POST <webhook>&timestamp=MS&sign=S``.

With a signing secret, S is the URL-encoded base64 of HMAC-SHA256 keyed with the secret over
"MS\\nsecret", MS the time in milliseconds (DingTalk refuses one more than an hour off, and a
wrong one with errcode 310000). A markdown message that mentions the group's officers: their
numbers in ``at.atMobiles`` and as @number in the text, which DingTalk needs to highlight them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any
from urllib.parse import quote_plus

from channels.base import Delivery
from channels.groupbot import GroupBotChannel, GroupTarget
from channels.templates import render_markdown, render_title
from config import ChannelLimits


def sign(secret: str, timestamp_ms: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signed_url(webhook: str, secret: str | None, now: float | None = None) -> str:
    if not secret:
        return webhook
    ms = int((time.time() if now is None else now) * 1000)
    return f"{webhook}{'&' if '?' in webhook else '?'}timestamp={ms}&sign={quote_plus(sign(secret, ms))}"


class DingTalkChannel(GroupBotChannel):
    name = "dingtalk"
    # 20 a minute per robot; past that DingTalk throttles the robot for 10 minutes.
    default_limits = ChannelLimits(concurrency=16, per_address=20, per_address_window_s=60, throttled_wait_s=600)

    def request(self, target: GroupTarget, delivery: Delivery) -> tuple[str, dict[str, Any]]:
        text = render_markdown(delivery.message, delivery.ack_url)
        if target.mobiles:
            text += "\n\n" + " ".join(f"@{m}" for m in target.mobiles)
        payload = {
            "msgtype": "markdown",
            "markdown": {"title": render_title(delivery.message), "text": text},
            "at": {"atMobiles": list(target.mobiles), "isAtAll": False},
        }
        return signed_url(target.webhook, target.secret), payload
