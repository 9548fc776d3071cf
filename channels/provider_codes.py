"""What the chat apps' group robots answer, in one place: which codes mean "too fast" (wait and
try again) and which mean the robot, its key or its signature is wrong (no retry can help).

Codes are matched by number first. A code not in the table is matched on its message ("too
fast", "frequency", 限流, ...); anything else unknown is retried a few times (``max_attempts``),
since an undelivered warning costs more than a repeated request.
"""

from __future__ import annotations

from channels.base import ChannelError

THROTTLED, PERMANENT = "throttled", "permanent"

CODES: dict[str, dict[int, tuple[str, str]]] = {
    "wecom": {
        45009: (THROTTLED, "api freq out of limit"),
        45033: (THROTTLED, "api concurrent out of limit"),
        93000: (PERMANENT, "invalid webhook url: the robot's key is wrong or the robot was removed"),
        93004: (PERMANENT, "the robot was removed from the group"),
        93008: (PERMANENT, "not a member of the group"),
        40008: (PERMANENT, "invalid message type"),
        40058: (PERMANENT, "invalid request parameter"),
        44004: (PERMANENT, "empty content"),
        45002: (PERMANENT, "content too long"),
    },
    "dingtalk": {
        310000: (PERMANENT, "signature, keyword or IP check failed"),
        300001: (PERMANENT, "access token does not exist"),
        400013: (PERMANENT, "the group was dissolved"),
        400101: (PERMANENT, "access token does not exist"),
        400102: (PERMANENT, "the robot is disabled"),
        400105: (PERMANENT, "unsupported message type"),
        400106: (PERMANENT, "the robot does not exist"),
        130101: (THROTTLED, "send too fast, over 20 a minute"),
        410100: (THROTTLED, "send too fast: the robot is throttled"),
        430101: (PERMANENT, "content refused by the security check"),
        430102: (PERMANENT, "content refused by the security check"),
        430103: (PERMANENT, "content refused by the security check"),
        430104: (PERMANENT, "content refused by the security check"),
    },
    "feishu": {
        19021: (PERMANENT, "signature check failed, or timestamp not within an hour"),
        19022: (PERMANENT, "IP not allowed"),
        19024: (PERMANENT, "key words not found"),
        19001: (PERMANENT, "invalid parameter"),
        9499: (PERMANENT, "bad request"),
        11232: (THROTTLED, "frequency limited"),
        11233: (THROTTLED, "too many requests"),
    },
}

THROTTLE_WORDS = ("too fast", "freq", "throttl", "rate limit", "太快", "限流", "频率")


def error_of(provider: str, status: int, code: int | None, message: str) -> ChannelError:
    """The ChannelError for a robot's failure answer (HTTP status, the body's code and message)."""
    known = CODES.get(provider, {}).get(code) if code is not None else None
    reason = message or (known[1] if known else f"HTTP {status}")
    tag = str(code) if code is not None else str(status)
    if known:
        kind = known[0]
    elif status == 429 or any(w in message.lower() for w in THROTTLE_WORDS):
        kind = THROTTLED
    elif status in (401, 403, 404):
        kind = PERMANENT
    else:
        return ChannelError(reason, recoverable=True, code=tag)
    return ChannelError(reason, recoverable=kind == THROTTLED, throttled=kind == THROTTLED, code=tag)
