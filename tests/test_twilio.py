"""SMS through the real twilio SDK against a local double of Twilio's API; status callbacks
signed with Twilio's algorithm, forged ones refused."""

from __future__ import annotations

import aiohttp
import pytest
from pydantic import SecretStr

from channels.catalog import build_channels
from dispatcher.embedded import free_port
from tests.conftest import Harness, alert_json, community_registry, eventually
from tests.doubles import served
from tests.doubles.twilio import TwilioDouble

SID = "AC" + "1" * 32
TOKEN = "twilio-test-token"


@pytest.fixture
async def twilio():
    double = TwilioDouble(SID, TOKEN)
    async with served(double.app()) as double.url:
        yield double


@pytest.fixture
async def sms(settings, redis, sample_registry, twilio):
    port = free_port()
    settings = settings.model_copy(update={
        "twilio_account_sid": SID, "twilio_auth_token": SecretStr(TOKEN), "twilio_from": "+15005550006",
        "twilio_api_base": twilio.url, "public_url": f"http://127.0.0.1:{port}",
        "retry_base_s": 0.05, "retry_max_s": 0.1,
    })
    async with Harness(settings, redis, sample_registry, port=port) as h:
        h.start_worker(build_channels(settings, log_messages=False))
        yield h


async def test_sends_with_the_real_sdk_and_follows_status_callbacks(sms, twilio):
    alert = alert_json(["420116001001"])
    alert["info"]["expires"] = "2099-01-01T00:00:00+08:00"
    _, accepted = await sms.post_alert(alert)
    summary = await sms.until_state(accepted["id"], "settled")
    assert summary["totals"] == {"sent": 4}
    assert len(twilio.requests) == 4
    form = twilio.requests[0]
    assert form["From"] == "+15005550006" and form["To"].startswith("+86138")
    assert "暴雨预警" in form["Body"]
    assert f"收到请回复1或点击：{sms.settings.public_url}/a/{accepted['id']}." in form["Body"]  # the signed ack link
    assert form["StatusCallback"].startswith(f"{sms.settings.public_url}/hooks/twilio/status?r={accepted['id']}.")
    assert 0 < int(form["ValidityPeriod"]) <= 36_000

    receipts = await sms.receipts(accepted["id"], by="address")
    sids = {r["address"]: r["provider_id"] for r in receipts.values()}
    assert all(sid in twilio.sent for sid in sids.values())

    first, second = list(sids.values())[:2]
    assert await twilio.report(first, "delivered") == 204
    assert await twilio.report(first, "sent") == 204  # late and out of order: harmless
    assert await twilio.report(second, "undelivered", error_code="30003") == 204
    assert await twilio.report(second, "undelivered", error_code="30003") == 204  # twice: harmless

    async def moved():
        s = await sms.summary(accepted["id"])
        return s if s["totals"] == {"sent": 2, "delivered": 1, "failed": 1} else None

    await eventually(moved)
    receipts = await sms.receipts(accepted["id"], by="address")
    by_sid = {r["provider_id"]: r for r in receipts.values()}
    assert by_sid[first]["state"] == "delivered"
    assert 70 < len(twilio.sent[first]["Body"]) <= 134  # Chinese text: UCS-2, 67 a segment past 70
    assert by_sid[first]["history"][2]["note"] == "2 SMS segments"
    assert by_sid[second]["state"] == "failed" and by_sid[second]["error"].startswith("30003")


async def test_rate_limited_then_sent_and_invalid_number_failed(sms, twilio):
    twilio.failures = {"+8613800000003": [20429], "+8613800000004": [21211]}
    _, accepted = await sms.post_alert(alert_json(["420116001001"]))
    summary = await sms.until_state(accepted["id"], "settled")
    assert summary["totals"] == {"sent": 3, "failed": 1}
    receipts = await sms.receipts(accepted["id"], by="address")
    busy = receipts["+8613800000003"]
    # a 429 (20429) waits, and waiting is not an attempt
    assert busy["attempts"] == 1 and busy["state"] == "sent" and busy["error"].startswith("20429")
    # the second try waited for Twilio's Retry-After (1 s), not the configured 0.05 s backoff
    (queued, sending, sent) = busy["history"]
    assert (queued["state"], sending["state"], sent["state"]) == ("queued", "sending", "sent")
    assert sent["at"] - sending["at"] >= twilio.retry_after_s
    invalid = receipts["+8613800000004"]
    assert invalid["state"] == "failed" and invalid["attempts"] == 1 and invalid["error"].startswith("21211")
    assert [f["To"] for f in twilio.requests].count("+8613800000004") == 1


async def test_forged_and_unsigned_callbacks_are_refused(sms, twilio):
    _, accepted = await sms.post_alert(alert_json(["420116001001"]))
    await sms.until_state(accepted["id"], "settled")
    sid = next(iter(twilio.sent))
    assert await twilio.report(sid, "delivered", token="not-the-token") == 403
    url = twilio.sent[sid]["StatusCallback"]
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data={"MessageSid": sid, "MessageStatus": "delivered"}) as resp:
            assert resp.status == 403
    assert (await sms.summary(accepted["id"]))["totals"] == {"sent": 4}


