"""Twilio's callbacks (delivery status, SMS replies, key presses): each verified by its
signature before it may move a receipt."""

from __future__ import annotations

import time
import unicodedata

import structlog
from aiohttp import web
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse

from dispatcher.app_state import KEYS, REDIS, SETTINGS, STORE
from dispatcher.codec import text
from dispatcher.problems import Problem
from dispatcher.receipts import Change, parse_receipt_id

log = structlog.get_logger("shaozi.hooks")

# Twilio's MessageStatus and CallStatus -> receipt state; the rest (accepted, queued, sending,
# ringing, in-progress, ...) say nothing a receipt does not know already. A call that was
# answered is delivered; a key pressed during it acknowledges (``twilio_voice``).
TWILIO_STATES = {"sent": "sent", "delivered": "delivered", "undelivered": "failed", "failed": "failed",
                 "canceled": "failed", "completed": "delivered", "busy": "failed", "no-answer": "failed"}


ACK_WORDS = {"1", "收到", "ok", "ack"}
REPLIES = {
    "acknowledged": "已确认收到预警，谢谢。Acknowledged, thank you.",
    "already": "此预警已确认过。Already acknowledged.",
    "unknown": "未找到需要确认的预警。No warning to acknowledge.",
    "help": "回复1或“收到”确认收到预警。Reply 1 or OK to acknowledge the warning.",
}


async def _twilio_form(request: web.Request) -> dict[str, str]:
    """The callback's form, once its X-Twilio-Signature is checked (403 otherwise)."""
    settings = request.app[SETTINGS]
    if not settings.twilio_configured:
        raise Problem(404, "Not Found", "Twilio is not configured")
    signature = request.headers.get("X-Twilio-Signature", "")
    form = {k: str(v) for k, v in (await request.post()).items()}
    # Twilio signs the URL it called: the public one, not the one this process listens on.
    url = settings.base_url() + request.path_qs
    validator = RequestValidator(settings.twilio_auth_token.get_secret_value())
    if not signature or not validator.validate(url, form, signature):
        log.warning("refused an unsigned or wrongly signed Twilio callback", path=request.path)
        raise Problem(403, "Forbidden", "X-Twilio-Signature does not match")
    return form


def _receipt_of(request: web.Request) -> tuple[str, int]:
    """The receipt a callback URL names (``?r=<receipt id>``)."""
    try:
        return parse_receipt_id(request.query.get("r", ""))
    except ValueError as exc:
        raise Problem(400, "Bad callback", "the callback URL names no receipt") from exc


async def twilio_status(request: web.Request) -> web.Response:
    """``POST /hooks/twilio/status?r=<receipt>``: a message's progress, signed by Twilio."""
    form = await _twilio_form(request)
    alert_id, number = _receipt_of(request)
    status = form.get("MessageStatus") or form.get("CallStatus") or ""
    state = TWILIO_STATES.get(status)
    if state is None:
        return web.Response(status=204)
    fields = {"p": form.get("MessageSid") or form.get("CallSid") or None}
    if state == "failed":
        what = "message" if "MessageStatus" in form else "call"
        fields["e"] = f"{form.get('ErrorCode') or status}: Twilio reports the {what} {status}"
    applied = await request.app[STORE].receipts.apply(alert_id, [Change(number, state, fields)], time.time())
    log.info("twilio status", alert_id=alert_id, delivery_id=f"{alert_id}.{number}", status=status,
             applied=applied[0])
    return web.Response(status=204)


async def twilio_inbound(request: web.Request) -> web.Response:
    """``POST /hooks/twilio/inbound``: an SMS reply. "1", "收到", "ok" or "ACK" (any case or
    width) acknowledges the latest warning sent to that number; the answer is TwiML."""
    form = await _twilio_form(request)
    word = unicodedata.normalize("NFKC", form.get("Body", "")).strip().casefold().rstrip("。.!！")
    if word not in ACK_WORDS:
        return _twiml(REPLIES["help"])
    keys, store = request.app[KEYS], request.app[STORE]
    latest = await request.app[REDIS].hget(keys.latest("sms"), form.get("From", ""))
    if latest is None:
        log.info("sms reply from a number with no warning", reply=word)
        return _twiml(REPLIES["unknown"])
    alert_id, number = parse_receipt_id(text(latest))
    change = Change(number, "acknowledged", {"note": "acknowledged by SMS reply"})
    applied = (await store.receipts.apply(alert_id, [change], time.time()))[0]
    log.info("sms reply", alert_id=alert_id, delivery_id=f"{alert_id}.{number}", acknowledged=applied)
    return _twiml(REPLIES["acknowledged" if applied else "already"])


async def twilio_voice(request: web.Request) -> web.Response:
    """``POST /hooks/twilio/voice?r=<receipt>``: the <Gather> of a warning call; any key pressed
    acknowledges that receipt."""
    form = await _twilio_form(request)
    alert_id, number = _receipt_of(request)
    response = VoiceResponse()
    if form.get("Digits"):
        change = Change(number, "acknowledged", {"note": "acknowledged by a key pressed during the call"})
        applied = (await request.app[STORE].receipts.apply(alert_id, [change], time.time()))[0]
        log.info("call acknowledged", alert_id=alert_id, delivery_id=f"{alert_id}.{number}", new=applied)
        response.say("已确认收到预警，谢谢。", language="cmn-CN", voice="Polly.Zhiyu")
    response.hangup()
    return web.Response(text=str(response), content_type="text/xml", charset="utf-8")


def _twiml(text: str) -> web.Response:
    reply = MessagingResponse()
    reply.message(text)
    return web.Response(text=str(reply), content_type="text/xml", charset="utf-8")
