"""SMS through Twilio's Messages API (see ``channels.twilio_base``)."""

from __future__ import annotations

import time
from collections.abc import Callable

from channels.base import ChannelError, Delivery, SendResult
from channels.templates import render_text, sms_segments
from channels.twilio_base import TwilioChannel
from config import ChannelLimits

MAX_VALIDITY_S = 36_000  # Twilio's upper bound for ValidityPeriod


class TwilioSMS(TwilioChannel):
    name = "sms"
    default_limits = ChannelLimits(concurrency=32)
    replies_acknowledge = True
    carries_links = True

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        from_: str | None = None,
        messaging_service_sid: str | None = None,
        api_base: str | None = None,
        status_callback: Callable[[Delivery], str] | None = None,
    ) -> None:
        if not (from_ or messaging_service_sid):
            raise ValueError("Twilio SMS needs a sender number or a messaging service sid")
        super().__init__(account_sid, auth_token, api_base=api_base, status_callback=status_callback)
        self.from_ = from_
        self.messaging_service_sid = messaging_service_sid

    async def send(self, delivery: Delivery) -> SendResult:
        client = await self.client()
        text = render_text(delivery.message, delivery.ack_url, reply_acknowledges=True)
        params: dict[str, object] = {"to": delivery.address, "body": text}
        if self.messaging_service_sid:
            params["messaging_service_sid"] = self.messaging_service_sid
        else:
            params["from_"] = self.from_
        if self.status_callback is not None:
            params["status_callback"] = self.status_callback(delivery)
        if delivery.message.expires_at is not None:
            # A message still queued when the warning expires is dropped by Twilio itself.
            left = int(delivery.message.expires_at - time.time())
            if left <= 0:
                raise ChannelError("the alert expired before sending", recoverable=False, code="expired")
            params["validity_period"] = min(MAX_VALIDITY_S, left)
        message = await self.call(client.messages.create_async(**params))
        segments = sms_segments(text)
        return SendResult("sent", provider_id=message.sid, note=f"{segments} SMS segment{'s' * (segments > 1)}")
