"""From an HTTP request body to a validated ``Alert``: JSON or CAP XML."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from dispatcher.cap import CapError, parse_cap
from dispatcher.models import Alert, new_id, now_utc
from dispatcher.problems import Problem, pydantic_errors

JSON_TYPES = ("application/json",)
XML_TYPES = ("application/cap+xml", "application/xml", "text/xml")

# What a duty officer may leave out of a JSON alert.
JSON_DEFAULTS = {"status": "Actual", "msgType": "Alert", "scope": "Public"}


def intake_format(content_type: str) -> str:
    if content_type in JSON_TYPES or content_type.endswith("+json"):
        return "json"
    if content_type in XML_TYPES:
        return "cap"
    raise Problem(415, "Unsupported Media Type",
                  f"content type {content_type or '(none)'!r}: send application/json or application/cap+xml")


def parse_alert(body: bytes, fmt: str, *, default_sender: str) -> Alert:
    if fmt == "cap":
        try:
            return parse_cap(body)
        except CapError as exc:
            status, title = (400, "Unreadable XML") if exc.malformed else (422, "Invalid CAP document")
            raise Problem(status, title, exc.detail, errors=exc.errors) from exc
    return parse_json_alert(body, default_sender=default_sender)


def parse_json_alert(body: bytes, *, default_sender: str) -> Alert:
    try:
        data: Any = json.loads(body)
    except UnicodeDecodeError as exc:
        raise Problem(400, "Malformed JSON", f"body is not UTF-8: {exc.reason}") from exc
    except json.JSONDecodeError as exc:
        raise Problem(400, "Malformed JSON", f"line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise Problem(422, "Invalid alert", "the body must be a JSON object",
                      errors=[{"path": "(body)", "message": "expected an object"}])
    data = {**JSON_DEFAULTS, **data}
    data.setdefault("identifier", new_id())
    data.setdefault("sender", default_sender)
    data.setdefault("sent", now_utc().isoformat())
    try:
        return Alert.model_validate(data)
    except ValidationError as exc:
        errors = pydantic_errors(exc)
        raise Problem(422, "Invalid alert", "; ".join(f"{e['path']}: {e['message']}" for e in errors[:5]),
                      errors=errors) from exc
