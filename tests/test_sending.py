"""Retries, permanent failures, rate limits and cancellation through the real sender path."""

from __future__ import annotations

import asyncio

from channels.base import Channel, ChannelError, Delivery, SendResult
from channels.catalog import build_channels
from config import ChannelLimits
from dispatcher.ratelimit import RateLimiter
from dispatcher.sender import backoff_s
from tests.conftest import alert_json, eventually


class ScriptedChannel(Channel):
    """A channel whose provider answers from a script: per address, a list of outcomes."""

    name = "scripted"
    default_limits = ChannelLimits(concurrency=16, max_attempts=3)

    def __init__(self, script: dict[str, list[object]], delay_s: float = 0.0) -> None:
        self.script = script
        self.delay_s = delay_s
        self.calls: list[tuple[str, int]] = []
        self.receipts: list[str] = []

    async def send(self, delivery: Delivery) -> SendResult:
        self.calls.append((delivery.address, delivery.attempt))
        self.receipts.append(delivery.receipt_id)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        plan = self.script.get(delivery.address, [])
        outcome = plan.pop(0) if plan else SendResult("sent", provider_id=f"id-{delivery.receipt_id}")
        if isinstance(outcome, ChannelError):
            raise outcome
        return outcome


async def test_transient_errors_are_retried_then_succeed(harness):
    busy = ChannelError("429 Too Many Requests", recoverable=True, code="20429", retry_after_s=0.1)
    channel = ScriptedChannel({"+8613800000003": [busy, busy]})
    harness.start_worker({"sms": channel})
    _, accepted = await harness.post_alert(alert_json(["420116001001"]))
    summary = await harness.until_state(accepted["id"], "settled")
    assert summary["totals"] == {"sent": 4}
    receipt = (await harness.receipts(accepted["id"], by="address"))["+8613800000003"]
    assert receipt["attempts"] == 3 and receipt["state"] == "sent"
    assert [a for addr, a in channel.calls if addr == "+8613800000003"] == [1, 2, 3]


async def test_permanent_error_fails_without_retry(harness):
    invalid = ChannelError("invalid 'To' number", recoverable=False, code="21211")
    channel = ScriptedChannel({"+8613800000004": [invalid]})
    harness.start_worker({"sms": channel})
    _, accepted = await harness.post_alert(alert_json(["420116001001"]))
    summary = await harness.until_state(accepted["id"], "settled")
    assert summary["totals"] == {"sent": 3, "failed": 1}
    receipt = (await harness.receipts(accepted["id"], by="address"))["+8613800000004"]
    assert receipt["error"].startswith("21211") and receipt["attempts"] == 1
    assert [a for addr, a in channel.calls if addr == "+8613800000004"] == [1]


async def test_retries_used_up_end_failed(harness):
    down = ChannelError("503 from provider", recoverable=True)
    channel = ScriptedChannel({"+8613800000005": [down] * 10})
    harness.start_worker({"sms": channel})
    _, accepted = await harness.post_alert(alert_json(["420116001001"]))
    await harness.until_state(accepted["id"], "settled")
    receipt = (await harness.receipts(accepted["id"], by="address"))["+8613800000005"]
    assert receipt["state"] == "failed" and "gave up after 3 attempts" in receipt["error"]


async def test_cancel_ends_every_delivery_not_yet_sent(harness, sample_registry):
    slow = ScriptedChannel({}, delay_s=0.05)
    slow.default_limits = ChannelLimits(concurrency=1)
    harness.start_worker({"sms": slow, "console": build_channels(harness.settings)["console"]})
    alert = alert_json(["420116000000"], identifier="big-1", sender="district")
    _, accepted = await harness.post_alert(alert)
    await harness.until_state(accepted["id"], "dispatching")
    cancel = alert_json([], identifier="big-1-cancel", sender="district", msgType="Cancel",
                        references="district,big-1,2026-07-01T08:00:00+08:00")
    del cancel["info"]
    status, cancelled = await harness.post_alert(cancel)
    assert status == 202, cancelled
    first = await harness.until_state(accepted["id"], "cancelled")
    assert first["cancelled_by"] == cancelled["id"]

    async def drained():
        s = await harness.summary(accepted["id"])
        return s if not s["totals"].get("queued") and not s["totals"].get("sending") else None

    first = await eventually(drained)
    total = len(sample_registry.people_in(["420116000000"]))
    assert first["totals"]["cancelled"] > 0
    assert first["totals"]["cancelled"] + first["totals"].get("sent", 0) == total
    # Nothing of the first alert went to the provider beyond what is recorded as sent.
    assert sum(r.startswith(accepted["id"]) for r in slow.receipts) == first["totals"].get("sent", 0)
    # The cancel itself goes out to the same area, telling them the warning is lifted.
    second = await harness.until_state(cancelled["id"], "settled")
    assert second["recipients"] == total


def test_backoff_grows_and_honours_retry_after():
    assert backoff_s(1, 2.0, 300, None) <= 2.0
    assert 8.0 <= backoff_s(4, 2.0, 300, None) <= 16.0
    assert backoff_s(30, 2.0, 300, None) <= 300
    assert backoff_s(1, 2.0, 300, 42.0) >= 42.0


async def test_rate_limit_is_shared_by_every_worker(redis, prefix):
    """Two senders (as in two workers) on one bucket of 20/s: 60 sends reserve 3 s between them."""
    first = RateLimiter(redis, f"{prefix}:rate", 20)
    second = RateLimiter(redis, f"{prefix}:rate", 20)
    waits = await asyncio.gather(*(limiter.take(10) for limiter in (first, second, first, second, first, second)))
    # 20 come from the full bucket at once; each further 10 waits half a second more than the last
    assert sorted(round(w, 1) for w in waits) == [0.0, 0.0, 0.5, 1.0, 1.5, 2.0]
