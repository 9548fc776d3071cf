"""The HTTP API (aiohttp): intake, reading alerts and receipts, health, metrics, OpenAPI."""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest
from pydantic import BaseModel
from redis.asyncio import Redis

from config import ROLES, Settings
from contacts import Registry
from contacts.store import LiveRegistry
from dispatcher import ack_page, metrics
from dispatcher.acklinks import AckLinks
from dispatcher.alerts import AlertStore
from dispatcher.app_state import ACK_LINKS, KEYS, REDIS, REGISTRY, ROLE, SETTINGS, STORE
from dispatcher.cap import to_cap
from dispatcher.codec import dumps
from dispatcher.hooks_telegram import telegram_update
from dispatcher.hooks_twilio import twilio_inbound, twilio_status, twilio_voice
from dispatcher.intake import intake_format, parse_alert
from dispatcher.keys import Keys
from dispatcher.models import (
    PRIORITIES,
    Accepted,
    AckRequest,
    AckResult,
    Alert,
    AlertAcksRequest,
    AlertPage,
    AlertSummary,
    ReceiptPage,
)
from dispatcher.problems import Problem, problem_middleware
from dispatcher.receipts import (
    Change,
    escalation_of,
    parse_receipt_id,
    receipt_id,
    receipt_view,
)
from dispatcher.registry_api import (
    create_record,
    delete_record,
    export_registry,
    get_record,
    import_registry,
    list_records,
    registry_audit,
    registry_changes,
    replace_record,
)
from dispatcher.request_parts import int_param, json_body, validated
from dispatcher.worker import workers_alive

log = structlog.get_logger("shaozi.api")


END_STATES = ("settled", "cancelled", "expired")
READ_ROLES = ROLES
SEND_ROLES = ("admin", "officer", "feed")
ACK_ROLES = ("admin", "officer")

QUEUE_DEPTH = Gauge("shaozi_queue_depth", "Deliveries waiting on a channel's stream", ["channel", "priority"])
INTAKE_DEPTH = Gauge("shaozi_intake_depth", "Accepted alerts waiting to be planned", ["priority"])
ALERTS_STORED = Gauge("shaozi_alerts_stored", "Alerts in the store")
WORKERS_ALIVE = Gauge("shaozi_workers_alive", "Workers with a recent heartbeat")


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    summary: str
    roles: tuple[str, ...] | None = READ_ROLES  # None: open to all
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    media: str = "application/json"
    params: tuple[str, ...] = field(default=())
    body_media: tuple[str, ...] = ("application/json",)
    headers: tuple[str, ...] = ()
    responses: tuple[tuple[str, str], ...] = ()  # further answers: (status, what it means)
    large_body: bool = False  # a file: SHAOZI_MAX_IMPORT_BYTES, not SHAOZI_MAX_BODY_BYTES


