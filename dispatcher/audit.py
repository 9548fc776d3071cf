"""Readiness audit: the warning-related points of the plan's "six haves" (六有), for every
community or village and every street or township, worst first.

A community has: an information officer with a phone; a loudspeaker gateway that is online (as
it last reported); a chat group; a drill acknowledged there (the latest, from drill receipts).
A street has: a duty officer and a full-time emergency staff member at the street office.
"""

from __future__ import annotations

from redis.asyncio import Redis

from contacts import Registry
from dispatcher.codec import text
from dispatcher.keys import Keys

RECENT_ALERTS = 1000  # drills are looked for among this many of the latest alerts


async def readiness(registry: Registry, redis: Redis, keys: Keys) -> dict:
    presence = {text(k): text(v).split("\t")[0] for k, v in (await redis.hgetall(keys.gateways)).items()}
    drills = await _last_drill_acks(registry, redis, keys)
    communities = []
    for region in registry.regions_at("community"):
        street, _ = registry.street_and_community(region.code)
        officers = [p for p in registry.people_in([region.code]) if p.role == "info_officer" and p.phone]
        gateways = registry.devices_in([region.code])
        online = [d for d in gateways if presence.get(d.id) == "online"]
        groups = registry.groups_in([region.code])
        last_drill = drills.get(region.code)
        missing = [what for what, ok in (
            ("an information officer with a phone", officers),
            ("a loudspeaker online" if gateways else "a loudspeaker", online),
            ("a chat group", groups),
            ("a drill acknowledged", last_drill is not None),
        ) if not ok]
        communities.append({"code": region.code, "name": region.name, "street": street,
                            "info_officers": len(officers), "loudspeakers": len(gateways),
                            "loudspeakers_online": len(online), "chat_groups": len(groups),
                            "last_drill_ack": last_drill, "missing": missing})
    streets = []
    for region in registry.regions_at("street"):
        staff = registry.people_at(region.code)
        duty = [p for p in staff if p.role == "duty_officer"]
        full_time = [p for p in staff if p.role == "staff"]
        missing = [what for what, ok in (("a duty officer", duty), ("a full-time emergency staff member", full_time))
                   if not ok]
        streets.append({"code": region.code, "name": region.name, "duty_officers": len(duty),
                        "staff": len(full_time), "missing": missing})
    worst_first = lambda r: (-len(r["missing"]), r["code"])  # noqa: E731
    return {"communities": sorted(communities, key=worst_first), "streets": sorted(streets, key=worst_first),
            "ready": sum(not c["missing"] for c in communities), "total": len(communities)}


async def _last_drill_acks(registry: Registry, redis: Redis, keys: Keys) -> dict[str, float]:
    """Community code -> when a drill was last acknowledged there."""
    latest: dict[str, float] = {}
    ids = [text(i) for i in await redis.zrevrange(keys.alert_index, 0, RECENT_ALERTS - 1)]
    async with redis.pipeline(transaction=False) as pipe:
        for alert_id in ids:
            pipe.hget(keys.alert(alert_id), "status")
        statuses = await pipe.execute()
    for alert_id, status in zip(ids, statuses):
        if text(status) != "Exercise":
            continue
        for region, at in (await redis.hgetall(keys.drill_acks(alert_id))).items():
            code = text(region)
            if registry.region(code) is not None:
                community = registry.street_and_community(code)[1] or code
                latest[community] = max(latest.get(community, 0.0), float(at))
    return latest
