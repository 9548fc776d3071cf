"""The alert store: durable intake and the alert summaries that readers see.

Intake is one script over the ``{intake}`` keys: it checks the dedupe index, stores the alert
document, lists it and appends it to its priority's intake stream, all or nothing. When it
returns, the alert is in Redis (and its AOF) and a planner will pick it up.
"""

from __future__ import annotations

import json
import time

from redis.asyncio import Redis

from dispatcher.codec import dumps, text
from dispatcher.keys import Keys
from dispatcher.models import Alert, new_id
from dispatcher.receipts import ReceiptBook

# KEYS: docs, dedupe, index, intake stream. ARGV: id, document, sender|identifier,
# idempotency key ('' for none), accepted at (ms).
# Returns {1, id} when stored, {0, first id} for a duplicate.
_ACCEPT = r"""
local docs, dedupe, index, stream = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, doc, natural, idem, at = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local first = redis.call('HGET', dedupe, natural)
if not first and idem ~= '' then first = redis.call('HGET', dedupe, idem) end
if first then return {0, first} end
redis.call('HSET', docs, id, doc)
redis.call('HSET', dedupe, natural, id)
if idem ~= '' then redis.call('HSET', dedupe, idem, id) end
redis.call('ZADD', index, at, id)
redis.call('XADD', stream, '*', 'id', id)
return {1, id}
"""


def _texts(raw: dict) -> dict[str, str]:
    return {text(k): text(v) for k, v in raw.items()}


def natural_key(sender: str, identifier: str) -> str:
    return f"{sender}|{identifier}"


class AlertStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self.receipts = ReceiptBook(redis, keys)
        self._accept = redis.register_script(_ACCEPT)

    async def accept(self, alert: Alert, *, idempotency_key: str | None = None, by: str = "") -> tuple[str, bool]:
        """Store the alert and queue it for planning. Returns (id, True) or (first id, False)."""
        alert_id = new_id()
        now = time.time()
        idem = f"idem|{idempotency_key}" if idempotency_key else ""
        doc = {
            "id": alert_id,
            "alert": alert.model_dump(mode="json", exclude_none=True),
            "accepted_at": now,
            "priority": alert.priority(),
            "by": by,
            "dedupe": [natural_key(alert.sender, alert.identifier), *([idem] if idem else [])],
        }
        keys = [self.keys.docs, self.keys.dedupe, self.keys.alert_index, self.keys.intake(alert.priority())]
        args = [alert_id, dumps(doc), natural_key(alert.sender, alert.identifier), idem, int(now * 1000)]
        stored, the_id = await self._accept(keys, args)
        return text(the_id), bool(stored)

    async def prune(self, before: float, limit: int = 100) -> int:
        """Forget alerts accepted before ``before`` (unix s): receipts, counters, document and
        dedupe entries. Returns how many; call again while it returns ``limit``."""
        ids = [text(i) for i in await self.redis.zrangebyscore(
            self.keys.alert_index, "-inf", f"({int(before * 1000)}", start=0, num=limit)]
        for alert_id in ids:
            doc = await self.doc(alert_id)
            # The alert's own keys first: if this stops half-way, the index still names it.
            await self.redis.unlink(*self.keys.alert_keys(alert_id), self.keys.plan_parts(alert_id),
                                    self.keys.escalation(alert_id), self.keys.drill_acks(alert_id))
            await self.redis.zrem(self.keys.escalations, alert_id)
            async with self.redis.pipeline(transaction=True) as tx:
                if doc:
                    for key in doc.get("dedupe") or [natural_key(doc["alert"]["sender"], doc["alert"]["identifier"])]:
                        tx.hdel(self.keys.dedupe, key)
                tx.hdel(self.keys.docs, alert_id)
                tx.zrem(self.keys.alert_index, alert_id)
                await tx.execute()
        return len(ids)

    async def doc(self, alert_id: str) -> dict | None:
        raw = await self.redis.hget(self.keys.docs, alert_id)
        return json.loads(raw) if raw else None

    async def find(self, sender: str, identifier: str) -> str | None:
        found = await self.redis.hget(self.keys.dedupe, natural_key(sender, identifier))
        return text(found)

    async def state(self, alert_id: str) -> dict[str, str]:
        return _texts(await self.redis.hgetall(self.keys.alert(alert_id)))

    async def doc_and_state(self, alert_id: str) -> tuple[dict | None, dict[str, str]]:
        """The document and the state of an alert in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(self.keys.docs, alert_id)
            pipe.hgetall(self.keys.alert(alert_id))
            raw, state = await pipe.execute()
        return (json.loads(raw) if raw else None), _texts(state)

    async def summary(self, alert_id: str) -> dict | None:
        doc = await self.doc(alert_id)
        if doc is None:
            return None
        return await self._summary(doc)

    async def _summary(self, doc: dict) -> dict:
        alert_id = doc["id"]
        state = await self.state(alert_id)
        counts, totals = await self.receipts.counts(alert_id)
        recipients = int(state["recipients"]) if "recipients" in state else None
        reaches_nobody = state.get("planned") == "1" and recipients == 0
        return {
            "id": alert_id,
            "state": state.get("state", "accepted"),
            "alert": doc["alert"],
            "accepted_at": doc["accepted_at"],
            "priority": doc["priority"],
            "recipients": recipients,
            "reaches_nobody": reaches_nobody,
            "summary": describe(state.get("state", "accepted"), recipients, totals, state),
            "counts": counts,
            "totals": totals,
            "cancelled_by": state.get("cancelled") or None,
        }

    async def page(self, before_ms: int | None, limit: int) -> tuple[list[dict], str | None]:
        """Newest first. The cursor is the acceptance time (ms) to continue below."""
        high = f"({before_ms}" if before_ms is not None else "+inf"
        rows = await self.redis.zrevrangebyscore(
            self.keys.alert_index, high, "-inf", start=0, num=limit + 1, withscores=True
        )
        more = len(rows) > limit
        rows = rows[:limit]
        ids = [text(r[0]) for r in rows]
        docs = await self.redis.hmget(self.keys.docs, ids) if ids else []
        items = [await self._summary(json.loads(d)) for d in docs if d]
        cursor = str(int(rows[-1][1])) if more and rows else None
        return items, cursor


def describe(state: str, recipients: int | None, totals: dict[str, int], alert_state: dict[str, str]) -> str:
    """One plain sentence on where an alert stands."""
    if state == "accepted":
        return "Accepted; waiting to be planned."
    if recipients == 0:
        return "Its area reaches nobody in the registry: no message was sent."
    if state == "planning":
        return "Working out who it reaches."
    reached = sum(totals.get(s, 0) for s in ("sent", "delivered", "acknowledged"))
    receipts = sum(totals.values())
    sentence = f"{recipients} recipients, {receipts} receipts: {reached} reached"
    open_ = totals.get("queued", 0) + totals.get("sending", 0)
    if open_:
        sentence += f", {open_} on their way"
    for s in ("acknowledged", "failed", "undeliverable", "cancelled", "expired"):
        if totals.get(s):
            sentence += f", {totals[s]} {s}"
    if state == "cancelled":
        sentence += f". Cancelled by {alert_state.get('cancelled')}"
    return sentence + "."
