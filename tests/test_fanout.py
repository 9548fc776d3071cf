"""A posted alert reaches every targeted recipient exactly once per channel."""

from __future__ import annotations

from collections import Counter

from tests.conftest import alert_json


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
