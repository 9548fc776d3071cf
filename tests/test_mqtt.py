"""Loudspeaker gateways over MQTT, against a real Mosquitto (a broker of the tests' own) and the
gateway simulator: signed commands, the gateways' acknowledgements, presence, and a broker
restart in the middle of a fan-out."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from channels.base import Delivery, Message
from channels.gateway_contract import ack_topic, cmd_topic, command_for, encode, status_topic
from channels.mqtt import client_settings
from config import ChannelLimits, Settings
from contacts import Device, Region, Registry
from dispatcher.embedded import EmbeddedAmqtt, EmbeddedMosquitto, embedded_broker, mosquitto_binary
from dispatcher.gateway_sim import Gateway, run_gateways
from tests.conftest import Harness, alert_json, eventually

C1, C2 = "420116001001", "420116001002"
REGIONS = [Region(code="420116000000", name="黄陂区", level="district", children=[
    Region(code="420116001000", name="六指街道", level="street", children=[
        Region(code=C1, name="什仔铺社区", level="community"),
        Region(code=C2, name="六指店社区", level="community")])])]


@pytest.fixture(scope="session")
def broker_url(tmp_path_factory: pytest.TempPathFactory):
    """A broker of the tests' own, as ``shaozi serve`` embeds one: Mosquitto, else amqtt."""
    broker = embedded_broker(tmp_path_factory.mktemp("mqtt"))
    yield broker.start()
    broker.stop()


def _registry(prefix: str, count: int = 3, region: str = C1) -> Registry:
    # Device ids carry the test's prefix: gateway client ids and topics are the test's own.
    devices = [Device(id=f"{prefix}-d{i}", name=f"大喇叭{i}", region=region, key=f"key-{i}") for i in range(count)]
    return Registry(REGIONS, [], devices=devices)


def _settings(settings: Settings, url: str, **limits) -> Settings:
    return settings.model_copy(update={
        "mqtt_url": url, "mqtt_prefix": settings.redis_prefix, "mqtt_ack_timeout_s": 1.0,
        "worker_name": settings.redis_prefix,  # its MQTT session is the test's own
        "mqtt_offline_recheck_s": 0.2, "channels": {"mqtt": ChannelLimits(concurrency=64, max_attempts=3, **limits)},
    })


def _gateways(registry: Registry, url: str, prefix: str, **kw) -> list[Gateway]:
    return [Gateway(d.id, d.key.get_secret_value(), url, prefix, play_s=0.05, **kw) for d in registry.devices]


@contextlib.asynccontextmanager
async def running(gateways: list[Gateway], *, forget: bool = True) -> AsyncIterator[asyncio.Event]:
    """The gateways online while the block runs; ``forget`` clears their retained statuses after."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(g.run(stop)) for g in gateways]
    try:
        await asyncio.wait_for(asyncio.gather(*(g.connected.wait() for g in gateways)), 15)
        yield stop
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        if forget:
            await _forget(gateways)


async def _forget(gateways: list[Gateway]) -> None:
    """Clear the retained statuses the gateways left, so the broker keeps nothing of the test's."""
    if not gateways:
        return
    async with aiomqtt.Client(**client_settings(gateways[0].url, gateways[0].ca_file)) as client:
        for g in gateways:
            await client.publish(status_topic(g.prefix, g.device_id), b"", qos=1, retain=True)


async def _until_ended(h: Harness, alert_id: str, count: int, timeout_s: float = 30) -> dict[str, dict]:
    async def ended():
        receipts = await h.receipts(alert_id, by="recipient")
        done = [r for r in receipts.values() if r["state"] not in ("queued", "sending", "delivered")]
        return receipts if len(done) == count else None

    return await eventually(ended, timeout_s)


async def test_a_region_alert_is_played_once_by_every_gateway_of_the_region(settings, redis, broker_url):
    registry = Registry(REGIONS, [], devices=[*_registry(settings.redis_prefix).devices,
                                      Device(id=f"{settings.redis_prefix}-elsewhere", name="x", region=C2, key="k")])
    gateways = _gateways(Registry(REGIONS, [], devices=registry.devices_in([C1])), broker_url, settings.redis_prefix)
    async with running(gateways), Harness(_settings(settings, broker_url), redis, registry) as h:
        h.start_worker()
        _, accepted = await h.post_alert(alert_json([C1], severity="Extreme"))
        receipts = await _until_ended(h, accepted["id"], 3)
        gateway_states = await h.redis.hgetall(f"{settings.redis_prefix}:gateways")

    assert sorted(receipts) == sorted(g.device_id for g in gateways), "only the region's gateways"
    for g in gateways:
        r = receipts[g.device_id]
        assert r["state"] == "acknowledged" and r["attempts"] == 1
        assert [s["state"] for s in r["history"]] == ["queued", "sending", "delivered", "acknowledged"]
        assert r["history"][-1]["note"] == f"played by gateway {g.device_id}"
        assert g.played == [r["id"]] and not g.refused
    assert {k.decode(): v.decode().split("\t")[0] for k, v in gateway_states.items()} == \
        {g.device_id: "online" for g in gateways}


