"""Reading a request's parts, with the problem each bad one gets: whole-number query
parameters and JSON bodies validated against a model."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from dispatcher.problems import Problem, pydantic_errors


def int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise Problem(400, "Bad query parameter", f"{name} must be an integer from {low} to {high}",
                      errors=[{"path": f"query.{name}", "message": f"expected {low}..{high}"}])
    return int(raw)


async def json_body(request: web.Request, *, optional: bool = False) -> Any:
    """The body as JSON (``{}`` when ``optional`` and there is none)."""
    if not request.can_read_body:
        if optional:
            return {}
        raise Problem(400, "Missing body", "send application/json")
    if request.content_type != "application/json":
        raise Problem(415, "Unsupported Media Type", "send application/json")
    try:
        return await request.json()
    except json.JSONDecodeError as exc:
        raise Problem(400, "Malformed JSON", f"line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc


def validated(model: type[BaseModel], data: Any) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = pydantic_errors(exc)
        raise Problem(422, "Invalid request", "; ".join(f"{e['path']}: {e['message']}" for e in errors),
                      errors=errors) from exc
