"""Voice calls through Twilio's Calls API (see ``channels.twilio_base``): the warning is read
out in Mandarin (or English), twice, and a key press acknowledges it (``<Gather>``)."""

from __future__ import annotations

from collections.abc import Callable

from twilio.twiml.voice_response import Gather, VoiceResponse

from channels.base import Delivery, Message, SendResult
from channels.templates import render_speech
from channels.twilio_base import TwilioChannel
from config import ChannelLimits

NO_KEY = {"cmn-CN": "未收到按键，再见。", "en-US": "No key was pressed. Goodbye."}


def call_twiml(message: Message, gather_url: str | None) -> str:
    text, language, voice = render_speech(message)
    response = VoiceResponse()
    if gather_url:
        gather = Gather(num_digits=1, action=gather_url, method="POST", timeout=10)
        gather.say(text, language=language, voice=voice, loop=2)
        response.append(gather)
        response.say(NO_KEY[language], language=language, voice=voice)
    else:
        response.say(text, language=language, voice=voice, loop=2)
    return str(response)


class TwilioVoice(TwilioChannel):
    name = "voice"
    default_limits = ChannelLimits(concurrency=8)

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        from_: str,
        api_base: str | None = None,
        status_callback: Callable[[Delivery], str] | None = None,
        gather_url: Callable[[Delivery], str] | None = None,
    ) -> None:
        super().__init__(account_sid, auth_token, api_base=api_base, status_callback=status_callback)
        self.from_ = from_
        self.gather_url = gather_url

    async def send(self, delivery: Delivery) -> SendResult:
        client = await self.client()
        twiml = call_twiml(delivery.message, self.gather_url(delivery) if self.gather_url else None)
        params: dict[str, object] = {"to": delivery.address, "from_": self.from_, "twiml": twiml}
        if self.status_callback is not None:
            params["status_callback"] = self.status_callback(delivery)
        call = await self.call(client.calls.create_async(**params))
        return SendResult("sent", provider_id=call.sid)
