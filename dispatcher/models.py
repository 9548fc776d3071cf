"""The alert model, aligned with OASIS CAP 1.2; JSON intake and CAP XML intake both produce it."""

from __future__ import annotations

import base64
import os
import re
import time
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from config.settings import PersonRole
from contacts.targeting import POINT, POLYGON, Target, parse_circle, parse_polygon

Status = Literal["Actual", "Exercise", "System", "Test", "Draft"]
MsgType = Literal["Alert", "Update", "Cancel", "Ack", "Error"]
Scope = Literal["Public", "Restricted", "Private"]
Category = Literal[
    "Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport", "Infra", "CBRNE", "Other"
]
ResponseType = Literal[
    "Shelter", "Evacuate", "Prepare", "Execute", "Avoid", "Monitor", "Assess", "AllClear", "None"
]
Urgency = Literal["Immediate", "Expected", "Future", "Past", "Unknown"]
Severity = Literal["Extreme", "Severe", "Moderate", "Minor", "Unknown"]
# "Very Likely" is CAP 1.1's, kept so that 1.1 feeds are accepted.
Certainty = Literal["Observed", "Likely", "Possible", "Unlikely", "Unknown", "Very Likely"]
ChannelName = Literal["sms", "voice", "mqtt", "wecom", "dingtalk", "feishu", "telegram", "console"]

RECEIPT_STATES = (
    "queued", "sending", "sent", "delivered", "acknowledged", "failed", "undeliverable", "cancelled", "expired"
)
ALERT_STATES = ("accepted", "planning", "dispatching", "settled", "cancelled", "expired")
PRIORITIES = 4  # 0 is the most urgent
REGION_GEOCODE = "ADCODE"


def _listify(value: Any) -> Any:
    """CAP repeats an element where JSON would give a list; accept one object or a list."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("time must carry a UTC offset, e.g. 2026-07-01T08:00:00+08:00")
    return value


Many = BeforeValidator(_listify)


class CapModel(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class NamedValue(CapModel):
    valueName: str = Field(min_length=1)
    value: str




class Area(CapModel):
    areaDesc: str = Field(min_length=1)
    polygon: Annotated[list[Annotated[str, Field(pattern=POLYGON)]], Many] = Field(default_factory=list)
    circle: Annotated[list[Annotated[str, Field(pattern=rf"^{POINT}\s+\d+(\.\d+)?$")]], Many] = Field(default_factory=list)
    geocode: Annotated[list[NamedValue], Many] = Field(default_factory=list)
    altitude: float | None = None
    ceiling: float | None = None
    regions: Annotated[list[Annotated[str, Field(pattern=r"^\d{6,12}$")]], Many] = Field(
        default_factory=list, description="registry region codes (administrative division codes)"
    )

    def region_codes(self) -> list[str]:
        return self.regions + [g.value for g in self.geocode if g.valueName.upper() == REGION_GEOCODE]


class Resource(CapModel):
    resourceDesc: str
    mimeType: str
    size: int | None = None
    uri: str | None = None
    derefUri: str | None = None
    digest: str | None = None


class Info(CapModel):
    language: str = "zh-CN"
    category: Annotated[list[Category], Many] = Field(min_length=1)
    event: str = Field(min_length=1, max_length=200)
    responseType: Annotated[list[ResponseType], Many] = Field(default_factory=list)
    urgency: Urgency
    severity: Severity
    certainty: Certainty
    audience: str | None = None
    eventCode: Annotated[list[NamedValue], Many] = Field(default_factory=list)
    effective: datetime | None = None
    onset: datetime | None = None
    expires: datetime | None = None
    senderName: str | None = None
    headline: str | None = Field(None, max_length=500)
    description: str | None = Field(None, max_length=10_000)
    instruction: str | None = Field(None, max_length=5_000)
    web: str | None = None
    contact: str | None = None
    parameter: Annotated[list[NamedValue], Many] = Field(default_factory=list)
    resource: Annotated[list[Resource], Many] = Field(default_factory=list)
    area: Annotated[list[Area], Many] = Field(default_factory=list)

    @field_validator("effective", "onset", "expires")
    @classmethod
    def _times_aware(cls, value: datetime | None) -> datetime | None:
        return value if value is None else _aware(value)


class Alert(CapModel):
    identifier: str = Field(min_length=1, max_length=200, pattern=r"^[^\s,<&]+$")
    sender: str = Field(min_length=1, max_length=200, pattern=r"^[^\s,<&]+$")
    sent: datetime
    status: Status
    msgType: MsgType
    source: str | None = None
    scope: Scope
    restriction: str | None = None
    addresses: str | None = None
    code: Annotated[list[str], Many] = Field(default_factory=list)
    note: str | None = None
    references: str | None = Field(None, description="space-separated sender,identifier,sent triples")
    incidents: str | None = None
    info: Annotated[list[Info], Many] = Field(default_factory=list)
    channels: list[ChannelName] | None = Field(
        None, description="Shaozi: send only on these channels (default: every channel a recipient has)"
    )
    roles: list[PersonRole] | None = Field(
        None, description="Shaozi: reach only people of these roles (and no groups or loudspeakers)"
    )

    @field_validator("sent")
    @classmethod
    def _sent_aware(cls, value: datetime) -> datetime:
        return _aware(value)

    @field_validator("references")
    @classmethod
    def _references(cls, value: str | None) -> str | None:
        if value is None:
            return None
        triples = value.split()
        if not triples:
            raise ValueError("references is present but empty; give sender,identifier,sent of each earlier alert")
        for triple in triples:
            if len(triple.split(",")) != 3:
                raise ValueError(f"reference {triple!r} is not sender,identifier,sent")
        return value

    @model_validator(mode="after")
    def _cap_rules(self) -> Alert:
        if self.msgType in ("Update", "Cancel", "Ack", "Error") and not self.references:
            raise ValueError(f"msgType {self.msgType} needs references to the earlier alert(s)")
        if self.msgType in ("Alert", "Update") and not self.info:
            raise ValueError(f"msgType {self.msgType} needs at least one info block")
        if self.scope == "Restricted" and not self.restriction:
            raise ValueError("scope Restricted needs a restriction")
        if self.scope == "Private" and not self.addresses:
            raise ValueError("scope Private needs addresses")
        return self

    # --- what Shaozi derives from it -------------------------------------------------------

    def referenced(self) -> list[tuple[str, str]]:
        """(sender, identifier) of each earlier alert this one references."""
        out = []
        for triple in (self.references or "").split():
            sender, identifier, _sent = triple.split(",")
            out.append((sender, identifier))
        return out

    def region_codes(self) -> list[str]:
        codes: list[str] = []
        for info in self.info:
            for area in info.area:
                codes.extend(c for c in area.region_codes() if c not in codes)
        return codes

    def target(self) -> Target:
        """Who it is for: regions, CAP polygons and circles, roles, and its hazards (categories
        and event) for people who follow only some."""
        areas = [a for info in self.info for a in info.area]
        return Target(
            codes=tuple(self.region_codes()),
            polygons=tuple(parse_polygon(p) for a in areas for p in a.polygon),
            circles=tuple(parse_circle(c) for a in areas for c in a.circle),
            roles=frozenset(self.roles) if self.roles else None,
            hazards=frozenset(h.lower() for info in self.info for h in (*info.category, info.event)),
        )

    def priority(self) -> int:
        """0 (most urgent) to 3, from the most urgent info's severity and urgency."""
        if not self.info:
            return 0 if self.msgType == "Cancel" else PRIORITIES - 1
        return min(_priority(i.severity, i.urgency) for i in self.info)

    def expires_at(self) -> float | None:
        """Unix time after which nothing of this alert is sent; None when it does not expire."""
        times = [i.expires for i in self.info]
        if not times or any(t is None for t in times):
            return None
        return max(t.timestamp() for t in times)

    def main_info(self, prefer: str = "zh") -> Info | None:
        for info in self.info:
            if info.language.lower().startswith(prefer):
                return info
        return self.info[0] if self.info else None


