"""Registry imports over the real API into Redis: a bad file gets every problem at once with
its file and line and writes nothing; a good one is picked up by the next alert; 100,000
people go in one file; regions can be renamed and moved without losing anyone."""

from __future__ import annotations

import time

from contacts import Registry
from contacts.imports import to_csv
from contacts.synthetic import synthetic
from tests.conftest import Harness, alert_json

BROKEN = """姓名,编号,角色,区划代码,手机,渠道,AB角
王芳,n1,信息员,420116001001,13812345678,短信;语音,p004
李四,n2,村长,420116001001,1381234,短信,
王五,n3,信息员,999999,13812345679,,
王芳,n1,信息员,420116001001,13812345678,,
赵六,n4,信息员,420116001002,13812345670,短信,nobody
"""


async def _import(h: Harness, body: bytes, media: str = "text/csv", role: str = "admin", **params) -> tuple[int, dict]:
    return await h.request("POST", "/v1/registry:import", params=params, data=body, role=role,
                           headers={"Content-Type": media})


async def test_a_broken_file_gets_every_problem_with_its_line_and_writes_nothing(harness):
    version = harness.registry.version
    status, problem = await _import(harness, BROKEN.encode("gb18030"), file="六指街道.csv")
    assert status == 422, problem
    assert [(e["line"], e["message"]) for e in problem["errors"]] == [
        (3, "role '村长': Input should be 'info_officer', 'safety_officer', 'duty_officer', 'leader' or 'staff'"),
        (3, "phone '1381234' is not a valid number"),
        (4, "region '999999' is not a region of the registry"),
        (5, "person n1 appears twice (first on line 2)"),
        (6, "backup 'nobody' is not another person of the registry"),
    ]
    assert {e["file"] for e in problem["errors"]} == {"六指街道.csv"}
    assert harness.registry.store is not None and await harness.registry.store.version() == version
    status, _ = await _import(harness, BROKEN.encode(), role="officer")
    assert status == 403, "only an admin changes the registry"


async def test_a_good_file_is_dry_run_then_imported_and_the_next_alert_reaches_them(harness):
    harness.start_worker()  # running before the import: it must see the change at once
    people = "姓名,编号,角色,区划代码,手机,渠道,AB角\n王芳,n1,信息员,420116001001,13812345678,短信;语音,p004\n"
    status, dry = await _import(harness, people.encode(), dry_run=1)
    assert status == 200 and dry["dry_run"] and dry["changes"]["people"]["added"] == 1
    _, regions = await harness.request("GET", "/v1/registry:export?kind=people")
    assert "n1" not in regions, "a dry run writes nothing"

    status, done = await _import(harness, people.encode(), file="people.csv")
    assert status == 200 and done["changes"]["people"] == {"added": 1, "changed": 0, "removed": 0, "unchanged": 44}
    status, again = await _import(harness, people.encode())
    assert again["changes"]["people"]["unchanged"] == 45 and again["changes"]["people"]["added"] == 0

    _, accepted = await harness.post_alert(alert_json(["420116001001"]))
    await harness.until_state(accepted["id"], "settled")
    sent = [m for m in harness.outbox() if m["alert"] == accepted["id"]]
    assert "+8613812345678" in {m["to"] for m in sent}, "the imported officer is reached, at the E.164 number"
    _, changes = await harness.request("GET", "/v1/registry/changes")
    assert changes["items"][0]["by"] == "admin" and changes["items"][0]["note"] == "import people.csv"


async def test_the_yaml_export_imports_back_unchanged(harness):
    status, text = await harness.request("GET", "/v1/registry:export")
    assert status == 200 and text.startswith("regions:")
    status, result = await _import(harness, text.encode(), media="application/yaml", replace=1)
    assert status == 200, result
    assert all(c["added"] == c["changed"] == c["removed"] == 0 for c in result["changes"].values())


async def test_a_hundred_thousand_people_in_one_file(settings, redis):
    regions, people, _ = synthetic(100_000)
    async with Harness(settings, redis, Registry(regions, [])) as h:
        body = to_csv(people, "people").encode()
        broken = body.replace(b"+8613900099998", b"12345")  # one bad number, near the end
        status, problem = await _import(h, broken)
        assert status == 422 and [e["line"] for e in problem["errors"]] == [100_000]
        assert (await h.registry.refresh(now=True)).size == 0, "nothing written"

        started = time.perf_counter()
        status, result = await _import(h, body, file="district.csv")
        took = time.perf_counter() - started
        assert status == 200 and result["changes"]["people"]["added"] == 100_000
        assert (await h.registry.refresh(now=True)).size == 100_000
        print(f"100,000-person CSV imported in {took:.1f} s")


async def test_renamed_and_moved_regions_keep_everyone_reachable(harness):
    # 什仔铺社区 is renamed, moves from 六指街道 to 长轩岭街道, and gets its boundary drawn.
    boundary = "30.80,114.30 30.80,114.40 30.90,114.40 30.90,114.30 30.80,114.30"
    regions = f'code,name,level,parent,boundary\n420116001001,什仔铺新区,community,420116002000,"{boundary}"\n'
    status, result = await _import(harness, regions.encode())
    assert status == 200 and result["changes"]["regions"]["changed"] == 1
    harness.start_worker()
    _, accepted = await harness.post_alert(alert_json(["420116002000"]))  # the street it moved to
    await harness.until_state(accepted["id"], "settled")
    status, receipts = await harness.request("GET", f"/v1/alerts/{accepted['id']}/receipts?limit=1000")
    reached = {r["recipient"] for r in receipts["items"]}
    community = {p.id for p in harness.seed.people_in(["420116001001"])}
    assert community and community <= reached
    _, tree = await harness.request("GET", "/v1/regions")
    street = next(c for c in tree["items"][0]["children"] if c["code"] == "420116002000")
    assert "什仔铺新区" in [c["name"] for c in street["children"]]
    _, region = await harness.request("GET", "/v1/regions/420116001001")
    assert region["parent"] == "420116002000" and region["boundary"] == boundary


async def test_a_yaml_bomb_is_refused_at_once(harness):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(20))
    status, problem = await _import(harness, bomb.encode(), media="application/yaml")
    assert status == 422 and problem["errors"][0]["line"] == 2
    assert "aliases" in problem["errors"][0]["message"]
