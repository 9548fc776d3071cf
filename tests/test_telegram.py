"""Telegram: sendMessage with an ack button against a local double of the Bot API; a press
acknowledges exactly the receipt it was sent with; a forged update is refused."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from channels.catalog import build_channels
from tests.conftest import Harness, alert_json, community_registry
from tests.doubles import served
from tests.doubles.telegram import TelegramDouble

TOKEN, SECRET = "123456:bot-test-token", "hook-secret"


@pytest.fixture
async def telegram():
    double = TelegramDouble(TOKEN)
    async with served(double.app()) as double.url:
        yield double


@pytest.fixture
async def bot(settings, redis, sample_registry, telegram):
    settings = settings.model_copy(update={
        "telegram_bot_token": SecretStr(TOKEN), "telegram_secret_token": SecretStr(SECRET),
        "telegram_api_base": telegram.url, "retry_base_s": 0.05, "retry_max_s": 0.1,
    })
    registry = community_registry(sample_registry, "420116001001",
                                  lambda i, p: {"channels": ["telegram"], "telegram_chat_id": str(9000 + i)})
    async with Harness(settings, redis, registry) as h:
        h.start_worker(build_channels(settings, log_messages=False))
        yield h


def _press(message: dict, data: str | None = None, chat: int | None = None) -> dict:
    return {"update_id": 1, "callback_query": {
        "id": f"q{message['message_id']}", "from": {"id": message["chat"]["id"], "is_bot": False},
        "message": {**message, "chat": {"id": chat or message["chat"]["id"], "type": "private"}},
        "data": data or message["reply_markup"]["inline_keyboard"][0][0]["callback_data"]}}


async def test_button_press_acknowledges_exactly_its_receipt(bot, telegram):
    telegram.failures = {"9001": [(429, "Too Many Requests: retry after 1", 1)],
                         "9002": [(400, "Bad Request: chat not found", None)]}
    _, accepted = await bot.post_alert(alert_json(["420116001001"]))
    summary = await bot.until_state(accepted["id"], "settled")
    assert summary["totals"] == {"sent": 3, "failed": 1}
    _, page = await bot.request("GET", f"/v1/alerts/{accepted['id']}/receipts")
    receipts = {r["address"]: r for r in page["items"]}
    waited = receipts["9001"]  # the 429 waited its retry_after, which is not an attempt
    assert waited["state"] == "sent" and waited["attempts"] == 1 and waited["error"].startswith("429")
    assert receipts["9002"]["state"] == "failed" and receipts["9002"]["error"].startswith("400: Bad Request: chat")

    first = telegram.messages[0]
    assert "暴雨预警" in first["text"]
    button = first["reply_markup"]["inline_keyboard"][0][0]
    assert button["text"] == "收到 / Acknowledge" and len(button["callback_data"].encode()) <= 64
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    status, _ = await bot.request("POST", "/hooks/telegram", role=None, json=_press(first), headers=headers)
    assert status == 200
    assert telegram.answers[-1] == {"callback_query_id": f"q{first['message_id']}", "text": "已确认收到，谢谢。Acknowledged."}
    await bot.request("POST", "/hooks/telegram", role=None, json=_press(first), headers=headers)
    assert telegram.answers[-1]["text"].startswith("此前已确认过")

    # the same button data pressed from another chat acknowledges nothing
    other = telegram.messages[1]
    await bot.request("POST", "/hooks/telegram", role=None, headers=headers,
                      json=_press(other, data=button["callback_data"], chat=other["chat"]["id"]))
    status, _ = await bot.request("POST", "/hooks/telegram", role=None, json=_press(other),
                                  headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"})
    assert status == 403
    assert (await bot.summary(accepted["id"]))["totals"] == {"sent": 2, "acknowledged": 1, "failed": 1}
    _, page = await bot.request("GET", f"/v1/alerts/{accepted['id']}/receipts?state=acknowledged")
    assert [r["address"] for r in page["items"]] == [str(first["chat"]["id"])]