async def test_sms_reply_acknowledges_that_officers_latest_receipt(sms, twilio):
    _, accepted = await sms.post_alert(alert_json(["420116001001"]))
    await sms.until_state(accepted["id"], "settled")
    inbound = f"{sms.settings.public_url}/hooks/twilio/inbound"

    status, answer = await twilio.reply(inbound, "+8613800000002", " 收到 ")
    assert status == 200 and "<Response><Message>已确认收到预警" in answer
    status, answer = await twilio.reply(inbound, "+8613800000003", "ＯＫ")  # full width, upper case
    assert "已确认收到预警" in answer
    status, answer = await twilio.reply(inbound, "+8613800000002", "1")
    assert "已确认过" in answer  # twice: harmless, and says so
    status, answer = await twilio.reply(inbound, "+8613999999999", "1")
    assert "未找到需要确认的预警" in answer  # a number we sent nothing to acknowledges nothing
    status, answer = await twilio.reply(inbound, "+8613800000004", "what?")
    assert "回复1" in answer
    status, _ = await twilio.reply(inbound, "+8613800000004", "1", token="forged")
    assert status == 403

    receipts = await sms.receipts(accepted["id"], by="address")
    assert {a for a, r in receipts.items() if r["state"] == "acknowledged"} == {"+8613800000002", "+8613800000003"}
    assert receipts["+8613800000002"]["history"][-1]["note"] == "acknowledged by SMS reply"
    assert (await sms.summary(accepted["id"]))["totals"] == {"sent": 2, "acknowledged": 2}


async def test_voice_call_reads_the_warning_and_a_key_acknowledges(settings, redis, sample_registry, twilio):
    port = free_port()
    settings = settings.model_copy(update={
        "twilio_account_sid": SID, "twilio_auth_token": SecretStr(TOKEN), "twilio_from": "+15005550006",
        "twilio_api_base": twilio.url, "public_url": f"http://127.0.0.1:{port}",
    })
    registry = community_registry(sample_registry, "420116001001", lambda i, p: {"channels": ["voice"]})
    async with Harness(settings, redis, registry, port=port) as h:
        h.start_worker(build_channels(settings, log_messages=False))
        _, accepted = await h.post_alert(alert_json(["420116001001"], severity="Extreme"))
        assert (await h.until_state(accepted["id"], "settled"))["totals"] == {"sent": 4}
        calls = {sid: form for sid, form in twilio.sent.items() if sid.startswith("CA")}
        assert len(calls) == 4
        sid, form = next(iter(calls.items()))
        twiml = form["Twiml"]
        assert '<Say language="cmn-CN" loop="2" voice="Polly.Zhiyu">' in twiml and "暴雨预警" in twiml
        gather = twiml.split('action="')[1].split('"')[0].replace("&amp;", "&")
        assert gather.startswith(f"{settings.public_url}/hooks/twilio/voice?r={accepted['id']}.")

        status, answer = await twilio.post_signed(gather, {"CallSid": sid, "Digits": "1", "AccountSid": SID})
        assert status == 200 and "<Hangup" in answer and "已确认收到预警" in answer
        status, _ = await twilio.post_signed(gather, {"CallSid": sid, "Digits": "1"}, token="forged")
        assert status == 403
        others = [s for s in calls if s != sid]
        await twilio.post_signed(calls[others[0]]["StatusCallback"], {"CallSid": others[0], "CallStatus": "completed"})
        await twilio.post_signed(calls[others[1]]["StatusCallback"], {"CallSid": others[1], "CallStatus": "no-answer"})
        receipts = await h.receipts(accepted["id"], by="address")
        states = {r["provider_id"]: r["state"] for r in receipts.values()}
        assert states[sid] == "acknowledged"
        assert states[others[0]] == "delivered" and states[others[1]] == "failed"
        assert receipts[calls[others[1]]["To"]]["error"] == "no-answer: Twilio reports the call no-answer"


@pytest.mark.parametrize(("status", "code", "recoverable"), [
    (429, 20429, True), (500, None, True), (503, None, True), (400, 21611, True), (400, 30001, True),
    (400, 21211, False), (400, 21610, False), (400, 21408, False), (401, 20003, False),
])
def test_twilio_errors_are_retried_or_not(status, code, recoverable):
    from twilio.base.exceptions import TwilioRestException

    from channels.twilio_base import classify

    error = classify(TwilioRestException(status, "/Messages.json", "boom", code=code), retry_after_s=3.0)
    assert error.recoverable is recoverable
    assert error.code == str(code or status)
    assert error.retry_after_s == (3.0 if recoverable else None)


def test_no_status_callback_when_twilio_cannot_reach_us(settings):
    twilio_settings = {"twilio_account_sid": SID, "twilio_auth_token": SecretStr(TOKEN),
                       "twilio_from": "+15005550006"}
    local = build_channels(settings.model_copy(update=twilio_settings), log_messages=False)
    assert local["sms"].status_callback is None and local["voice"].gather_url is None
    public = build_channels(settings.model_copy(update={**twilio_settings, "public_url": "https://warn.example.org"}),
                            log_messages=False)
    assert public["sms"].status_callback is not None
    assert build_channels(settings, log_messages=False)["sms"].name == "console"  # not configured: the outbox
