"""The loudspeaker gateways' MQTT contract, shared by the ``mqtt`` channel and the gateway
simulator: topics, the signed command, and the acknowledgements.

    <prefix>/gw/<device_id>/cmd      Shaozi -> gateway, QoS 1: a command, signed
    <prefix>/gw/<device_id>/ack      gateway -> Shaozi, QoS 1: received | played | failed
    <prefix>/gw/<device_id>/status   gateway -> Shaozi, retained, also its last will: online | offline

``sig`` is the lowercase hex HMAC-SHA256, keyed with the device's key (UTF-8), over the
command without ``sig`` as canonical JSON: keys sorted, no spaces, UTF-8 as is.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from channels.base import Delivery
from channels.templates import render_body

VERSION = 1
ACK_STATES = ("received", "played", "failed")
# Why a gateway refuses a command; sending the same command again cannot help.
REFUSALS = ("bad-signature", "expired", "replayed", "malformed", "unknown-device")
COMMAND_TTL_S = 3600  # a command without an alert expiry is good for this long
REPEAT = {"Extreme": 3, "Severe": 3}  # times the warning is played; others twice


def cmd_topic(prefix: str, device_id: str) -> str:
    return f"{prefix}/gw/{device_id}/cmd"


def ack_topic(prefix: str, device_id: str) -> str:
    return f"{prefix}/gw/{device_id}/ack"


def status_topic(prefix: str, device_id: str) -> str:
    return f"{prefix}/gw/{device_id}/status"


def device_of(topic: str) -> tuple[str, str] | None:
    """(device id, kind) of a ``<prefix>/gw/<device>/<kind>`` topic, else None."""
    parts = topic.split("/")
    if len(parts) >= 4 and parts[-3] == "gw":
        return parts[-2], parts[-1]
    return None


def status_of(payload: bytes) -> str:
    """What a status message says: 'online', 'offline', '' (a retained status cleared) or else."""
    return payload.decode(errors="replace").strip().strip('"')


def canonical(command: dict[str, Any]) -> bytes:
    body = {k: v for k, v in command.items() if k != "sig"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signature(command: dict[str, Any], key: str) -> str:
    return hmac.new(key.encode(), canonical(command), hashlib.sha256).hexdigest()


def command_for(delivery: Delivery, key: str, now: float | None = None) -> dict[str, Any]:
    """The signed command that plays a delivery's warning (or, for a Cancel, says it is lifted)."""
    message = delivery.message
    issued = time.time() if now is None else now
    command = {
        "v": VERSION,
        "type": "cancel" if message.msg_type == "Cancel" else "alert",
        "alert_id": message.alert_id,
        "delivery_id": delivery.receipt_id,
        "status": "Exercise" if message.drill else "Actual",
        "severity": message.severity,
        "event": message.event,
        "text": render_body(message),
        "lang": message.lang,
        "repeat": REPEAT.get(message.severity, 2),
        "issued_at": round(issued, 3),
        "expires_at": round(message.expires_at or issued + COMMAND_TTL_S, 3),
        "nonce": secrets.token_hex(12),
    }
    command["sig"] = signature(command, key)
    return command


def encode(command: dict[str, Any]) -> bytes:
    return json.dumps(command, ensure_ascii=False, separators=(",", ":")).encode()


def verify(command: dict[str, Any], key: str, now: float | None = None) -> str | None:
    """Why a gateway must refuse a command (one of ``REFUSALS`` but 'replayed'), or None."""
    needed = ("v", "type", "delivery_id", "text", "expires_at", "nonce", "sig")
    if any(k not in command for k in needed) or not isinstance(command.get("sig"), str):
        return "malformed"
    if not hmac.compare_digest(command["sig"], signature(command, key)):
        return "bad-signature"
    if not isinstance(command["expires_at"], (int, float)) or command["expires_at"] <= (now or time.time()):
        return "expired"
    return None


def ack(delivery_id: str, state: str, reason: str | None = None, now: float | None = None) -> bytes:
    body: dict[str, Any] = {"delivery_id": delivery_id, "state": state, "at": round(now or time.time(), 3)}
    if reason:
        body["reason"] = reason
    return json.dumps(body).encode()