_SEVERITY_RANK = {"Extreme": 0, "Severe": 1, "Moderate": 2, "Minor": 3, "Unknown": 3}


def _priority(severity: str, urgency: str) -> int:
    rank = _SEVERITY_RANK[severity]
    if urgency == "Immediate" and rank > 0:
        rank -= 1
    return rank


_B32 = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789abcdefghjkmnpqrstvwxyz")


def new_id() -> str:
    """A 16-character id that sorts by creation time (48-bit ms clock, 32 random bits), in
    Crockford's base32 alphabet, lower case."""
    raw = int(time.time() * 1000).to_bytes(6, "big") + os.urandom(4)
    return base64.b32encode(raw).translate(_B32).decode()


ID_PATTERN = re.compile(r"^[0-9a-z]{16}$")


def now_utc() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


# --- API shapes (for the OpenAPI document and the clients) ----------------------------------


class Accepted(BaseModel):
    id: str
    url: str
    state: str
    duplicate: bool = False
    priority: int
    recipients_hint: str | None = Field(None, description="set when the area reaches nobody in the registry")
    unknown_regions: list[str] = []


class AlertSummary(BaseModel):
    id: str
    state: str
    alert: dict[str, Any]
    accepted_at: float
    priority: int
    recipients: int | None = None
    reaches_nobody: bool = False
    summary: str
    counts: dict[str, dict[str, int]]
    totals: dict[str, int]
    cancelled_by: str | None = None


class AlertPage(BaseModel):
    items: list[AlertSummary]
    next: str | None


class ReceiptView(BaseModel):
    id: str
    alert_id: str
    channel: str
    recipient: str
    name: str
    region: str
    address: str
    state: str
    attempts: int
    updated_at: float
    error: str | None = None
    provider_id: str | None = None
    retry_at: float | None = None
    history: list[dict[str, Any]]


class ReceiptPage(BaseModel):
    items: list[ReceiptView]
    next: str | None


class AckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str | None = Field(None, min_length=1, max_length=100, description="who acknowledges (default: the key's role)")
    note: str | None = Field(None, max_length=500)


class AlertAcksRequest(AckRequest):
    recipients: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=1000, description="registry ids of the people acknowledged for")


class AckResult(BaseModel):
    acknowledged: list[str] = Field(description="receipts acknowledged now")
    already: list[str] = Field(description="receipts acknowledged before, or ended")
    unknown: list[str] = Field(default_factory=list, description="recipients the alert has no receipt for")


class Problem(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[dict[str, Any]] | None = None