async def test_forged_expired_and_replayed_commands_are_refused(settings, broker_url):
    prefix = settings.redis_prefix
    gateway = Gateway(f"{prefix}-g", "the-key", broker_url, prefix, play_s=0.01)
    message = Message(alert_id="a1", event="暴雨", severity="Extreme", urgency="Immediate", headline="暴雨预警",
                      text="测试", instruction="", area="什仔铺", expires_at=time.time() + 600)

    def command(rid: str, key: str = "the-key", **changes) -> bytes:
        cmd = command_for(Delivery(rid, "mqtt", gateway.device_id, gateway.device_id, "g", message), key)
        if changes:  # altered after signing
            cmd.update(changes)
        return encode(cmd)

    acks = []
    async with running([gateway]), aiomqtt.Client(**client_settings(broker_url)) as client:
        await client.subscribe(ack_topic(prefix, gateway.device_id), qos=1)
        valid = command("a1.0")
        for payload in (command("a1.1", key="a-guessed-key"), command("a1.2", expires_at=time.time() - 1),
                        command("a1.3", text="改过的内容"), valid, valid):
            await client.publish(cmd_topic(prefix, gateway.device_id), payload, qos=1)
        async for m in client.messages:
            acks.append(json.loads(m.payload))
            if len(acks) == 6:
                break
    seen = sorted((a["delivery_id"], a["state"], a.get("reason") or "") for a in acks)
    assert seen == [("a1.0", "failed", "replayed"), ("a1.0", "played", ""), ("a1.0", "received", ""),
                    ("a1.1", "failed", "bad-signature"), ("a1.2", "failed", "bad-signature"),
                    ("a1.3", "failed", "bad-signature")]
    assert gateway.played == ["a1.0"]


async def test_an_expired_command_is_refused_as_expired(settings, broker_url):
    prefix = settings.redis_prefix
    gateway = Gateway(f"{prefix}-g", "the-key", broker_url, prefix, play_s=0.01)
    message = Message(alert_id="a1", event="暴雨", severity="Extreme", urgency="Immediate", headline="h",
                      text="t", instruction="", area="", expires_at=time.time() - 5)
    cmd = encode(command_for(Delivery("a1.0", "mqtt", gateway.device_id, "", "", message), "the-key"))
    async with running([gateway]), aiomqtt.Client(**client_settings(broker_url)) as client:
        await client.subscribe(ack_topic(prefix, gateway.device_id), qos=1)
        await client.publish(cmd_topic(prefix, gateway.device_id), cmd, qos=1)
        async for m in client.messages:
            assert json.loads(m.payload)["reason"] == "expired"
            break
    assert gateway.refused == [("a1.0", "expired")]


async def test_an_offline_gateway_gets_the_command_when_it_comes_back(settings, redis, broker_url):
    registry = _registry(settings.redis_prefix, 2)
    early, late = _gateways(registry, broker_url, settings.redis_prefix)
    async with running([early]), Harness(_settings(settings, broker_url), redis, registry) as h:
        async with running([late], forget=False):
            pass  # it was there once: its retained status now says offline
        h.start_worker()
        _, accepted = await h.post_alert(alert_json([C1], severity="Severe"))

        async def waiting():
            r = await h.receipts(accepted["id"], by="recipient")
            return r if r.get(early.device_id, {}).get("state") == "acknowledged" \
                and (r[late.device_id]["error"] or "").startswith("offline") else None

        receipts = await eventually(waiting)
        assert receipts[late.device_id]["state"] == "sending"
        # Longer than three attempts' ack timeouts: waiting for a gateway uses up no attempts.
        await asyncio.sleep(3.5)
        assert (await h.receipts(accepted["id"], by="recipient"))[late.device_id]["state"] == "sending"
        async with running([late]):
            receipts = await _until_ended(h, accepted["id"], 2)
    assert receipts[late.device_id]["state"] == "acknowledged"
    assert late.played == [receipts[late.device_id]["id"]]


