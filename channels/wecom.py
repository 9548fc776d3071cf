"""WeCom (企业微信) group robot: ``POST <webhook>`` (``/cgi-bin/webhook/send?key=KEY``).

A text message, not markdown: only text can mention the group's officers by mobile number
(``mentioned_mobile_list``), which makes their phones ring. WeCom takes at most 2,048 bytes of
UTF-8 there, so a long warning is cut before its ack link, never the link itself.
"""

from __future__ import annotations

from typing import Any

from channels.base import Delivery
from channels.groupbot import GroupBotChannel, GroupTarget
from channels.templates import ack_suffix, fit_bytes, render_body
from config import ChannelLimits

TEXT_LIMIT_BYTES = 2048


class WeComChannel(GroupBotChannel):
    name = "wecom"
    default_limits = ChannelLimits(concurrency=16, per_address=20, per_address_window_s=60)  # 20 a minute per robot

    def request(self, target: GroupTarget, delivery: Delivery) -> tuple[str, dict[str, Any]]:
        content = fit_bytes(render_body(delivery.message), ack_suffix(delivery.message, delivery.ack_url),
                            TEXT_LIMIT_BYTES)
        text: dict[str, Any] = {"content": content}
        if target.mobiles:
            text["mentioned_mobile_list"] = list(target.mobiles)
        return target.webhook, {"msgtype": "text", "text": text}
