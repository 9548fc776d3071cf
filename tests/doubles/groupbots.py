"""Local doubles of the chat-group robots, checking what the real services check: WeCom's key,
DingTalk's signature in the query (errcode 310000) and Feishu's in the body (code 19021), each
within an hour of now, and the fields of each message type. Failures can be planned per robot."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Robot:
    secret: str | None = None
    #: answers to give before accepting, one per request: (HTTP status, code, message)
    failures: list[tuple[int, int, str]] = field(default_factory=list)
    received: list[dict] = field(default_factory=list)  # message bodies accepted
    at: list[float] = field(default_factory=list)  # when each was accepted


@dataclass
class GroupBotDouble:
    wecom: dict[str, Robot] = field(default_factory=dict)  # key -> robot
    dingtalk: dict[str, Robot] = field(default_factory=dict)  # access token -> robot
    feishu: dict[str, Robot] = field(default_factory=dict)  # hook token -> robot
    refused: list[tuple[str, int]] = field(default_factory=list)  # (app, code) of every refusal

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/cgi-bin/webhook/send", self.wecom_send)
        app.router.add_post("/robot/send", self.dingtalk_send)
        app.router.add_post("/open-apis/bot/v2/hook/{token}", self.feishu_send)
        return app

    async def wecom_send(self, request: web.Request) -> web.Response:
        robot = self.wecom.get(request.query.get("key", ""))
        if robot is None:
            return self._refuse("wecom", {"errcode": 93000, "errmsg": "invalid webhook url, hint: [x]"})
        body = await request.json()
        if body.get("msgtype") != "text" or not isinstance(body.get("text"), dict):
            return self._refuse("wecom", {"errcode": 40008, "errmsg": "invalid message type"})
        content = body["text"].get("content", "")
        if not content:
            return self._refuse("wecom", {"errcode": 44004, "errmsg": "empty content"})
        if len(content.encode()) > 2048:
            return self._refuse("wecom", {"errcode": 40058, "errmsg": "content exceed max length 2048"})
        return self._accept("wecom", robot, body, {"errcode": 0, "errmsg": "ok"}, "errcode", "errmsg")

    async def dingtalk_send(self, request: web.Request) -> web.Response:
        robot = self.dingtalk.get(request.query.get("access_token", ""))
        if robot is None:
            return self._refuse("dingtalk", {"errcode": 300001, "errmsg": "token is not exist"})
        if robot.secret is not None:
            timestamp, sign = request.query.get("timestamp", ""), request.query.get("sign", "")
            expected = base64.b64encode(hmac.new(robot.secret.encode(), f"{timestamp}\n{robot.secret}".encode(),
                                                 hashlib.sha256).digest()).decode()
            if not timestamp.isdigit() or abs(time.time() * 1000 - int(timestamp)) > 3600_000 \
                    or not hmac.compare_digest(sign, expected):
                return self._refuse("dingtalk", {"errcode": 310000, "errmsg": "sign not match, more: [x]"})
        body = await request.json()
        markdown = body.get("markdown") or {}
        if body.get("msgtype") != "markdown" or not markdown.get("title") or not markdown.get("text"):
            return self._refuse("dingtalk", {"errcode": 400105, "errmsg": "不支持的消息类型"})
        return self._accept("dingtalk", robot, body, {"errcode": 0, "errmsg": "ok"}, "errcode", "errmsg")

    async def feishu_send(self, request: web.Request) -> web.Response:
        robot = self.feishu.get(request.match_info["token"])
        if robot is None:
            return self._refuse("feishu", {"code": 19001, "msg": "param invalid: incoming webhook access token invalid"})
        body = await request.json()
        if robot.secret is not None:
            timestamp, sign = str(body.get("timestamp", "")), str(body.get("sign", ""))
            expected = base64.b64encode(hmac.new(f"{timestamp}\n{robot.secret}".encode(), b"",
                                                 hashlib.sha256).digest()).decode()
            if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 3600 \
                    or not hmac.compare_digest(sign, expected):
                return self._refuse("feishu", {"code": 19021, "msg": "sign match fail or timestamp is not within "
                                                                     "one hour from current time"})
        card = body.get("card") or {}
        if body.get("msg_type") != "interactive" or not card.get("header") or not card.get("elements"):
            return self._refuse("feishu", {"code": 9499, "msg": "Bad Request"})
        return self._accept("feishu", robot, body, {"code": 0, "msg": "success", "data": {}}, "code", "msg")

    def _accept(self, app: str, robot: Robot, body: dict, ok: dict, code: str, msg: str) -> web.Response:
        if robot.failures:
            status, failure, message = robot.failures.pop(0)
            return self._refuse(app, {code: failure, msg: message}, status)
        robot.received.append(body)
        robot.at.append(time.time())
        return web.json_response(ok)

    def _refuse(self, app: str, answer: dict, status: int = 200) -> web.Response:
        self.refused.append((app, answer.get("errcode", answer.get("code"))))
        return web.json_response(answer, status=status)  # the robots answer errors with HTTP 200
