"""CAP XML in and out.

In: CAP 1.2 and 1.1, parsed with defusedxml (no DTD, no entity expansion, no external entity;
XInclude is never processed), validated against the OASIS schema, then mapped onto the
``Alert`` model. Out: CAP 1.2 that validates against ``cap12.xsd``, times with an offset.
"""

from __future__ import annotations

import functools
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import defusedxml.ElementTree as SafeET
import xmlschema
from defusedxml import DefusedXmlException
from pydantic import ValidationError

from dispatcher.models import REGION_GEOCODE, Alert

CAP12 = "urn:oasis:names:tc:emergency:cap:1.2"
CAP11 = "urn:oasis:names:tc:emergency:cap:1.1"
SCHEMAS = Path(__file__).with_name("schemas")

# Elements that CAP repeats; JSON gives them as lists.
REPEATED = {"code", "info", "category", "responseType", "eventCode", "parameter", "resource", "area",
            "polygon", "circle", "geocode"}
NESTED = {"info", "eventCode", "parameter", "resource", "area", "geocode"}

ALERT_ORDER = ["identifier", "sender", "sent", "status", "msgType", "source", "scope", "restriction",
               "addresses", "code", "note", "references", "incidents", "info"]
INFO_ORDER = ["language", "category", "event", "responseType", "urgency", "severity", "certainty", "audience",
              "eventCode", "effective", "onset", "expires", "senderName", "headline", "description",
              "instruction", "web", "contact", "parameter", "resource", "area"]
AREA_ORDER = ["areaDesc", "polygon", "circle", "geocode", "altitude", "ceiling"]
RESOURCE_ORDER = ["resourceDesc", "mimeType", "size", "uri", "derefUri", "digest"]
TIMES = {"sent", "effective", "onset", "expires"}


class CapError(ValueError):
    """A CAP document that is refused; ``errors`` holds each problem with its path."""

    def __init__(self, detail: str, errors: list[dict[str, str]] | None = None, *, malformed: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []
        self.malformed = malformed  # not XML at all, or XML we refuse to read


@functools.cache
def _schema(namespace: str) -> xmlschema.XMLSchema:
    name = "cap12.xsd" if namespace == CAP12 else "cap11.xsd"
    return xmlschema.XMLSchema(str(SCHEMAS / name))


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _plain_path(path: str | None) -> str:
    return "/" + "/".join(_local(p) for p in (path or "").split("/") if p)


def parse_cap(data: bytes) -> Alert:
    """A CAP document to an ``Alert``, or ``CapError`` naming every problem found."""
    try:
        root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise CapError(f"refused: the document uses a DTD or entities ({type(exc).__name__}), "
                       "which CAP intake does not allow", malformed=True) from exc
    except ET.ParseError as exc:
        raise CapError(f"not well-formed XML: {exc}", malformed=True) from exc
    namespace = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
    if _local(root.tag) != "alert" or namespace not in (CAP12, CAP11):
        raise CapError(f"root element is {root.tag!r}; expected <alert> in the CAP 1.2 or 1.1 namespace")
    errors = [
        {"path": _plain_path(e.path), "message": e.reason or str(e.message)}
        for e in _schema(namespace).iter_errors(root, use_location_hints=False)
    ]
    if errors:
        version = "1.2" if namespace == CAP12 else "1.1"
        raise CapError(f"not valid CAP {version}: " + "; ".join(f"{e['path']}: {e['message']}" for e in errors[:5]),
                       errors)
    document = _to_dict(root, namespace)
    for info in document.get("info", []):
        info.setdefault("language", "en-US")  # CAP's own default
    try:
        return Alert.model_validate(document)
    except ValidationError as exc:
        errs = [{"path": "/alert/" + "/".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        raise CapError("CAP rules broken: " + "; ".join(f"{e['path']}: {e['message']}" for e in errs), errs) from exc


def _to_dict(element: ET.Element, namespace: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for child in element:
        if not isinstance(child.tag, str) or not child.tag.startswith("{" + namespace + "}"):
            continue  # comments, and extension elements of other namespaces (e.g. signatures)
        name = _local(child.tag)
        value: Any = _to_dict(child, namespace) if name in NESTED else (child.text or "").strip()
        if name in REPEATED:
            out.setdefault(name, []).append(value)
        else:
            out[name] = value
    return out


def _cap_time(value: datetime) -> str:
    return value.isoformat(timespec="seconds")  # +00:00 for UTC, never Z


def to_cap(alert: Alert) -> bytes:
    """CAP 1.2 XML of an alert; Shaozi's region codes become ADCODE geocodes."""
    ET.register_namespace("", CAP12)
    root = ET.Element(f"{{{CAP12}}}alert")
    data = alert.model_dump(exclude_none=True)
    _fill(root, data, ALERT_ORDER, _info)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _fill(parent: ET.Element, data: dict, order: list[str], nested=None) -> None:
    for name in order:
        if name not in data or data[name] in ([], ""):
            continue
        values = data[name] if isinstance(data[name], list) else [data[name]]
        for value in values:
            child = ET.SubElement(parent, f"{{{CAP12}}}{name}")
            if isinstance(value, dict):
                nested(child, value) if name in ("info", "area", "resource") else _named(child, value)
            elif isinstance(value, datetime):
                child.text = _cap_time(value)
            elif isinstance(value, float) and value.is_integer():
                child.text = str(int(value))
            else:
                child.text = str(value)


def _named(element: ET.Element, value: dict) -> None:
    ET.SubElement(element, f"{{{CAP12}}}valueName").text = value["valueName"]
    ET.SubElement(element, f"{{{CAP12}}}value").text = value["value"]


def _info(element: ET.Element, info: dict) -> None:
    if info.get("certainty") == "Very Likely":  # CAP 1.1 only
        info = {**info, "certainty": "Likely"}
    _fill(element, info, INFO_ORDER, _area_or_resource)


def _area_or_resource(element: ET.Element, data: dict) -> None:
    if _local(element.tag) == "resource":
        _fill(element, data, RESOURCE_ORDER)
        return
    geocodes = list(data.get("geocode", []))
    have = {(g["valueName"], g["value"]) for g in geocodes}
    geocodes += [{"valueName": REGION_GEOCODE, "value": c} for c in data.get("regions", [])
                 if (REGION_GEOCODE, c) not in have]
    _fill(element, {**data, "geocode": geocodes}, AREA_ORDER)