async def test_no_ack_is_retried_then_failed_and_bad_acks_break_nothing(settings, redis, broker_url):
    registry = _registry(settings.redis_prefix, 2)
    mute, fine = _gateways(registry, broker_url, settings.redis_prefix)
    mute.drop_acks = 1.0  # plays, but its acknowledgements never arrive
    async with running([mute, fine]), Harness(_settings(settings, broker_url), redis, registry) as h:
        h.start_worker()
        async with aiomqtt.Client(**client_settings(broker_url)) as client:  # garbage first
            for payload in (b"not json", b'{"delivery_id": "nope", "state": "played"}',
                            json.dumps({"delivery_id": "06h000000000000.0", "state": "played"}).encode()):
                await client.publish(ack_topic(settings.redis_prefix, fine.device_id), payload, qos=1)
        _, accepted = await h.post_alert(alert_json([C1], severity="Severe"))
        receipts = await _until_ended(h, accepted["id"], 2)
    assert receipts[fine.device_id]["state"] == "acknowledged"
    silent = receipts[mute.device_id]
    assert silent["state"] == "failed" and silent["error"].startswith("no-ack") and silent["attempts"] == 3
    assert mute.played == [silent["id"]], "a command sent again is not played again"


async def test_a_broker_restart_mid_fan_out_loses_nothing(settings, redis, tmp_path):
    if not mosquitto_binary():
        pytest.skip("needs Mosquitto, which keeps queued messages across a restart")
    broker = EmbeddedMosquitto(tmp_path / "mqtt")
    url = broker.start()
    registry = _registry(settings.redis_prefix, 40)
    gateways = _gateways(registry, url, settings.redis_prefix)
    for i, g in enumerate(gateways):
        g.play_s = 0.2 + i * 0.05  # the fan-out spans the outage: some play before it, some after
    try:
        async with running(gateways), Harness(_settings(settings, url), redis, registry) as h:
            h.start_worker()
            _, accepted = await h.post_alert(alert_json([C1], severity="Extreme"))

            async def some_played():
                receipts = await h.receipts(accepted["id"])
                return [r["state"] for r in receipts].count("acknowledged") >= 5

            await eventually(some_played)
            await asyncio.to_thread(broker.stop)  # mid-fan-out
            states = [r["state"] for r in await h.receipts(accepted["id"])]
            await asyncio.sleep(1.0)
            await asyncio.to_thread(broker.start)  # same port, same persistence
            receipts = await _until_ended(h, accepted["id"], 40, timeout_s=60)
    finally:
        broker.stop()
    assert states.count("acknowledged") < len(gateways), "the broker went away in the middle"
    assert {r["state"] for r in receipts.values()} == {"acknowledged"}, "no receipt lost"
    for g in gateways:
        assert g.played == [receipts[g.device_id]["id"]], "each played once"


async def test_a_cancel_reaches_the_gateways_as_a_cancel_command(settings, redis, broker_url):
    registry = _registry(settings.redis_prefix, 2)
    gateways = _gateways(registry, broker_url, settings.redis_prefix)
    async with running(gateways), Harness(_settings(settings, broker_url), redis, registry) as h:
        h.start_worker()
        _, first = await h.post_alert(alert_json([C1], severity="Extreme", identifier="flood-1", sender="eoc"))
        await _until_ended(h, first["id"], 2)
        cancel = {**alert_json([], severity="Extreme"), "msgType": "Cancel", "sender": "eoc",
                  "references": "eoc,flood-1,2026-07-01T08:00:00+08:00"}
        del cancel["info"]
        status, lifted = await h.post_alert(cancel)
        assert status == 202, lifted
        receipts = await _until_ended(h, lifted["id"], 2)
    assert {r["state"] for r in receipts.values()} == {"acknowledged"}
    for g in gateways:
        assert [c["type"] for c in g.accepted] == ["alert", "cancel"]
        assert g.accepted[1]["text"].startswith("【解除】")


