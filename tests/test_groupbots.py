"""Chat-group robots (WeCom, DingTalk, Feishu) against local doubles that check what the real
services check: a correct send, a rate-limit answer then success, a permanent error (a wrong
signature), each ending in the right receipt state; and a group's own per-minute limit."""

from __future__ import annotations

import pytest

from channels.provider_codes import error_of
from channels.templates import fit_bytes
from config import ChannelLimits, Settings
from contacts import Group, Person, Region, Registry
from tests.conftest import Harness, alert_json
from tests.doubles import served
from tests.doubles.groupbots import GroupBotDouble, Robot

C1, C2 = "420116001001", "420116001002"
REGIONS = [Region(code="420116000000", name="黄陂区", level="district", children=[
    Region(code="420116001000", name="六指街道", level="street", children=[
        Region(code=C1, name="什仔铺社区", level="community"),
        Region(code=C2, name="六指店社区", level="community")])])]
OFFICERS = [
    Person(id="o1", name="张杰", role="info_officer", region=C1, phone="+8613800000002"),
    Person(id="o2", name="刘秀英", role="info_officer", region=C1, phone="+8613800000003"),
    Person(id="o3", name="陈敏", role="safety_officer", region=C1, phone="+8613800000004"),
]


@pytest.fixture
async def double():
    bots = GroupBotDouble()
    async with served(bots.app()) as url:
        bots.url = url
        yield bots


def _group(double: GroupBotDouble, gid: str, region: str, channel: str, token: str, secret: str | None = None) -> Group:
    webhook = {"wecom": f"{double.url}/cgi-bin/webhook/send?key={token}",
               "dingtalk": f"{double.url}/robot/send?access_token={token}",
               "feishu": f"{double.url}/open-apis/bot/v2/hook/{token}"}[channel]
    return Group(id=gid, name=gid, region=region, channel=channel, webhook=webhook, secret=secret)


def _harness(settings: Settings, redis, registry: Registry, **limits: ChannelLimits) -> Harness:
    return Harness(settings.model_copy(update={"channels": limits}), redis, registry)


async def test_each_robot_gets_its_own_format_and_each_answer_its_receipt_state(settings, redis, double):
    double.wecom = {"K1": Robot(), "K2": Robot(failures=[(200, 45009, "api freq out of limit")])}
    double.dingtalk = {"T1": Robot(secret="SEC-ding"), "T2": Robot(secret="the-real-one")}
    double.feishu = {"F1": Robot(secret="SEC-fs"), "F2": Robot(secret="the-real-one")}
    groups = [
        _group(double, "g-wecom", C1, "wecom", "K1"),
        _group(double, "g-ding", C1, "dingtalk", "T1", "SEC-ding"),
        _group(double, "g-feishu", C1, "feishu", "F1", "SEC-fs"),
        _group(double, "g-wecom-busy", C2, "wecom", "K2"),
        _group(double, "g-ding-wrong", C2, "dingtalk", "T2", "not-the-secret"),
        _group(double, "g-feishu-wrong", C2, "feishu", "F2", "not-the-secret"),
    ]
    wait_a_little = ChannelLimits(concurrency=4, throttled_wait_s=0.2)
    async with _harness(settings, redis, Registry(REGIONS, OFFICERS, groups), wecom=wait_a_little) as h:
        h.start_worker()
        status, accepted = await h.post_alert(alert_json(["420116001000"], severity="Extreme"))
        assert status == 202
        await h.until_state(accepted["id"], "settled")
        receipts = await h.receipts(accepted["id"], by="recipient")

    for gid in ("g-wecom", "g-ding", "g-feishu", "g-wecom-busy"):
        assert receipts[gid]["state"] == "sent", receipts[gid]
        assert "no per-person delivery report" in receipts[gid]["history"][-1]["note"]
    assert receipts["g-wecom"]["address"] == "g-wecom", "the webhook, a secret, stays in the registry"
    busy = receipts["g-wecom-busy"]
    assert busy["attempts"] == 1 and busy["error"].startswith("45009"), "waiting is not an attempt"
    assert receipts["g-ding-wrong"]["state"] == "failed" and receipts["g-ding-wrong"]["error"].startswith("310000")
    assert receipts["g-feishu-wrong"]["state"] == "failed" and receipts["g-feishu-wrong"]["error"].startswith("19021")
    assert sorted(double.refused) == [("dingtalk", 310000), ("feishu", 19021), ("wecom", 45009)]

    wecom = double.wecom["K1"].received[0]["text"]
    assert wecom["mentioned_mobile_list"] == ["+8613800000002", "+8613800000003"]  # the community's officers
    assert "【特别严重】暴雨预警" in wecom["content"] and "/a/" in wecom["content"]
    ding = double.dingtalk["T1"].received[0]
    assert ding["at"]["atMobiles"] == ["+8613800000002", "+8613800000003"]
    assert ding["markdown"]["title"] == "【特别严重】暴雨预警"
    assert "@+8613800000002" in ding["markdown"]["text"] and "](http" in ding["markdown"]["text"]
    card = double.feishu["F1"].received[0]["card"]
    assert card["header"]["template"] == "red"
    button = card["elements"][-1]["actions"][0]
    assert "/a/" in button["url"] and button["text"]["content"] == "收到 / Acknowledge"


