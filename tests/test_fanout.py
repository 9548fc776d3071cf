"""A posted alert reaches every targeted recipient exactly once per channel."""

from __future__ import annotations

import asyncio
from collections import Counter

from tests.conftest import alert_json, eventually


async def test_alert_reaches_every_recipient_once(harness, sample_registry):
    harness.start_worker()
    status, accepted = await harness.post_alert(alert_json(["420116001000"], identifier="flood-1"))
    assert status == 202, accepted
    summary = await harness.until_state(accepted["id"], "settled")

    expected = {p.id for p in sample_registry.people_in(["420116001000"])}
    assert len(expected) == 13
    assert summary["recipients"] == len(expected)
    assert summary["totals"] == {"delivered": len(expected)}
    assert summary["counts"] == {"sms": {"delivered": len(expected)}}

    lines = harness.outbox()
    sent_to = Counter(line["to"] for line in lines)
    phones = {p.phone for p in sample_registry.people_in(["420116001000"])}
    assert set(sent_to) == phones
    assert set(sent_to.values()) == {1}
    assert all("暴雨预警" in line["text"] for line in lines)


async def test_second_identical_post_changes_nothing(harness):
    harness.start_worker()
    alert = alert_json(["420116001001"], identifier="flood-2", sender="district-office")
    status, first = await harness.post_alert(alert)
    assert status == 202
    await harness.until_state(first["id"], "settled")
    before = harness.outbox()

    status, second = await harness.post_alert(alert)
    assert status == 200
    assert second["id"] == first["id"] and second["duplicate"] is True
    _, page = await harness.request("GET", "/v1/alerts")
    assert [a["id"] for a in page["items"]] == [first["id"]]
    await harness.stop_worker()  # lets anything queued by mistake drain first
    assert harness.outbox() == before


async def test_idempotency_key_answers_with_the_first_alert(harness):
    first_status, first = await harness.post_alert(alert_json(), headers={"Idempotency-Key": "abc-1"})
    second_status, second = await harness.post_alert(alert_json(), headers={"Idempotency-Key": "abc-1"})
    assert (first_status, second_status) == (202, 200)
    assert second["id"] == first["id"]


async def test_region_alert_reaches_the_subtree_only(harness, sample_registry):
    harness.start_worker()
    _, accepted = await harness.post_alert(alert_json(["420116002001"]))
    summary = await harness.until_state(accepted["id"], "settled")
    people = sample_registry.people_in(["420116002001"])
    assert summary["recipients"] == len(people) == 4
    assert {line["to"] for line in harness.outbox()} == {p.phone for p in people}


async def test_area_reaching_nobody_is_accepted_and_says_so(harness):
    harness.start_worker()
    status, accepted = await harness.post_alert(alert_json(["110101000000"]))
    assert status == 202
    assert "reaches nobody" in accepted["recipients_hint"]
    assert accepted["unknown_regions"] == ["110101000000"]
    summary = await harness.until_state(accepted["id"], "settled")
    assert summary["recipients"] == 0 and summary["reaches_nobody"] is True
    assert "reaches nobody" in summary["summary"]
    assert harness.outbox() == []


async def test_exercise_is_marked_as_a_drill(harness):
    harness.start_worker()
    _, accepted = await harness.post_alert(alert_json(["420116001001"], status="Exercise"))
    await harness.until_state(accepted["id"], "settled")
    assert all(line["text"].startswith("【演练】") for line in harness.outbox())


async def test_expired_alert_is_not_sent(harness):
    harness.start_worker()
    alert = alert_json(["420116001001"])
    alert["info"]["expires"] = "2020-01-01T00:00:00+08:00"
    _, accepted = await harness.post_alert(alert)
    summary = await harness.until_state(accepted["id"], "expired")
    assert summary["totals"] == {"expired": 4}
    assert harness.outbox() == []


async def test_cap_alert_with_adcode_reaches_the_region(harness, sample_registry):
    harness.start_worker()
    xml = """<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>HB-GEO-2026-0701</identifier><sender>geo@hubei.example</sender>
  <sent>2026-07-01T08:00:00+08:00</sent><status>Actual</status><msgType>Alert</msgType><scope>Public</scope>
  <info><language>zh-CN</language><category>Geo</category><event>地质灾害</event><urgency>Immediate</urgency>
    <severity>Severe</severity><certainty>Likely</certainty><headline>地质灾害气象风险预警</headline>
    <area><areaDesc>长轩岭社区</areaDesc><geocode><valueName>ADCODE</valueName><value>420116002001</value></geocode></area>
  </info></alert>""".encode()
    code, accepted = await harness.request("POST", "/v1/alerts", data=xml, headers={"Content-Type": "application/cap+xml"})
    assert code == 202, accepted
    summary = await harness.until_state(accepted["id"], "settled")
    assert summary["recipients"] == len(sample_registry.people_in(["420116002001"])) == 4
    assert all("地质灾害气象风险预警" in line["text"] for line in harness.outbox())


async def test_update_supersedes_what_is_not_yet_sent(harness, sample_registry):
    from channels.base import Channel, SendResult
    from config import ChannelLimits

    class Slow(Channel):
        name = "slow"
        default_limits = ChannelLimits(concurrency=1)

        async def send(self, delivery):
            await asyncio.sleep(0.02)
            return SendResult("sent")

    harness.start_worker({"sms": Slow()})
    _, first = await harness.post_alert(alert_json(["420116000000"], identifier="storm-1", sender="met"))
    await harness.until_state(first["id"], "dispatching")
    update = alert_json(["420116001001"], identifier="storm-2", sender="met", msgType="Update",
                        references="met,storm-1,2026-07-01T08:00:00+08:00")
    _, second = await harness.post_alert(update)
    old = await harness.until_state(first["id"], "cancelled")
    assert old["cancelled_by"] == second["id"]
    new = await harness.until_state(second["id"], "settled")
    assert new["totals"] == {"sent": 4}
    total = len(sample_registry.people_in(["420116000000"]))

    async def drained():
        s = await harness.summary(first["id"])
        return s if "queued" not in s["totals"] and "sending" not in s["totals"] else None

    old = await eventually(drained)
    assert old["totals"]["cancelled"] > 0
    assert old["totals"]["cancelled"] + old["totals"].get("sent", 0) == total


async def test_old_alerts_are_forgotten_after_the_retention_period(harness, redis):
    worker = harness.start_worker()
    alert = alert_json(["420116001001"], identifier="old-1", sender="district")
    _, first = await harness.post_alert(alert, headers={"Idempotency-Key": "old-key"})
    await harness.until_state(first["id"], "settled")
    _, recent = await harness.post_alert(alert_json(["420116001001"]))
    await harness.until_state(recent["id"], "settled")

    assert await worker.prune() == 0  # nothing is 90 days old
    accepted_at = (await harness.summary(first["id"]))["accepted_at"]
    # a little over 90 days after the first (the index keeps milliseconds); the second came later
    assert await worker.prune(now=accepted_at + 90 * 86400 + 0.002) == 1
    status, _ = await harness.request("GET", f"/v1/alerts/{first['id']}")
    assert status == 404
    prefix = harness.settings.redis_prefix
    assert [k async for k in redis.scan_iter(match=f"{prefix}:alert:{{{first['id']}}}*")] == []
    assert (await harness.summary(recent["id"]))["totals"] == {"delivered": 4}
    # its identifier and idempotency key are free again
    status, again = await harness.post_alert(alert, headers={"Idempotency-Key": "old-key"})
    assert status == 202 and again["id"] != first["id"]