async def test_the_simulator_goes_offline_and_back_for_a_drill(settings, broker_url):
    prefix = settings.redis_prefix
    gateway = Gateway(f"{prefix}-drill", "k", broker_url, prefix)
    stop = asyncio.Event()
    seen = []
    async with aiomqtt.Client(**client_settings(broker_url)) as client:
        await client.subscribe(status_topic(prefix, gateway.device_id), qos=1)
        sim = asyncio.create_task(run_gateways([gateway], stop, offline_after=0.3, offline_for=0.3))
        async for m in client.messages:
            seen.append(m.payload.decode())
            if len(seen) == 3:
                break
        stop.set()
        await sim
    await _forget([gateway])
    assert seen == ["online", "offline", "online"]


def _tls_files(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """A CA, a certificate for 127.0.0.1 signed by it, and a password file (user shaozi)."""
    def run(*args: str) -> None:
        subprocess.run(args, cwd=tmp_path, check=True, capture_output=True)

    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "1", "-subj", "/CN=shaozi-test-ca")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")
    (tmp_path / "san").write_text("subjectAltName=IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "1", "-extfile", "san")
    run("mosquitto_passwd", "-c", "-b", "passwd", "shaozi", "s3cret")
    return tmp_path / "ca.crt", tmp_path / "server.crt", tmp_path / "server.key", tmp_path / "passwd"


async def test_tls_and_a_password_protect_the_broker(settings, redis, tmp_path):
    if not all(shutil.which(t) for t in ("openssl", "mosquitto_passwd")) or not mosquitto_binary():
        pytest.skip("needs openssl and Mosquitto")
    ca, cert, key, passwd = _tls_files(tmp_path)
    broker = EmbeddedMosquitto(tmp_path / "mqtt", listener="\n".join([
        f"cafile {ca}", f"certfile {cert}", f"keyfile {key}", "allow_anonymous false", f"password_file {passwd}"]))
    port = broker.start().rsplit(":", 1)[1]
    url = f"mqtts://shaozi:s3cret@127.0.0.1:{port}"
    try:
        with pytest.raises(aiomqtt.MqttError):  # a wrong password
            async with aiomqtt.Client(**client_settings(f"mqtts://shaozi:guess@127.0.0.1:{port}", ca)):
                pass
        with pytest.raises(aiomqtt.MqttError):  # a broker whose certificate the system's CAs do not vouch for
            async with aiomqtt.Client(**client_settings(url)):
                pass
        registry = _registry(settings.redis_prefix, 2)
        gateways = _gateways(registry, url, settings.redis_prefix, ca_file=ca)
        tls_settings = _settings(settings, url).model_copy(update={"mqtt_ca_file": ca})
        async with running(gateways), Harness(tls_settings, redis, registry) as h:
            h.start_worker()
            _, accepted = await h.post_alert(alert_json([C1], severity="Extreme"))
            receipts = await _until_ended(h, accepted["id"], 2)
    finally:
        broker.stop()
    assert {r["state"] for r in receipts.values()} == {"acknowledged"}


async def test_the_simulator_speaks_the_warning_into_a_wav_file(tmp_path):
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed")
    gateway = Gateway("gw-speak", "the-key", "mqtt://127.0.0.1:1", "p", play_s=0, speak_dir=tmp_path)
    message = Message(alert_id="a1", event="暴雨", severity="Extreme", urgency="Immediate", headline="暴雨红色预警",
                      text="请立即转移", instruction="", area="什仔铺社区", expires_at=time.time() + 600)
    await gateway.handle(encode(command_for(Delivery("a1.0", "mqtt", "gw-speak", "gw-speak", "", message), "the-key")))
    wav = tmp_path / "gw-speak-a1.0.wav"
    assert gateway.played == ["a1.0"] and wav.read_bytes()[:4] == b"RIFF" and wav.stat().st_size > 10_000
    assert [json.loads(a)["state"] for a in gateway.pending_acks] == ["received", "played"], "kept until connected"


async def test_the_python_broker_carries_a_fan_out_where_mosquitto_is_missing(settings, redis, tmp_path):
    broker = EmbeddedAmqtt(tmp_path / "amqtt")
    url = broker.start()
    registry = _registry(settings.redis_prefix, 3)
    gateways = _gateways(registry, url, settings.redis_prefix)
    try:
        async with running(gateways), Harness(_settings(settings, url), redis, registry) as h:
            h.start_worker()
            _, accepted = await h.post_alert(alert_json([C1], severity="Extreme"))
            receipts = await _until_ended(h, accepted["id"], 3)
    finally:
        broker.stop()
    assert {r["state"] for r in receipts.values()} == {"acknowledged"}
    assert all(len(g.played) == 1 for g in gateways)
