"""A local double of Twilio's Messages API: the same path, form fields, Basic auth, JSON answers
and error shapes, and status callbacks signed with Twilio's own algorithm."""

from __future__ import annotations

import base64
import itertools
import time
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

ERRORS = {
    21211: (400, "The 'To' number {to} is not a valid phone number."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    20429: (429, "Too Many Requests"),
    30001: (400, "Queue overflow"),
}


@dataclass
class TwilioDouble:
    account_sid: str
    auth_token: str
    #: To number -> error codes to answer with, one per request, before succeeding
    failures: dict[str, list[int]] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)
    sent: dict[str, dict[str, str]] = field(default_factory=dict)  # message sid -> its request
    retry_after_s: int = 1
    received_at: list[float] = field(default_factory=list)  # perf_counter() of each message request
    _sids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self.create_message)
        app.router.add_post("/2010-04-01/Accounts/{sid}/Calls.json", self.create_call)
        return app

    def _authorized(self, request: web.Request) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return request.headers.get("Authorization") == f"Basic {expected}"

    async def create_message(self, request: web.Request) -> web.Response:
        if not self._authorized(request) or request.match_info["sid"] != self.account_sid:
            return self._error(20003, 401, "Authenticate")
        form = dict(await request.post())
        self.requests.append(form)
        self.received_at.append(time.perf_counter())
        if not form.get("To") or not form.get("Body"):
            return self._error(21604, 400, "A 'To' phone number and a 'Body' are required.")
        if not (form.get("From") or form.get("MessagingServiceSid")):
            return self._error(21603, 400, "A 'From' or 'MessagingServiceSid' parameter is required.")
        planned = self.failures.get(form["To"])
        if planned:
            code = planned.pop(0)
            status, message = ERRORS[code]
            answer = self._error(code, status, message.format(to=form["To"]))
            if status == 429:
                answer.headers["Retry-After"] = str(self.retry_after_s)
            return answer
        sid = f"SM{next(self._sids):032x}"
        self.sent[sid] = form
        return web.json_response({
            "account_sid": self.account_sid, "api_version": "2010-04-01", "body": form["Body"],
            "date_created": "Sat, 28 Nov 2026 10:00:00 +0000", "date_sent": None, "date_updated": None,
            "direction": "outbound-api", "error_code": None, "error_message": None, "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"), "num_media": "0", "num_segments": "1",
            "price": None, "price_unit": "USD", "sid": sid, "status": "queued", "subresource_uris": {},
            "to": form["To"], "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }, status=201)

    async def create_call(self, request: web.Request) -> web.Response:
        if not self._authorized(request) or request.match_info["sid"] != self.account_sid:
            return self._error(20003, 401, "Authenticate")
        form = dict(await request.post())
        self.requests.append(form)
        if not form.get("To") or not form.get("From"):
            return self._error(21201, 400, "A 'To' and a 'From' number are required.")
        if not (form.get("Twiml") or form.get("Url")):
            return self._error(21205, 400, "Either 'Twiml' or 'Url' is required.")
        sid = f"CA{next(self._sids):032x}"
        self.sent[sid] = form
        return web.json_response({
            "account_sid": self.account_sid, "api_version": "2010-04-01", "sid": sid, "status": "queued",
            "to": form["To"], "from": form["From"], "direction": "outbound-api",
            "date_created": "Sat, 28 Nov 2026 10:00:00 +0000", "subresource_uris": {},
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Calls/{sid}.json",
        }, status=201)

    async def post_signed(self, url: str, params: dict[str, str], *, token: str | None = None) -> tuple[int, str]:
        """A webhook request as Twilio makes it: form-encoded and signed."""
        signature = RequestValidator(token or self.auth_token).compute_signature(url, params)
        async with aiohttp.ClientSession() as session:
            async with session.post(url, data=params, headers={"X-Twilio-Signature": signature}) as resp:
                return resp.status, await resp.text()

    @staticmethod
    def _error(code: int, status: int, message: str) -> web.Response:
        return web.json_response({"code": code, "message": message, "status": status,
                                  "more_info": f"https://www.twilio.com/docs/errors/{code}"}, status=status)

    async def reply(self, url: str, from_: str, body: str, *, token: str | None = None) -> tuple[int, str]:
        """An inbound SMS, posted to the number's webhook as Twilio does; returns (status, answer)."""
        params = {"MessageSid": f"SM{next(self._sids):032x}", "AccountSid": self.account_sid, "From": from_,
                  "To": "+15005550006", "Body": body, "NumMedia": "0"}
        signature = RequestValidator(token or self.auth_token).compute_signature(url, params)
        async with aiohttp.ClientSession() as session:
            async with session.post(url, data=params, headers={"X-Twilio-Signature": signature}) as resp:
                return resp.status, await resp.text()

    async def report(self, sid: str, status: str, *, error_code: str | None = None,
                     token: str | None = None) -> int:
        """Post a status callback for a message as Twilio does: form-encoded, signed."""
        form = self.sent[sid]
        url = form["StatusCallback"]
        params = {"MessageSid": sid, "MessageStatus": status, "AccountSid": self.account_sid,
                  "To": form["To"], "From": form.get("From", "")}
        if error_code:
            params["ErrorCode"] = error_code
        signature = RequestValidator(token or self.auth_token).compute_signature(url, params)
        async with aiohttp.ClientSession() as session:
            async with session.post(url, data=params, headers={"X-Twilio-Signature": signature}) as resp:
                return resp.status
