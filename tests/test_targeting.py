"""Targeting: regions and their subtree, CAP polygons and circles (points on both sides of the
edge), roles and hazards; through the real planner for a polygon-only alert."""

from __future__ import annotations

import pytest

from contacts import Device, Group, Person, Region, Registry
from contacts.targeting import Target, parse_circle, parse_polygon
from tests.conftest import Harness, alert_json

STREET, C1, C2 = "420116001000", "420116001001", "420116001002"
REGIONS = [Region(code="420116000000", name="黄陂区", level="district", children=[
    Region(code=STREET, name="六指街道", level="street", children=[
        Region(code=C1, name="什仔铺社区", level="community"),
        Region(code=C2, name="六指店社区", level="community")])])]
# A square of 0.1° from 30.0N 114.0E; "lat,lon" pairs as CAP writes them.
SQUARE = "30.0,114.0 30.0,114.1 30.1,114.1 30.1,114.0 30.0,114.0"


def _person(pid: str, lat: float | None = None, lon: float | None = None, region: str = C2, **kw) -> Person:
    return Person(id=pid, name=pid, role=kw.pop("role", "info_officer"), region=region,
                  phone=f"+86138000{abs(hash(pid)) % 100000:05d}", lat=lat, lon=lon, **kw)


@pytest.fixture
def registry() -> Registry:
    people = [
        _person("inside", 30.05, 114.0999),
        _person("outside", 30.05, 114.1001),  # 0.0002° the other side of the east edge
        _person("on-edge", 30.05, 114.1),
        _person("on-corner", 30.1, 114.1),
        _person("nowhere"),  # no location: only regions reach them
        _person("c1-officer", region=C1),
        _person("c1-leader", region=C1, role="leader"),
        _person("floods-only", 30.02, 114.02, hazards=["flood"]),
        _person("fires-only", 30.02, 114.03, hazards=["Fire"]),
    ]
    devices = [Device(id="gw-in", name="大喇叭", region=C2, lat=30.07, lon=114.05, key="k"),
               Device(id="gw-out", name="大喇叭", region=C2, lat=30.2, lon=114.05, key="k")]
    groups = [Group(id="g-c1", name="群", region=C1, channel="wecom", webhook="http://127.0.0.1:9/hook?key=1")]
    return Registry(REGIONS, people, groups, devices)


def _ids(found) -> set[str]:
    return {r.id for r in found}


def test_a_polygon_reaches_exactly_who_is_inside_the_edge_included(registry):
    target = Target(polygons=(parse_polygon(SQUARE),), hazards=frozenset({"met", "暴雨"}))
    assert _ids(registry.reach(target)) == {"inside", "on-edge", "on-corner", "gw-in"}
    assert registry.reaches_anyone(target)
    far = "10.0,10.0 10.0,10.1 10.1,10.1 10.0,10.0"
    assert not registry.reaches_anyone(Target(polygons=(parse_polygon(far),)))
    assert not registry.reaches_anyone(Target(codes=("420116009000",)))  # not a region of the registry


def test_a_circle_reaches_exactly_who_is_within_its_radius(registry):
    # At 30.05N, 0.0001° of longitude is about 9.6 m: on-edge is 9.6 m east of inside, outside 19.3 m.
    assert _ids(registry.reach(Target(circles=(parse_circle("30.05,114.0999 0.01"),)))) == {"inside", "on-edge"}
    assert "outside" not in _ids(registry.reach(Target(circles=(parse_circle("30.05,114.0999 0.015"),))))
    assert "outside" in _ids(registry.reach(Target(circles=(parse_circle("30.05,114.0999 0.025"),))))


def test_a_region_reaches_exactly_its_subtree_with_roles_and_hazards(registry):
    assert _ids(registry.reach(Target(codes=(C1,)))) == {"c1-officer", "c1-leader", "g-c1"}
    everyone_in_street = _ids(registry.reach(Target(codes=(STREET,))))
    assert everyone_in_street >= {"nowhere", "outside", "c1-officer", "gw-in", "gw-out", "g-c1"}
    leaders = Target(codes=(STREET,), roles=frozenset({"leader"}))
    assert _ids(registry.reach(leaders)) == {"c1-leader"}, "roles named: no groups or loudspeakers"
    flood = Target(codes=(STREET,), hazards=frozenset({"geo", "flood"}))
    assert "floods-only" in _ids(registry.reach(flood)) and "fires-only" not in _ids(registry.reach(flood))
    fire = Target(codes=(STREET,), hazards=frozenset({"fire", "森林火灾"}))
    assert "fires-only" in _ids(registry.reach(fire)) and "floods-only" not in _ids(registry.reach(fire))


async def test_a_polygon_alert_is_planned_for_exactly_those_inside(settings, redis, registry):
    alert = alert_json([])
    alert["info"]["area"] = {"areaDesc": "沿河低洼地带", "polygon": SQUARE}
    async with Harness(settings, redis, registry) as h:
        h.start_worker()
        status, accepted = await h.post_alert(alert)
        assert status == 202 and "recipients_hint" not in accepted
        await h.until_state(accepted["id"], "settled")
        _, receipts = await h.request("GET", f"/v1/alerts/{accepted['id']}/receipts?limit=100")
    # Inside too, but following only floods or fires: a rainstorm (暴雨, Met) is not theirs.
    assert {r["recipient"] for r in receipts["items"]} == {"inside", "on-edge", "on-corner", "gw-in"}