def _key_role(settings: Settings, request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Problem(401, "Unauthorized", "send an API key as 'Authorization: Bearer <key>'",
                      headers={"WWW-Authenticate": 'Bearer realm="shaozi"'})
    role = None
    for key, key_role in settings.api_keys.items():
        if hmac.compare_digest(key.encode(), token.encode()):
            role = key_role
    if role is None:
        raise Problem(401, "Unauthorized", "unknown API key", headers={"WWW-Authenticate": 'Bearer realm="shaozi"'})
    return role


def _guard(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def guarded(request: web.Request) -> web.StreamResponse:
        if route.roles is not None:
            role = _key_role(request.app[SETTINGS], request)
            if role not in route.roles:
                raise Problem(403, "Forbidden", f"role {role!r} may not {route.method} {route.path}")
            request[ROLE] = role
        settings = request.app[SETTINGS]
        limit = settings.max_import_bytes if route.large_body else settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise Problem(413, "Request body too large", f"at most {limit} bytes")
        return await route.handler(request)

    return guarded


def _json(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=dumps(data), status=status,
                        content_type="application/json", headers=headers)


async def _summary_or_404(request: web.Request) -> dict:
    summary = await request.app[STORE].summary(request.match_info["id"])
    if summary is None:
        raise Problem(404, "Not Found", f"no alert {request.match_info['id']}")
    return summary


# --- handlers --------------------------------------------------------------------------------


async def post_alert(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    fmt = intake_format(request.content_type)
    body = await request.read()
    if len(body) > settings.max_body_bytes:  # sent without a length
        raise Problem(413, "Request body too large", f"at most {settings.max_body_bytes} bytes")
    try:
        alert = parse_alert(body, fmt, default_sender=f"shaozi-{request[ROLE]}")
    except Problem as problem:
        metrics.ALERTS_REFUSED.labels(str(problem.status)).inc()
        raise
    idem = request.headers.get("Idempotency-Key")
    if idem is not None and not 1 <= len(idem) <= 255:
        raise Problem(400, "Bad Idempotency-Key", "Idempotency-Key must be 1 to 255 characters")
    alert_id, stored = await request.app[STORE].accept(alert, idempotency_key=idem, by=request[ROLE])
    url = f"{settings.base_url()}/v1/alerts/{alert_id}"
    registry = await request.app[REGISTRY].refresh()
    codes = alert.region_codes()
    answer = {"id": alert_id, "url": url, "duplicate": not stored, "priority": alert.priority(),
              "state": "accepted", "unknown_regions": registry.unknown_codes(codes)}
    if not stored:
        answer["state"] = (await request.app[STORE].state(alert_id)).get("state", "accepted")
        return _json(answer, 200, {"Location": url})
    metrics.ALERTS_ACCEPTED.labels(fmt).inc()
    # A Cancel that names no area goes to the area of what it cancels.
    target = alert.target()
    if (target.codes or target.has_shapes or alert.msgType != "Cancel") and not registry.reaches_anyone(target):
        answer["recipients_hint"] = "its area reaches nobody in the registry: nothing will be sent"
    log.info("alert accepted", alert_id=alert_id, format=fmt, priority=alert.priority(), msg_type=alert.msgType)
    return _json(answer, 202, {"Location": url})


async def list_alerts(request: web.Request) -> web.Response:
    limit = int_param(request, "limit", 20, 1, 200)
    cursor = request.query.get("cursor")
    if cursor is not None and not cursor.isdigit():
        raise Problem(400, "Bad query parameter", "cursor must be the 'next' value of an earlier page")
    items, nxt = await request.app[STORE].page(int(cursor) if cursor else None, limit)
    return _json({"items": items, "next": nxt})


async def get_alert(request: web.Request) -> web.Response:
    return _json(await _summary_or_404(request))


async def get_alert_cap(request: web.Request) -> web.Response:
    summary = await _summary_or_404(request)
    xml = to_cap(Alert.model_validate(summary["alert"]))
    return web.Response(body=xml, content_type="application/cap+xml", charset="utf-8")


async def list_receipts(request: web.Request) -> web.Response:
    store = request.app[STORE]
    alert_id = request.match_info["id"]
    await _summary_or_404(request)
    limit = int_param(request, "limit", 100, 1, 1000)
    start = int_param(request, "cursor", 0, 0, 10**9)
    state = request.query.get("state")
    channel = request.query.get("channel")
    region = request.query.get("region")
    regions = None
    if region:
        root = (await request.app[REGISTRY].refresh()).region(region)
        if root is None:
            raise Problem(400, "Bad query parameter", f"region {region} is not in the registry")
        regions = {r.code for r in root.walk()}
    total = await store.receipts.size(alert_id)
    items: list[dict] = []
    n = start
    while n < total and len(items) < limit:
        chunk = min(500, total - n)
        for number, r in await store.receipts.page(alert_id, n, chunk):
            if (state and r["s"] != state) or (channel and r["c"] != channel) or (regions and r["rg"] not in regions):
                continue
            items.append(receipt_view(alert_id, number, r))
            if len(items) == limit:
                chunk = number + 1 - n
                break
        n += chunk
    return _json({"items": items, "next": str(n) if n < total else None})


async def _acknowledge(request: web.Request, alert_id: str, receipts: list[tuple[int, dict]], body) -> dict:
    """Acknowledge receipts on someone's behalf; the history says who did, for whom, how."""
    by = body.by or request[ROLE]
    changes = [Change(n, "acknowledged", {"note": f"acknowledged by {by} for {r['name']} via the API"
                                                  + (f": {body.note}" if body.note else "")})
               for n, r in receipts]
    applied = await request.app[STORE].receipts.apply(alert_id, changes, time.time()) if changes else []
    done = [receipt_id(alert_id, n) for (n, _), ok in zip(receipts, applied) if ok]
    already = [receipt_id(alert_id, n) for (n, _), ok in zip(receipts, applied) if not ok]
    log.info("acknowledged via the API", alert_id=alert_id, by=by, count=len(done))
    return {"acknowledged": done, "already": already}


async def ack_receipt(request: web.Request) -> web.Response:
    try:
        alert_id, number = parse_receipt_id(request.match_info["rid"])
    except ValueError as exc:
        raise Problem(404, "Not Found", "not a receipt id") from exc
    body = validated(AckRequest, await json_body(request, optional=True))
    receipt = await request.app[STORE].receipts.get(alert_id, number)
    if receipt is None:
        raise Problem(404, "Not Found", f"no receipt {request.match_info['rid']}")
    return _json(await _acknowledge(request, alert_id, [(number, receipt)], body))


async def ack_alert(request: web.Request) -> web.Response:
    alert_id = request.match_info["id"]
    body = validated(AlertAcksRequest, await json_body(request, optional=True))
    await _summary_or_404(request)
    wanted = set(body.recipients)
    store = request.app[STORE]
    found: list[tuple[int, dict]] = []
    total = await store.receipts.size(alert_id)
    for start in range(0, total, 1000):
        found += [(n, r) for n, r in await store.receipts.page(alert_id, start, 1000) if r["who"] in wanted]
    result = await _acknowledge(request, alert_id, found, body)
    result["unknown"] = sorted(wanted - {r["who"] for _, r in found})
    return _json(result)


async def silent(request: web.Request) -> web.Response:
    """Who has not acknowledged, by street and community, with what was tried for each."""
    alert_id = request.match_info["id"]
    await _summary_or_404(request)
    store, registry = request.app[STORE], await request.app[REGISTRY].refresh()
    people: dict[str, dict] = {}
    total = await store.receipts.size(alert_id)
    for start in range(0, total, 1000):
        for n, r in await store.receipts.page(alert_id, start, 1000):
            escalation = escalation_of(r["via"]) if r["via"] else None
            if escalation and not escalation["for"]:
                continue  # a supervisor's list of the silent counts for nobody
            # An escalated receipt (to the person, or to their backup) counts for whom it follows up.
            owner = escalation["for"] if escalation else r["who"]
            person = people.setdefault(owner, {"id": owner, "name": r["name"], "region": r["rg"],
                                               "acknowledged": False, "tried": []})
            person["acknowledged"] |= r["s"] == "acknowledged"
            person["tried"].append({"receipt": receipt_id(alert_id, n), "channel": r["c"], "state": r["s"],
                                    "attempts": r["a"], "error": r["e"] or None,
                                    **({"to": r["name"], "escalation": escalation} if escalation else {})})
    streets: dict[str, dict] = {}
    for person in people.values():
        if person.pop("acknowledged"):
            continue
        street, community = registry.street_and_community(person["region"]) \
            if registry.region(person["region"]) else (None, None)
        s = streets.setdefault(street or "", {"code": street, "name": _region_name(registry, street),
                                              "silent": 0, "communities": {}})
        c = s["communities"].setdefault(community or "", {"code": community,
                                                          "name": _region_name(registry, community), "people": []})
        c["people"].append(person)
        s["silent"] += 1
    listing = [{**s, "communities": list(s["communities"].values())}
               for s in sorted(streets.values(), key=lambda s: -s["silent"])]
    silent_count = sum(s["silent"] for s in listing)
    return _json({"alert_id": alert_id, "recipients": len(people), "silent": silent_count,
                  "acknowledged": len(people) - silent_count, "streets": listing})


def _region_name(registry: Registry, code: str | None) -> str | None:
    region = registry.region(code) if code else None
    return region.name if region else None


async def alert_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: a ``progress`` event whenever the counts move, ``end`` when settled."""
    store = request.app[STORE]
    summary = await _summary_or_404(request)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    last = None
    quiet_since = time.monotonic()
    while True:
        current = (summary["state"], summary["totals"])
        if current != last:
            last = current
            quiet_since = time.monotonic()
            event = "end" if summary["state"] in END_STATES else "progress"
            data = dumps({k: summary[k] for k in ("id", "state", "recipients", "counts", "totals", "summary")})
            await response.write(f"event: {event}\ndata: {data}\n\n".encode())
            if event == "end":
                break
        elif time.monotonic() - quiet_since > 15:
            await response.write(b": keep-alive\n\n")
            quiet_since = time.monotonic()
        await asyncio.sleep(0.5)
        summary = await store.summary(summary["id"])
    await response.write_eof()
    return response


async def get_regions(request: web.Request) -> web.Response:
    return _json({"items": (await request.app[REGISTRY].refresh()).tree()})


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    redis, keys = request.app[REDIS], request.app[KEYS]
    try:
        await asyncio.wait_for(redis.ping(), 2)
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        raise Problem(503, "Not ready", f"Redis unreachable: {type(exc).__name__}") from exc
    alive = await workers_alive(redis, keys)
    if alive == 0:
        raise Problem(503, "Not ready", "no worker has sent a heartbeat in the last 15 s")
    return _json({"status": "ready", "redis": "ok", "workers": alive})


async def get_metrics(request: web.Request) -> web.Response:
    redis, keys = request.app[REDIS], request.app[KEYS]
    async with redis.pipeline(transaction=False) as pipe:
        channels = ("sms", "voice", "mqtt", "wecom", "dingtalk", "feishu", "telegram", "console")
        for ch in channels:
            for p in range(PRIORITIES):
                pipe.xlen(keys.deliveries(ch, p))
        for p in range(PRIORITIES):
            pipe.xlen(keys.intake(p))
        pipe.zcard(keys.alert_index)
        values = await pipe.execute()
    i = 0
    for ch in channels:
        for p in range(PRIORITIES):
            QUEUE_DEPTH.labels(ch, str(p)).set(values[i])
            i += 1
    for p in range(PRIORITIES):
        INTAKE_DEPTH.labels(str(p)).set(values[i])
        i += 1
    ALERTS_STORED.set(values[i])
    WORKERS_ALIVE.set(await workers_alive(redis, keys))
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    from dispatcher.openapi import openapi_document

    return _json(openapi_document(ROUTES, request.app[SETTINGS].base_url()))


ALERT_ID = "{id:[0-9a-z]{16}}"
LISTED = "{kind:contacts|devices|groups}"  # regions are listed as a tree, GET /v1/regions
RECORDS = "{kind:contacts|devices|groups|regions}"
ROUTES: list[Route] = [
    Route("POST", "/v1/alerts", post_alert, "Post an alert (JSON or CAP XML)", SEND_ROLES, body=Alert,
          response=Accepted, status=202, body_media=("application/json", "application/cap+xml"),
          headers=("Idempotency-Key",), responses=(("200", "A duplicate: the first alert's id"),)),
    Route("GET", "/v1/alerts", list_alerts, "Alerts, newest first", response=AlertPage, params=("cursor", "limit")),
    Route("GET", f"/v1/alerts/{ALERT_ID}", get_alert, "An alert and its receipt counts", response=AlertSummary),
    Route("GET", f"/v1/alerts/{ALERT_ID}.cap", get_alert_cap, "An alert as CAP 1.2 XML",
          media="application/cap+xml"),
    Route("GET", f"/v1/alerts/{ALERT_ID}/receipts", list_receipts, "An alert's receipts", response=ReceiptPage,
          params=("cursor", "limit", "state", "channel", "region")),
    Route("GET", f"/v1/alerts/{ALERT_ID}/events", alert_events, "Progress as server-sent events",
          media="text/event-stream"),
    Route("GET", f"/v1/alerts/{ALERT_ID}/silent", silent, "Who has not acknowledged, by street and community"),
    Route("POST", f"/v1/alerts/{ALERT_ID}/acks", ack_alert, "Acknowledge for recipients of an alert",
          ACK_ROLES, body=AlertAcksRequest, response=AckResult),
    Route("POST", "/v1/receipts/{rid}/ack", ack_receipt, "Acknowledge one receipt", ACK_ROLES, body=AckRequest,
          response=AckResult),
    Route("GET", "/v1/regions", get_regions, "The regions tree of the registry"),
    Route("POST", "/v1/registry:import", import_registry, "Import a registry file: CSV (people, devices, groups or "
          "regions) or YAML; ?dry_run=1 says what would change, ?replace=1 replaces the kinds in the file, "
          "?kind= names a CSV's kind", ("admin",), params=("kind", "dry_run", "replace", "file"),
          body_media=("text/csv", "application/yaml"), large_body=True),
    Route("GET", "/v1/registry:export", export_registry, "The registry as YAML, or one kind as CSV (?kind=); "
          "secrets included", ("admin",), params=("kind",), media="application/yaml"),
    Route("GET", "/v1/registry/audit", registry_audit, "Readiness: the six haves' warning points per community "
          "and street, worst first"),
    Route("GET", "/v1/registry/changes", registry_changes, "Who changed the registry, when, how much", ("admin",)),
    Route("GET", f"/v1/{LISTED}", list_records, "People (contacts), gateways (devices) or chat groups, in registry "
          "order", params=("region", "role", "cursor", "limit")),
    Route("POST", f"/v1/{RECORDS}", create_record, "Add a person, gateway, chat group or region", ("admin",),
          status=201),
    Route("GET", f"/v1/{RECORDS}/{{key}}", get_record, "One person, gateway, chat group or region"),
    Route("PUT", f"/v1/{RECORDS}/{{key}}", replace_record, "Replace (or add) one record", ("admin",),
          responses=(("201", "Added"),)),
    Route("DELETE", f"/v1/{RECORDS}/{{key}}", delete_record, "Remove one record that nothing refers to",
          ("admin",), status=204, responses=(("409", "Something still refers to it"),)),
    Route("POST", "/hooks/twilio/status", twilio_status, "Twilio message status (signed by Twilio)", None,
          status=204, media="text/plain"),
    Route("POST", "/hooks/twilio/voice", twilio_voice, "A key pressed during a warning call (signed by Twilio)",
          None, media="text/xml"),
    Route("POST", "/hooks/twilio/inbound", twilio_inbound, "An SMS reply (signed by Twilio); answers TwiML", None,
          media="text/xml"),
    Route("POST", "/hooks/telegram", telegram_update, "A Telegram update (button presses acknowledge)", None),
    Route("GET", "/a/{token}", ack_page.show, "The ack page of a signed link (HTML)", None, media="text/html"),
    Route("POST", "/a/{token}", ack_page.acknowledge, "Acknowledge through a signed link (HTML)", None,
          media="text/html"),
    Route("GET", "/healthz", healthz, "The process is up", None),
    Route("GET", "/readyz", readyz, "Redis is reachable and a worker is alive", None),
    Route("GET", "/metrics", get_metrics, "Prometheus metrics", None, media="text/plain"),
    Route("GET", "/openapi.json", openapi, "This API as OpenAPI 3.1", None),
]


def build_app(settings: Settings, redis: Redis, registry: LiveRegistry) -> web.Application:
    app = web.Application(client_max_size=max(settings.max_body_bytes, settings.max_import_bytes),
                          middlewares=[problem_middleware])
    keys = Keys(settings.redis_prefix)
    app[SETTINGS] = settings
    app[REDIS] = redis
    app[KEYS] = keys
    app[STORE] = AlertStore(redis, keys)
    app[REGISTRY] = registry
    app[ACK_LINKS] = AckLinks(settings.signing_secret(), settings.base_url())  # the secret is read once
    for route in ROUTES:
        app.router.add_route(route.method, route.path, _guard(route))
    return app
