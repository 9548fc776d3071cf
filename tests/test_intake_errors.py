"""Bad input gets a clear problem+json answer and leaves nothing stored."""

from __future__ import annotations

import pytest

from tests.conftest import SHARED_CAP, alert_json

BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&lol3;</identifier></alert>"""


async def _stored(harness) -> int:
    return await harness.redis.hlen(harness.settings.redis_prefix + ":{intake}:docs")


def _problem(status: int, body) -> None:
    assert isinstance(body, dict), body
    assert body["status"] == status and body["title"]


@pytest.mark.parametrize(
    ("body", "ctype", "status", "says"),
    [
        (b'{"info": [', "application/json", 400, "line 1, column"),
        (b"[1, 2]", "application/json", 422, "JSON object"),
        (b"<alert", "application/cap+xml", 400, "not well-formed"),
        (BOMB, "application/cap+xml", 400, "DTD"),
        ((SHARED_CAP / "samples" / "xee.xml").read_bytes(), "application/xml", 400, "DTD"),
        ((SHARED_CAP / "samples" / "invalid.xml").read_bytes(), "application/cap+xml", 422, "scope"),
        ((SHARED_CAP / "samples" / "noaa_errors.xml").read_bytes(), "application/cap+xml", 422, "urgency"),
        ((SHARED_CAP / "samples" / "canada_errors.xml").read_bytes(), "application/cap+xml", 422, "references"),
        (b"event=flood", "application/x-www-form-urlencoded", 415, "application/json"),
    ],
)
async def test_bad_bodies_are_refused_and_nothing_is_stored(harness, body, ctype, status, says):
    code, problem = await harness.request("POST", "/v1/alerts", data=body, headers={"Content-Type": ctype})
    assert code == status, problem
    _problem(status, problem)
    assert says in problem["detail"]
    assert await _stored(harness) == 0


async def test_validation_errors_carry_field_paths(harness):
    alert = alert_json()
    alert["info"]["severity"] = "Huge"
    del alert["info"]["event"]
    code, problem = await harness.post_alert(alert)
    assert code == 422
    paths = {e["path"] for e in problem["errors"]}
    assert {"info.0.severity", "info.0.event"} <= paths
    assert await _stored(harness) == 0


async def test_cancel_without_references_is_refused(harness):
    code, problem = await harness.post_alert(alert_json(msgType="Cancel"))
    assert code == 422 and "references" in problem["detail"]


async def test_oversized_body_is_413(harness):
    alert = alert_json()
    alert["info"]["description"] = "x" * (harness.settings.max_body_bytes + 10)
    code, problem = await harness.post_alert(alert)
    assert code == 413
    _problem(413, problem)
    assert await _stored(harness) == 0


@pytest.mark.parametrize(("role", "status"), [(None, 401), ("viewer", 403)])
async def test_keys_and_roles(harness, role, status):
    code, problem = await harness.post_alert(alert_json(), role=role)
    assert code == status
    _problem(status, problem)
    assert await _stored(harness) == 0


async def test_unknown_key_is_401(harness):
    code, _ = await harness.request("GET", "/v1/alerts", role=None, headers={"Authorization": "Bearer nope"})
    assert code == 401


@pytest.mark.parametrize("role", ["admin", "officer", "feed"])
async def test_sending_roles_may_post(harness, role):
    code, body = await harness.post_alert(alert_json(), role=role)
    assert code == 202, body


async def test_viewer_may_read(harness):
    code, body = await harness.request("GET", "/v1/alerts", role="viewer")
    assert code == 200 and body == {"items": [], "next": None}


async def test_unknown_alert_is_404_problem(harness):
    code, body = await harness.request("GET", "/v1/alerts/0000000000000000")
    assert code == 404
    _problem(404, body)


@pytest.mark.parametrize("name", ["australia.xml", "canada.xml", "wcatwc-warning.xml", "weather.xml"])
async def test_valid_cap_samples_are_accepted(harness, name):
    body = (SHARED_CAP / "samples" / name).read_bytes()
    code, accepted = await harness.request("POST", "/v1/alerts", data=body,
                                           headers={"Content-Type": "application/cap+xml"}, role="feed")
    assert code == 202, accepted
    assert "reaches nobody" in accepted["recipients_hint"]
    code, again = await harness.request("POST", "/v1/alerts", data=body,
                                        headers={"Content-Type": "application/cap+xml"}, role="feed")
    assert (code, again["id"]) == (200, accepted["id"])
    assert await _stored(harness) == 1
