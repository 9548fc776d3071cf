"""Signed ack links: a valid one acknowledges exactly its receipt; forged, moved or expired
ones are refused with a clear page."""

from __future__ import annotations

import re
import time

import pytest

from dispatcher.acklinks import AckLinkError, AckLinks
from tests.conftest import alert_json


def test_tokens_cannot_be_forged_moved_or_stretched():
    links = AckLinks("secret-one", "https://warn.example.org")
    token = links.token("06h23dsw021px5q8.12", time.time() + 60)
    assert links.verify(token) == "06h23dsw021px5q8.12"
    rid, expiry, mac = token.split("~")
    for bad, reason in [
        (f"06h23dsw021px5q8.13~{expiry}~{mac}", "forged"),  # moved to another receipt
        (f"{rid}~{int(expiry, 36) + 9999:x}~{mac}", "forged"),  # stretched
        (f"{rid}~{expiry}~{mac[:-1]}{'B' if mac.endswith('A') else 'A'}", "forged"),  # one character off
        ("nothing-here", "malformed"),
    ]:
        with pytest.raises(AckLinkError) as caught:
            links.verify(bad)
        assert caught.value.reason == reason
    with pytest.raises(AckLinkError) as caught:
        AckLinks("another-secret", "https://x").verify(token)
    assert caught.value.reason == "forged"
    with pytest.raises(AckLinkError) as caught:
        links.verify(links.token("06h23dsw021px5q8.12", time.time() - 1))
    assert caught.value.reason == "expired"
    assert len(links.url("06h23dsw021px5q8.12", None)) < 75  # short enough for an SMS


async def test_link_page_acknowledges_exactly_its_receipt(harness):
    harness.start_worker()
    _, accepted = await harness.post_alert(alert_json(["420116001001"]))
    await harness.until_state(accepted["id"], "settled")
    line = harness.outbox()[1]
    url = re.search(r"(http://\S+/a/\S+)$", line["text"]).group(1)
    path = url.split("://", 1)[1].split("/", 1)[1]

    status, page = await harness.request("GET", f"/{path}", role=None)
    assert status == 200 and "暴雨预警" in page and "请转移低洼地带群众" in page and "<button" in page
    status, page = await harness.request("POST", f"/{path}", role=None)
    assert status == 200 and "已确认收到，谢谢" in page
    status, page = await harness.request("POST", f"/{path}", role=None)
    assert status == 200 and "此前已确认过" in page

    _, receipts = await harness.request("GET", f"/v1/alerts/{accepted['id']}/receipts")
    acked = [r for r in receipts["items"] if r["state"] == "acknowledged"]
    assert [r["id"] for r in acked] == [line["receipt"]]
    assert acked[0]["history"][-1]["note"] == "acknowledged by link"

    rid, expiry, mac = path.split("/", 1)[1].split("~")
    other = f"{rid.rsplit('.', 1)[0]}.0"
    status, page = await harness.request("POST", f"/a/{other}~{expiry}~{mac}", role=None)
    assert status == 403 and "链接无效" in page and "Traceback" not in page
    status, page = await harness.request("GET", "/a/garbage", role=None)
    assert status == 400 and "链接无效" in page
    assert (await harness.summary(accepted["id"]))["totals"] == {"delivered": 3, "acknowledged": 1}


async def test_operators_acknowledge_through_the_api(harness, sample_registry):
    harness.start_worker()
    _, accepted = await harness.post_alert(alert_json(["420116001001"]))
    await harness.until_state(accepted["id"], "settled")
    alert_id = accepted["id"]
    people = sample_registry.people_in(["420116001001"])

    status, result = await harness.request("POST", f"/v1/receipts/{alert_id}.0/ack", role="officer",
                                           json={"by": "值班员王明", "note": "电话确认"})
    assert status == 200 and result == {"acknowledged": [f"{alert_id}.0"], "already": []}
    status, result = await harness.request("POST", f"/v1/alerts/{alert_id}/acks", role="officer",
                                           json={"recipients": [people[0].id, people[1].id, "nobody"], "by": "街道值班室"})
    assert status == 200
    assert result == {"acknowledged": [f"{alert_id}.1"], "already": [f"{alert_id}.0"], "unknown": ["nobody"]}

    _, page = await harness.request("GET", f"/v1/alerts/{alert_id}/receipts?state=acknowledged")
    notes = {r["id"]: r["history"][-1]["note"] for r in page["items"]}
    assert notes[f"{alert_id}.0"] == f"acknowledged by 值班员王明 for {people[0].name} via the API: 电话确认"
    assert notes[f"{alert_id}.1"] == f"acknowledged by 街道值班室 for {people[1].name} via the API"

    assert (await harness.request("POST", f"/v1/receipts/{alert_id}.0/ack", role="viewer", json={}))[0] == 403
    assert (await harness.request("POST", f"/v1/receipts/{alert_id}.99/ack", json={}))[0] == 404
    status, problem = await harness.request("POST", f"/v1/alerts/{alert_id}/acks", json={"recipients": []})
    assert status == 422 and problem["errors"][0]["path"] == "recipients"


async def test_silent_lists_who_has_not_acknowledged(harness, sample_registry):
    from dispatcher.client import render_silent

    harness.start_worker()
    _, accepted = await harness.post_alert(alert_json(["420116001000"]))
    await harness.until_state(accepted["id"], "settled")
    shizaipu = sample_registry.people_in(["420116001001"])
    await harness.request("POST", f"/v1/alerts/{accepted['id']}/acks", json={"recipients": [p.id for p in shizaipu]})

    status, data = await harness.request("GET", f"/v1/alerts/{accepted['id']}/silent", role="viewer")
    assert status == 200
    assert (data["recipients"], data["acknowledged"], data["silent"]) == (13, 4, 9)
    [street] = data["streets"]
    assert street["name"] == "六指街道" and street["silent"] == 9
    communities = {c["name"]: c for c in street["communities"]}
    assert "什仔铺社区" not in communities and set(communities) == {"六指店社区", "甘棠村", None}
    person = communities["甘棠村"]["people"][0]
    assert person["tried"] == [{"receipt": person["tried"][0]["receipt"], "channel": "sms", "state": "delivered",
                                "attempts": 1, "error": None}]
    table = render_silent(data)
    assert table.splitlines()[0].endswith("9 of 13 recipients have not acknowledged")
    assert f"    {person['name']} [{person['id']}]: sms delivered" in table
