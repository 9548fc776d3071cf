"""What loudspeaker gateways say back over MQTT: acknowledgements move receipts, status
messages record whether each gateway is online.

``received`` -> ``delivered``; ``played`` -> ``acknowledged``; ``failed`` with a refusal
(bad signature, expired, replayed, ...) -> ``failed``, any other failure -> sent again soon.
An ack is taken only from the gateway its command was sent to. Malformed or unknown messages
are logged and counted, never raised: one broken gateway cannot stop the others being heard.
"""

from __future__ import annotations

import json
import time

import structlog
from redis.asyncio import Redis

from channels.gateway_contract import ACK_STATES, REFUSALS, status_of
from dispatcher import metrics
from dispatcher.keys import Keys
from dispatcher.receipts import Change, ReceiptBook, parse_receipt_id
from dispatcher.sender import retry_member

log = structlog.get_logger("shaozi.gateways")


class GatewayAcks:
    def __init__(self, redis: Redis, keys: Keys, book: ReceiptBook, *, retry_s: float = 2.0) -> None:
        self.redis = redis
        self.keys = keys
        self.book = book
        self.retry_s = retry_s

    async def handle(self, device: str, kind: str, payload: bytes) -> None:
        if kind == "status":
            await self.status(device, payload)
        elif kind == "ack":
            outcome = await self.ack(device, payload)
            metrics.GATEWAY_MESSAGES.labels("ack", outcome).inc()

    async def status(self, device: str, payload: bytes) -> None:
        state = status_of(payload)
        if not state:
            return  # a retained status cleared
        if state not in ("online", "offline"):
            log.warning("malformed gateway status", device=device, payload=payload[:64].decode(errors="replace"))
            metrics.GATEWAY_MESSAGES.labels("status", "malformed").inc()
            return
        await self.redis.hset(self.keys.gateways, device, f"{state}\t{time.time():.3f}")
        metrics.GATEWAY_MESSAGES.labels("status", state).inc()
        log.info("gateway status", device=device, state=state)

    async def ack(self, device: str, payload: bytes) -> str:
        """Apply one acknowledgement; returns what became of it (for the metrics)."""
        try:
            body = json.loads(payload)
            rid, state = body["delivery_id"], body["state"]
            alert_id, number = parse_receipt_id(rid)
            if state not in ACK_STATES:
                raise ValueError(f"unknown state {state!r}")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("malformed gateway ack", device=device, error=str(exc))
            return "malformed"
        receipt = await self.book.get(alert_id, number)
        if receipt is None or receipt["c"] != "mqtt" or receipt["to"] != device:
            log.warning("ack for no command sent to this gateway", device=device, delivery_id=rid)
            return "unknown"
        now = time.time()
        reason = str(body.get("reason") or "unspecified")[:200]
        if state == "received":
            change = Change(number, "delivered", {"note": f"received by gateway {device}"})
        elif state == "played":
            change = Change(number, "acknowledged", {"note": f"played by gateway {device}"})
        elif reason in REFUSALS:
            change = Change(number, "failed", {"e": f"gateway refused: {reason}"})
        else:
            change = Change(number, "sending", {"e": f"gateway failed: {reason}", "retry_at": round(now + self.retry_s, 3)})
        applied = (await self.book.apply(alert_id, [change], now))[0]
        if applied and change.state == "sending":
            # The command's own no-ack check, brought forward: the same retry, sent sooner.
            priority = await self.redis.hget(self.keys.alert(alert_id), "priority")
            member = retry_member(int(priority or 3), alert_id, number, receipt["a"])
            await self.redis.zadd(self.keys.retries("mqtt"), {member: now + self.retry_s})
        return state if applied else "repeated"
