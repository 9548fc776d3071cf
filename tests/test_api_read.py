"""The reading side of the API: summaries, receipts, CAP out, events, health, metrics, OpenAPI."""

from __future__ import annotations

import json

import xmlschema

from tests.conftest import SHARED_CAP, alert_json


async def _settled(harness, regions=("420116001000",)):
    harness.start_worker()
    _, accepted = await harness.post_alert(alert_json(list(regions)))
    return await harness.until_state(accepted["id"], "settled")


async def test_summary_shape(harness):
    summary = await _settled(harness)
    assert set(summary) >= {"id", "state", "alert", "recipients", "counts", "totals"}
    assert summary["alert"]["info"][0]["event"] == "暴雨"
    assert summary["alert"]["identifier"] and summary["alert"]["sender"] == "shaozi-admin"


async def test_receipts_page_and_filter(harness, sample_registry):
    summary = await _settled(harness)
    alert_id = summary["id"]
    seen, cursor = [], None
    while True:
        q = f"?limit=5{'&cursor=' + cursor if cursor else ''}"
        status, page = await harness.request("GET", f"/v1/alerts/{alert_id}/receipts{q}")
        assert status == 200
        seen += page["items"]
        cursor = page["next"]
        if cursor is None:
            break
    assert len(seen) == summary["recipients"] == 13
    assert len({r["id"] for r in seen}) == 13
    receipt = seen[0]
    assert receipt["state"] == "delivered" and receipt["channel"] == "sms"
    assert [h["state"] for h in receipt["history"]] == ["queued", "sending", "delivered"]

    _, one = await harness.request("GET", f"/v1/alerts/{alert_id}/receipts?region=420116001001")
    community = {p.id for p in sample_registry.people_in(["420116001001"])}
    assert {r["recipient"] for r in one["items"]} == community
    _, none = await harness.request("GET", f"/v1/alerts/{alert_id}/receipts?state=failed")
    assert none == {"items": [], "next": None}
    status, bad = await harness.request("GET", f"/v1/alerts/{alert_id}/receipts?limit=0")
    assert status == 400 and bad["errors"][0]["path"] == "query.limit"


async def test_cap_output_validates(harness):
    summary = await _settled(harness)
    status, xml = await harness.request("GET", f"/v1/alerts/{summary['id']}.cap")
    assert status == 200
    xmlschema.XMLSchema(str(SHARED_CAP / "cap12.xsd")).validate(xml)
    assert "ADCODE" in xml and "Z</sent>" not in xml


async def test_events_stream_ends_when_settled(harness):
    harness.start_worker()
    _, accepted = await harness.post_alert(alert_json(["420116001000"]))
    async with harness.session.get(f"/v1/alerts/{accepted['id']}/events",
                                   headers={"Authorization": "Bearer k-viewer"}) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        text = (await resp.read()).decode()
    events = [block for block in text.split("\n\n") if block.startswith("event:")]
    assert events[-1].startswith("event: end")
    last = json.loads(events[-1].split("data: ", 1)[1])
    assert last["state"] == "settled" and last["totals"] == {"delivered": 13}


async def test_regions_tree(harness):
    status, body = await harness.request("GET", "/v1/regions", role="viewer")
    assert status == 200
    district = body["items"][0]
    assert district["code"] == "420116000000" and district["name"] == "黄陂区"
    streets = {s["name"] for s in district["children"]}
    assert {"六指街道", "长轩岭街道"} <= streets


async def test_health_ready_metrics(harness):
    assert await harness.request("GET", "/healthz", role=None) == (200, {"status": "ok"})
    status, body = await harness.request("GET", "/readyz", role=None)
    assert status == 503 and "worker" in body["detail"]
    await _settled(harness)
    status, body = await harness.request("GET", "/readyz", role=None)
    assert status == 200 and body["workers"] == 1
    status, text = await harness.request("GET", "/metrics", role=None)
    assert status == 200
    assert 'shaozi_receipts_total{channel="sms",state="delivered"}' in text
    assert 'shaozi_queue_depth{channel="sms",priority="1"} 0.0' in text


async def test_openapi_documents_every_route(harness):
    status, doc = await harness.request("GET", "/openapi.json", role=None)
    assert status == 200 and doc["openapi"].startswith("3.1")
    for path in ["/v1/alerts", "/v1/alerts/{id}", "/v1/alerts/{id}.cap", "/v1/alerts/{id}/receipts",
                 "/v1/alerts/{id}/events", "/v1/regions", "/healthz", "/readyz", "/metrics"]:
        assert path in doc["paths"], path
    post = doc["paths"]["/v1/alerts"]["post"]
    assert {"202", "401", "403", "413", "415", "422"} <= set(post["responses"])
    assert "Alert" in doc["components"]["schemas"] and "Info" in doc["components"]["schemas"]
