"""The readiness audit: each community's warning points (officer, loudspeaker online, chat
group, a drill acknowledged) and each street's (duty officer, full-time staff), worst first."""

from __future__ import annotations

from contacts import Device, Group, Person, Region, Registry
from dispatcher.client import render_audit
from dispatcher.gateway_acks import GatewayAcks
from dispatcher.keys import Keys
from dispatcher.receipts import ReceiptBook
from tests.conftest import Harness, alert_json

STREET, C1, C2 = "420116001000", "420116001001", "420116001002"


async def test_the_audit_names_what_each_community_and_street_lacks_worst_first(settings, redis):
    regions = [Region(code="420116000000", name="黄陂区", level="district", children=[
        Region(code=STREET, name="六指街道", level="street", children=[
            Region(code=C1, name="什仔铺社区", level="community"),
            Region(code=C2, name="六指店社区", level="community")])])]
    people = [Person(id="duty", name="值班员", role="duty_officer", region=STREET, phone="+8613800000001"),
              Person(id="o1", name="信息员", role="info_officer", region=C1, phone="+8613800000002"),
              Person(id="o2", name="无手机", role="info_officer", region=C2)]
    registry = Registry(regions, people, [Group(id="g1", name="群", region=C1, channel="wecom",
                                                webhook="http://127.0.0.1:9/hook?key=k")],  # nothing listens
                        [Device(id="gw1", name="大喇叭", region=C1, key="k"), Device(id="gw2", name="大喇叭", region=C2, key="k")])
    async with Harness(settings, redis, registry) as h:
        keys = Keys(settings.redis_prefix)
        gateways = GatewayAcks(redis, keys, ReceiptBook(redis, keys))
        await gateways.status("gw1", b"online")  # as their retained status messages say
        await gateways.status("gw2", b"offline")

        h.start_worker()
        _, drill = await h.post_alert(alert_json([C1], status="Exercise"))
        await h.until_state(drill["id"], "settled")
        _, receipts = await h.request("GET", f"/v1/alerts/{drill['id']}/receipts")
        officer = next(r for r in receipts["items"] if r["recipient"] == "o1")
        status, _ = await h.request("POST", f"/v1/receipts/{officer['id']}/ack", json={"by": "o1"})
        assert status == 200

        status, audit = await h.request("GET", "/v1/registry/audit", role="viewer")
        _, devices = await h.request("GET", "/v1/devices", role="viewer")
    assert [(d["id"], d["status"]) for d in devices["items"]] == [("gw1", "online"), ("gw2", "offline")]
    assert all(d["status_at"] for d in devices["items"]) and not any("key" in d for d in devices["items"])
    assert status == 200 and (audit["ready"], audit["total"]) == (1, 2)
    worst, ready = audit["communities"]
    assert worst["code"] == C2 and worst["missing"] == [
        "an information officer with a phone", "a loudspeaker online", "a chat group", "a drill acknowledged"]
    assert ready["code"] == C1 and ready["missing"] == [] and ready["loudspeakers_online"] == 1
    assert ready["last_drill_ack"] is not None
    assert audit["streets"] == [{"code": STREET, "name": "六指街道", "duty_officers": 1, "staff": 0,
                                 "missing": ["a full-time emergency staff member"]}]
    table = render_audit(audit)
    assert table.startswith("1 of 2 communities ready") and "六指店社区 420116001002" in table
