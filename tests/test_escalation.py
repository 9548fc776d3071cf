"""Escalation: silent people are followed up step by step, each step once, on a clock the
tests control (every step is taken by calling the escalator with the time it is to see)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import pytest

from channels.console import ConsoleChannel
from config import EscalationStep, Settings
from contacts import Registry
from contacts.registry import Person, Region
from dispatcher.client import render_silent
from tests.conftest import Harness, alert_json

COMMUNITY = "420116001001"
WAIT = 60.0


def _steps(*actions: str) -> list[EscalationStep]:
    return [EscalationStep(wait_s=WAIT, do=a) for a in actions]


@pytest.fixture
def registry() -> Registry:
    regions = [Region(code="420116000000", name="黄陂区", level="district", children=[
        Region(code="420116001000", name="六指街道", level="street", children=[
            Region(code=COMMUNITY, name="什仔铺社区", level="community")])])]
    people = [
        Person(id="p1", name="张三", role="info_officer", region=COMMUNITY, phone="+8613800000101",
               channels=["sms", "telegram"], telegram_chat_id="5101", backup="p2", supervisor="p3"),
        Person(id="p2", name="李四", role="safety_officer", region=COMMUNITY, phone="+8613800000102"),
        Person(id="p3", name="王五", role="duty_officer", region="420116001000", phone="+8613800000103"),
        Person(id="p4", name="赵六", role="info_officer", region=COMMUNITY, phone="+8613800000104",
               backup="p2", supervisor="p3"),
        Person(id="p5", name="钱七", role="leader", region=COMMUNITY, phone="+8613800000105", supervisor="p3"),
    ]
    return Registry(regions, people)


@pytest.fixture
def escalating(settings: Settings) -> Settings:
    return settings.model_copy(update={"escalation": {
        "Extreme": _steps("resend", "next_channel", "voice", "backup", "supervisor"),
        "Extreme:leader": [],  # a role's own policy wins: leaders are not followed up here
    }})


@pytest.fixture
async def h(escalating: Settings, redis, registry: Registry):
    async with Harness(escalating, redis, registry) as harness:
        yield harness


def _channels(h: Harness) -> dict:
    console = ConsoleChannel(h.settings.data_dir / "outbox" / "console.jsonl", log_messages=False)
    return {"sms": console, "voice": console, "telegram": console}


def _escalated(receipts: list[dict], step: int) -> list[tuple[str, str, str | None]]:
    return sorted((r["recipient"], r["channel"], r["escalation"]["for"])
                  for r in receipts if r.get("escalation", {}).get("step") == step)


async def _post(h: Harness, **top) -> str:
    status, accepted = await h.post_alert(alert_json([COMMUNITY], severity="Extreme", **top))
    assert status == 202, accepted
    await h.until_state(accepted["id"], "settled")
    return accepted["id"]


async def test_silent_people_walk_the_steps_in_order_each_once_across_a_restart(h: Harness):
    worker = h.start_worker(_channels(h))
    alert_id = await _post(h, channels=["sms"])  # only SMS at first, so a next channel remains
    t0 = time.time()
    status, _ = await h.request("POST", f"/v1/alerts/{alert_id}/acks", json={"recipients": ["p2"]})
    assert status == 200
    planned = await h.receipts(alert_id)
    assert sorted(r["recipient"] for r in planned) == ["p1", "p2", "p4", "p5"]

    await worker.escalator.tick(t0 + WAIT / 2)
    assert len(await h.receipts(alert_id)) == 4, "nothing is due before the wait is over"

    await worker.escalator.tick(t0 + WAIT + 1)  # 1: resend where the message got through
    assert _escalated(await h.receipts(alert_id), 1) == [("p1", "sms", "p1"), ("p4", "sms", "p4")]
    # Another worker looking at the same moment, or the same one again, takes nothing twice.
    await asyncio.gather(worker.escalator.work(alert_id, t0 + WAIT + 1),
                         worker.escalator.work(alert_id, t0 + WAIT + 1))
    assert len(await h.receipts(alert_id)) == 6

    await h.stop_worker()  # a restart: what was taken is in Redis, not in the worker
    worker = h.start_worker(_channels(h))
    await worker.escalator.tick(t0 + 2 * WAIT + 2)  # 2: the next channel in the person's order
    assert _escalated(await h.receipts(alert_id), 2) == [("p1", "telegram", "p1")]

    await worker.escalator.tick(t0 + 3 * WAIT + 3)  # 3: a voice call
    receipts = await h.receipts(alert_id)
    assert _escalated(receipts, 3) == [("p1", "voice", "p1"), ("p4", "voice", "p4")]
    call = next(r for r in receipts if r.get("escalation", {}).get("step") == 3 and r["recipient"] == "p4")
    status, _ = await h.request("POST", f"/v1/receipts/{call['id']}/ack", json={"by": "p4"})
    assert status == 200  # p4 answers the call: their escalation stops here

    await worker.escalator.tick(t0 + 4 * WAIT + 4)  # 4: the backup follows up whoever is still silent
    assert _escalated(await h.receipts(alert_id), 4) == [("p2", "sms", "p1")]
    await worker.escalator.tick(t0 + 5 * WAIT + 5)  # 5: the supervisor gets the list
    receipts = await h.receipts(alert_id)
    assert _escalated(receipts, 5) == [("p3", "sms", None)]
    await worker.escalator.tick(t0 + 20 * WAIT)
    assert len(await h.receipts(alert_id)) == len(receipts) == 4 + 2 + 1 + 2 + 1 + 1
    assert await h.redis.zscore(f"{h.settings.redis_prefix}:escalations", alert_id) is None, "nothing left to do"

    await h.until_state(alert_id, "settled")
    texts = {(m["name"], m["channel"]): m["text"] for m in h.outbox() if m["alert"] == alert_id}
    sent = [m for m in h.outbox() if m["alert"] == alert_id]
    assert len(sent) == len(receipts), "every receipt sent once"
    assert texts[("张三", "telegram")].startswith("【再次提醒】")
    assert texts[("李四", "sms")].startswith("【请代为跟进】张三尚未确认此预警")
    assert texts[("王五", "sms")].startswith("【督办】以下1人尚未确认此预警：张三。")
    assert "钱七" not in texts[("王五", "sms")], "a leader's empty policy does not escalate"

    # The backup's acknowledgement counts for the person they follow up.
    status, silent = await h.request("GET", f"/v1/alerts/{alert_id}/silent")
    assert status == 200
    assert sorted(p["id"] for s in silent["streets"] for c in s["communities"] for p in c["people"]) == ["p1", "p5"]
    p1 = next(p for s in silent["streets"] for c in s["communities"] for p in c["people"] if p["id"] == "p1")
    assert [t.get("escalation", {}).get("action") for t in p1["tried"]] == [
        None, "resend", "next_channel", "voice", "backup"]
    assert "step 4 backup → 李四 sms delivered" in render_silent(silent)  # the CLI's table
    backup = next(r for r in receipts if r.get("escalation", {}).get("action") == "backup")
    status, _ = await h.request("POST", f"/v1/receipts/{backup['id']}/ack", json={"by": "p2"})
    assert status == 200
    status, silent = await h.request("GET", f"/v1/alerts/{alert_id}/silent")
    assert silent["silent"] == 1 and silent["acknowledged"] == 3


async def test_cancel_and_expiry_stop_pending_escalation(h: Harness):
    worker = h.start_worker(_channels(h))
    cancelled = await _post(h, identifier="esc-cancel", sender="district-eoc")
    expiring = await _post(h, identifier="esc-expire", sender="district-eoc")
    t0 = time.time()
    status, _ = await h.post_alert({**alert_json([COMMUNITY], severity="Extreme"), "msgType": "Cancel",
                                    "references": f"district-eoc,esc-cancel,{datetime.now(timezone.utc).isoformat()}"})
    assert status == 202
    await h.until_state(cancelled, "cancelled")
    sizes = {a: len(await h.receipts(a)) for a in (cancelled, expiring)}

    # The expiring one ends while still silent: past its expiry nothing is followed up.
    state_key = f"{h.settings.redis_prefix}:alert:{{{expiring}}}"
    await h.redis.hset(state_key, "expires_at", t0 + WAIT / 2)
    await worker.escalator.tick(t0 + WAIT + 1)
    assert {a: len(await h.receipts(a)) for a in sizes} == sizes
    for alert_id in sizes:
        assert await h.redis.zscore(f"{h.settings.redis_prefix}:escalations", alert_id) is None


async def test_no_deadline_outlives_the_alert(h: Harness):
    """Steps are taken while the alert is in force, and its deadline goes with its expiry."""
    worker = h.start_worker(_channels(h))
    expires = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat(timespec="seconds")
    alert = alert_json([COMMUNITY], severity="Extreme")
    alert["info"]["expires"] = expires
    status, accepted = await h.post_alert(alert)
    assert status == 202
    await h.until_state(accepted["id"], "settled")
    await worker.escalator.tick(time.time() + WAIT + 1)
    assert {who for who, _, _ in _escalated(await h.receipts(accepted["id"]), 1)} == {"p1", "p2", "p4"}
    await worker.escalator.tick(time.time() + 2 * 3600)
    assert await h.redis.zscore(f"{h.settings.redis_prefix}:escalations", accepted["id"]) is None


def test_policies_are_checked_when_settings_load():
    with pytest.raises(ValueError, match="escalation policy 'Extrme'"):
        Settings(escalation={"Extrme": [{"wait_s": 60, "do": "resend"}]})
    with pytest.raises(ValueError, match="escalation policy 'Extreme:mayor'"):
        Settings(escalation={"Extreme:mayor": []})
    with pytest.raises(ValueError):
        Settings(escalation={"Extreme": [{"wait_s": 60, "do": "pray"}]})


def test_backups_and_supervisors_must_be_people_of_the_registry(registry: Registry):
    people = [registry.person(pid) for pid in ("p1", "p2", "p4")]  # p3, their supervisor, left out
    with pytest.raises(ValueError, match="person p1: supervisor p3 is not another person"):
        Registry(registry.regions, people)
    selfish = people[1].model_copy(update={"backup": "p2"})
    with pytest.raises(ValueError, match="person p2: backup p2 is not another person"):
        Registry(registry.regions, [selfish])
