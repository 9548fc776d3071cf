"""The registry's records over the API: lists with filters and pages, one record, create,
replace, delete; what a viewer may see; every change checked against the registry."""

from __future__ import annotations

from contacts import Device, Group, Registry

C1 = "420116001001"


async def test_lists_filter_and_page(harness):
    status, page = await harness.request("GET", f"/v1/contacts?region={C1}&role=info_officer&limit=1")
    assert status == 200 and len(page["items"]) == 1 and page["next"] == "1" and page["total"] == 2
    assert {p["region"] for p in page["items"]} == {C1} and {p["role"] for p in page["items"]} == {"info_officer"}
    _, rest = await harness.request("GET", f"/v1/contacts?region={C1}&role=info_officer&cursor=1&limit=1")
    assert rest["next"] is None and len(rest["items"]) == 1
    assert not {p["id"] for p in rest["items"]} & {p["id"] for p in page["items"]}
    _, street = await harness.request("GET", "/v1/contacts?region=420116001000")
    assert C1 in {p["region"] for p in street["items"]}, "a region's list includes the regions below it"
    status, problem = await harness.request("GET", "/v1/contacts?region=999999")
    assert status == 400 and "999999" in problem["detail"]


async def test_a_viewer_sees_masked_phones_and_no_secrets(settings, redis, sample_registry):
    from tests.conftest import Harness

    device = Device(id="gw-1", name="大喇叭", region=C1, key="the-key")
    group = Group(id="g-1", name="群", region=C1, channel="dingtalk", webhook="https://x.example/robot?access_token=T",
                  secret="the-secret")
    registry = Registry(sample_registry.regions, sample_registry.records()["people"], [group], [device])
    async with Harness(settings, redis, registry) as h:
        _, admin = await h.request("GET", "/v1/contacts/p002")
        _, viewer = await h.request("GET", "/v1/contacts/p002", role="viewer")
        assert admin["phone"] == "+8613800000002" and viewer["phone"] == "+861****002"
        _, gw_admin = await h.request("GET", "/v1/devices/gw-1")
        _, gw_viewer = await h.request("GET", "/v1/devices/gw-1", role="viewer")
        assert gw_admin["key"] == "the-key" and "key" not in gw_viewer
        _, groups = await h.request("GET", "/v1/groups", role="officer")
        assert groups["items"][0]["name"] == "群" and not {"secret", "webhook"} & set(groups["items"][0])


async def test_create_replace_and_delete_are_checked(harness):
    person = {"id": "n1", "name": "王芳", "role": "info_officer", "region": C1, "phone": "13812345678",
              "channels": ["sms"], "backup": "p004"}
    status, created = await harness.request("POST", "/v1/contacts", json=person)
    assert status == 201 and created["phone"] == "+8613812345678"
    status, _ = await harness.request("POST", "/v1/contacts", json=person)
    assert status == 409
    status, problem = await harness.request("POST", "/v1/contacts", json={**person, "id": "n2", "phone": "1381234"})
    assert status == 422 and problem["errors"][0]["path"] == "phone"
    status, problem = await harness.request("POST", "/v1/contacts", json={**person, "id": "n3", "region": "999999"})
    assert status == 422 and "region '999999' is not a region" in problem["detail"]
    status, _ = await harness.request("POST", "/v1/contacts", json=person, role="officer")
    assert status == 403

    status, replaced = await harness.request("PUT", "/v1/contacts/n1", json={**person, "name": "王芳芳"})
    assert status == 200 and replaced["name"] == "王芳芳"
    status, problem = await harness.request("PUT", "/v1/contacts/n9", json=person)
    assert status == 422 and "is not the id in the path" in problem["detail"]

    status, problem = await harness.request("DELETE", "/v1/contacts/p004")  # n1's backup
    assert status == 409 and "backup p004" in problem["detail"]
    status, _ = await harness.request("DELETE", "/v1/contacts/n1")
    assert status == 204
    status, _ = await harness.request("GET", "/v1/contacts/n1")
    assert status == 404
    status, problem = await harness.request("DELETE", f"/v1/regions/{C1}")  # people live there
    assert status == 409
    _, changes = await harness.request("GET", "/v1/registry/changes")
    assert [c["note"] for c in changes["items"][:3]] == ["delete person n1", "replace person n1", "add person n1"]
