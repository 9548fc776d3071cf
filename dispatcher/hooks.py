"""Provider callbacks: each verified before it may move a receipt."""

from __future__ import annotations

import time

import structlog
from aiohttp import web
from twilio.request_validator import RequestValidator

from dispatcher.app_state import SETTINGS, STORE
from dispatcher.problems import Problem
from dispatcher.receipts import Change, parse_receipt_id

log = structlog.get_logger("shaozi.hooks")

# Twilio's MessageStatus -> receipt state; the rest (accepted, queued, sending, ...) say
# nothing a receipt does not know already.
TWILIO_STATES = {"sent": "sent", "delivered": "delivered", "undelivered": "failed", "failed": "failed",
                 "canceled": "failed"}


async def twilio_status(request: web.Request) -> web.Response:
    """``POST /hooks/twilio/status?r=<receipt>``: a message's progress, signed by Twilio."""
    settings = request.app[SETTINGS]
    if not settings.twilio_configured:
        raise Problem(404, "Not Found", "Twilio is not configured")
    signature = request.headers.get("X-Twilio-Signature", "")
    form = dict(await request.post())
    # Twilio signs the URL it called: the public one, not the one this process listens on.
    url = settings.base_url() + request.path_qs
    if not signature or not RequestValidator(settings.twilio_auth_token.get_secret_value()).validate(
            url, form, signature):
        log.warning("refused an unsigned or wrongly signed Twilio callback", path=request.path)
        raise Problem(403, "Forbidden", "X-Twilio-Signature does not match")
    try:
        alert_id, number = parse_receipt_id(request.query.get("r", ""))
    except ValueError as exc:
        raise Problem(400, "Bad callback", "the callback URL names no receipt") from exc
    state = TWILIO_STATES.get(str(form.get("MessageStatus", "")))
    if state is None:
        return web.Response(status=204)
    fields = {"p": form.get("MessageSid") or None}
    if state == "failed":
        code = form.get("ErrorCode") or "unknown"
        fields["e"] = f"{code}: Twilio reports the message {form.get('MessageStatus')}"
    applied = await request.app[STORE].receipts.apply(alert_id, [Change(number, state, fields)], now=time.time())
    log.info("twilio status", alert_id=alert_id, delivery_id=f"{alert_id}.{number}", status=form.get("MessageStatus"),
             applied=applied[0])
    return web.Response(status=204)
