"""A local double of the Telegram Bot API: /bot<token>/<method> with Telegram's answers and
error shapes, checking the token and the fields sendMessage and answerCallbackQuery take."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class TelegramDouble:
    token: str
    #: chat id -> errors to answer with, one per request: (HTTP status, description, retry_after)
    failures: dict[str, list[tuple[int, str, int | None]]] = field(default_factory=dict)
    messages: list[dict] = field(default_factory=list)
    answers: list[dict] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self.call)
        return app

    async def call(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return self._error(401, "Unauthorized")
        body = await request.json()
        method = request.match_info["method"]
        if method == "sendMessage":
            return self.send_message(body)
        if method == "answerCallbackQuery":
            if not body.get("callback_query_id"):
                return self._error(400, "Bad Request: query is too old or query ID is invalid")
            self.answers.append(body)
            return web.json_response({"ok": True, "result": True})
        return self._error(404, "Not Found")

    def send_message(self, body: dict) -> web.Response:
        chat = str(body.get("chat_id", ""))
        if not chat or not body.get("text"):
            return self._error(400, "Bad Request: message text is empty")
        for row in (body.get("reply_markup") or {}).get("inline_keyboard", []):
            for button in row:
                if len(button.get("callback_data", "").encode()) > 64:
                    return self._error(400, "Bad Request: BUTTON_DATA_INVALID")
        planned = self.failures.get(chat)
        if planned:
            status, description, retry_after = planned.pop(0)
            return self._error(status, description, retry_after)
        message = {"message_id": next(self._ids), "chat": {"id": int(chat), "type": "private"},
                   "date": 1795860000, "text": body["text"], "reply_markup": body.get("reply_markup")}
        self.messages.append(message)
        return web.json_response({"ok": True, "result": message})

    @staticmethod
    def _error(status: int, description: str, retry_after: int | None = None) -> web.Response:
        body = {"ok": False, "error_code": status, "description": description}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        return web.json_response(body, status=status)
