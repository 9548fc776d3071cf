"""Telegram's updates: a press of a message's 收到 button acknowledges that receipt."""

from __future__ import annotations

import hmac
import time

import aiohttp
import structlog
from aiohttp import web

from channels.telegram import ACK_PREFIX
from dispatcher.app_state import SETTINGS, STORE
from dispatcher.problems import Problem
from dispatcher.receipts import Change, parse_receipt_id

log = structlog.get_logger("shaozi.hooks.telegram")


async def telegram_update(request: web.Request) -> web.Response:
    """``POST /hooks/telegram``, checked with ``X-Telegram-Bot-Api-Secret-Token``."""
    settings = request.app[SETTINGS]
    if settings.telegram_bot_token is None or settings.telegram_secret_token is None:
        raise Problem(404, "Not Found", "Telegram is not configured")
    given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
    if not hmac.compare_digest(given.encode(), settings.telegram_secret_token.get_secret_value().encode()):
        log.warning("refused a Telegram update without the secret token")
        raise Problem(403, "Forbidden", "X-Telegram-Bot-Api-Secret-Token does not match")
    try:
        update = await request.json()
    except ValueError as exc:
        raise Problem(400, "Malformed JSON", "the update is not JSON") from exc
    query = update.get("callback_query") if isinstance(update, dict) else None
    if not isinstance(query, dict) or not str(query.get("data", "")).startswith(ACK_PREFIX):
        return web.json_response({})  # other updates are none of our business
    answer = await _acknowledge(request, query)
    await _answer_callback(settings, str(query.get("id", "")), answer)
    return web.json_response({})


async def _acknowledge(request: web.Request, query: dict) -> str:
    try:
        alert_id, number = parse_receipt_id(str(query["data"])[len(ACK_PREFIX):])
    except ValueError:
        return "无效的确认。Not a warning of ours."
    store = request.app[STORE]
    receipt = await store.receipts.get(alert_id, number)
    chat = str(((query.get("message") or {}).get("chat") or {}).get("id", ""))
    if receipt is None or receipt["c"] != "telegram" or receipt["to"] != chat:
        # A button acknowledges only the receipt of the chat it was sent to.
        log.warning("telegram press for another chat's receipt", alert_id=alert_id)
        return "无效的确认。Not a warning of ours."
    change = Change(number, "acknowledged", {"note": "acknowledged by Telegram button"})
    applied = (await store.receipts.apply(alert_id, [change], time.time()))[0]
    log.info("telegram acknowledged", alert_id=alert_id, delivery_id=f"{alert_id}.{number}", new=applied)
    return "已确认收到，谢谢。Acknowledged." if applied else "此前已确认过。Already acknowledged."


async def _answer_callback(settings, query_id: str, text: str) -> None:
    """Stop the button's spinner and show the answer (best effort: the ack is already recorded)."""
    url = f"{settings.telegram_api_base.rstrip('/')}/bot{settings.telegram_bot_token.get_secret_value()}" \
          "/answerCallbackQuery"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            async with session.post(url, json={"callback_query_id": query_id, "text": text}) as resp:
                if resp.status != 200:
                    log.warning("answerCallbackQuery failed", status=resp.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("answerCallbackQuery failed", error=type(exc).__name__)
