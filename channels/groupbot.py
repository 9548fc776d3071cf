"""What the chat-group robots (WeCom, DingTalk, Feishu) share: a group's robot is found by the
receipt's address (the group's id) in the registry, so its webhook and secret never travel with
the receipt; an answer is success or a mapped error (``channels.provider_codes``).

A robot only says the app took the message: there is no per-person delivery report, and the
receipt says so. The message carries the signed ack link for whoever in the group answers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from channels.base import ChannelError, Delivery, SendResult
from channels.http_base import JsonHttpChannel
from channels.provider_codes import error_of

NO_PER_PERSON_REPORT = "taken by the group robot; a group has no per-person delivery report"


@dataclass(frozen=True, slots=True)
class GroupTarget:
    webhook: str
    secret: str | None
    mobiles: tuple[str, ...]  # the group's officers, mentioned by their phone numbers


class GroupBotChannel(JsonHttpChannel):
    carries_links = True
    secret_fields = ("webhook", "secret")

    def __init__(self, targets: Callable[[str], GroupTarget | None]) -> None:
        super().__init__()
        self.targets = targets

    def request(self, target: GroupTarget, delivery: Delivery) -> tuple[str, dict[str, Any]]:
        """The URL and JSON body to post for a delivery."""
        raise NotImplementedError

    @staticmethod
    def answer_code(body: dict[str, Any]) -> tuple[int | None, str]:
        """The code and message of the robot's answer (0 is success)."""
        code = body.get("errcode")
        return (int(code) if code is not None else None), str(body.get("errmsg") or "")

    async def send(self, delivery: Delivery) -> SendResult:
        target = self.targets(delivery.address)
        if target is None:
            raise ChannelError(f"group {delivery.address} is not in the registry", recoverable=False,
                               code="unknown-group")
        url, payload = self.request(target, delivery)
        status, body = await self.post_json(url, payload)
        code, message = self.answer_code(body)
        if status == 200 and code == 0:
            return SendResult("sent", note=NO_PER_PERSON_REPORT)
        raise error_of(self.name, status, code, message)