async def test_a_busy_group_waits_its_turn_most_urgent_first_without_holding_up_another(settings, redis, double):
    double.wecom = {"KA": Robot(), "KB": Robot()}
    groups = [_group(double, "g-a", C1, "wecom", "KA"), _group(double, "g-b", C2, "wecom", "KB")]
    # One message per second per group, and a single attempt: waiting for room is not an attempt.
    one_a_second = ChannelLimits(concurrency=8, per_address=1, per_address_window_s=1.0, max_attempts=1)
    async with _harness(settings, redis, Registry(REGIONS, [], groups), wecom=one_a_second) as h:
        h.start_worker()
        ids = []
        for i in range(3):
            _, accepted = await h.post_alert(alert_json([C1], severity="Minor", urgency="Future",
                                                        identifier=f"minor-{i}"))
            ids.append(accepted["id"])
            if i == 0:
                await h.until_state(accepted["id"], "settled")  # the first takes the group's one slot
        _, extreme = await h.post_alert(alert_json([C1], severity="Extreme", identifier="extreme"))
        _, other = await h.post_alert(alert_json([C2], severity="Minor", urgency="Future", identifier="other"))
        for alert_id in (*ids, extreme["id"], other["id"]):
            await h.until_state(alert_id, "settled", timeout_s=30)
        states = [(await h.receipts(a, by="recipient"))[g]["state"] for a, g in
                  [*((a, "g-a") for a in ids), (extreme["id"], "g-a"), (other["id"], "g-b")]]

    assert states == ["sent"] * 5, "nothing waiting for room is dropped"
    a, b = double.wecom["KA"], double.wecom["KB"]
    assert len(a.received) == 4 and len(b.received) == 1
    assert "【特别严重】" in a.received[1]["text"]["content"], "the Extreme goes before the Minor ones waiting"
    assert all(later - earlier >= 0.95 for earlier, later in zip(a.at, a.at[1:])), "one a second"
    assert b.at[0] < a.at[1], "the other group is not held up by the busy one"


async def test_a_long_warning_is_cut_before_its_ack_link(settings, redis, double):
    double.wecom = {"K1": Robot()}
    async with _harness(settings, redis, Registry(REGIONS, [], [_group(double, "g", C1, "wecom", "K1")])) as h:
        h.start_worker()
        alert = alert_json([C1], severity="Severe")
        alert["info"]["description"] = "强降雨" * 400  # 3,600 bytes of UTF-8
        _, accepted = await h.post_alert(alert)
        await h.until_state(accepted["id"], "settled")
        assert (await h.receipts(accepted["id"], by="recipient"))["g"]["state"] == "sent"
    content = double.wecom["K1"].received[0]["text"]["content"]
    assert len(content.encode()) <= 2048
    assert "…" in content and content.rsplit("：", 1)[1].startswith("http") and "/a/" in content


def test_fit_bytes_cuts_at_a_character_boundary():
    assert fit_bytes("abc", "-x", 10) == "abc-x"
    cut = fit_bytes("预警" * 10, " link", 20)
    assert len(cut.encode()) <= 20 and cut.endswith("… link") and cut.startswith("预警")


async def test_a_bad_webhook_or_key_is_refused(settings, redis, double):
    with pytest.raises(ValueError, match="webhook"):
        Group(id="g", name="g", region=C1, channel="wecom", webhook="ftp://example.org/hook")
    with pytest.raises(ValueError, match="group p1: the id is taken"):
        Registry(REGIONS, [Person(id="p1", name="x", role="info_officer", region=C1)],
                 [_group(double, "p1", C1, "wecom", "K")])
    registry = Registry(REGIONS, [], [_group(double, "g", C1, "wecom", "unknown-key")])
    async with _harness(settings, redis, registry) as h:
        h.start_worker()
        _, accepted = await h.post_alert(alert_json([C1]))
        await h.until_state(accepted["id"], "settled")
        receipt = (await h.receipts(accepted["id"], by="recipient"))["g"]
    assert receipt["state"] == "failed" and receipt["error"].startswith("93000")


@pytest.mark.parametrize("provider, status, code, message, expected", [
    ("wecom", 200, 45009, "api freq out of limit", "throttled"),
    ("wecom", 200, 93000, "invalid webhook url", "permanent"),
    ("dingtalk", 200, 410100, "发送速度太快而限流", "throttled"),
    ("dingtalk", 200, 499999, "send too fast, please wait", "throttled"),  # undocumented: by its message
    ("feishu", 200, 11232, "frequency limited psm[lark.oapi.app_platform_runtime]", "throttled"),
    ("feishu", 200, 19021, "sign match fail", "permanent"),
    ("feishu", 429, None, "", "throttled"),
    ("wecom", 502, None, "", "retry"),
    ("dingtalk", 200, 123456, "something new", "retry"),  # unknown: tried again, a few times
])
def test_the_code_table(provider, status, code, message, expected):
    error = error_of(provider, status, code, message)
    kind = "throttled" if error.throttled else "retry" if error.recoverable else "permanent"
    assert kind == expected


async def test_a_group_added_while_running_is_reached_by_the_next_alert(settings, redis, double):
    double.wecom = {"K9": Robot()}
    async with _harness(settings, redis, Registry(REGIONS, OFFICERS)) as h:
        h.start_worker()
        group = {"id": "g-new", "name": "新建群", "region": C1, "channel": "wecom",
                 "webhook": f"{double.url}/cgi-bin/webhook/send?key=K9"}
        status, _ = await h.request("POST", "/v1/groups", json=group)
        assert status == 201
        _, accepted = await h.post_alert(alert_json([C1]))
        await h.until_state(accepted["id"], "settled")
        assert (await h.receipts(accepted["id"], by="recipient"))["g-new"]["state"] == "sent"
    assert len(double.wecom["K9"].received) == 1
