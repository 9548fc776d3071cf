"""The OpenAPI 3.1 document, generated from the route table and the pydantic models."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pydantic.json_schema import models_json_schema

from dispatcher.models import Problem

if TYPE_CHECKING:
    from dispatcher.api import Route

PARAM_DOCS = {
    "cursor": "the 'next' value of the previous page",
    "limit": "how many items at most",
    "state": "only receipts in this state",
    "channel": "only receipts on this channel",
    "region": "only those of this region and the regions below it",
    "role": "only people of this role",
    "kind": "people, devices, groups or regions",
    "dry_run": "1: say what would change, write nothing",
    "replace": "1: the kinds in the file replace what is there (else: added or replaced by id)",
    "file": "the file's name, for the problems' messages",
}


def openapi_document(routes: list[Route], server_url: str) -> dict[str, Any]:
    models = {m for r in routes for m in (r.body, r.response) if m is not None} | {Problem}
    _, schemas = models_json_schema(
        [(m, "validation" if any(r.body is m for r in routes) else "serialization") for m in sorted(models, key=str)],
        ref_template="#/components/schemas/{model}",
    )
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        path = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", route.path.replace("{16}", ""))  # drop the id's regex
        op: dict[str, Any] = {"summary": route.summary, "operationId": route.handler.__name__, "responses": {}}
        choices = {name: alts.split("|") for name, alts in re.findall(r"\{(\w+):([a-z|]+)\}", route.path)}
        params = [{"name": name, "in": "path", "required": True,
                   "schema": {"type": "string", **({"enum": choices[name]} if name in choices else {})}}
                  for name in re.findall(r"\{(\w+)\}", path)]
        params += [{"name": p, "in": "query", "required": False, "description": PARAM_DOCS[p],
                    "schema": {"type": "string"}} for p in route.params]
        if route.body is not None:
            ref = {"schema": {"$ref": f"#/components/schemas/{route.body.__name__}"}}
            xml = {"schema": {"type": "string", "description": "CAP 1.2 or 1.1 XML"}}
            op["requestBody"] = {"required": True, "content": {
                m: (ref if m == "application/json" else xml) for m in route.body_media}}
        elif route.large_body:
            op["requestBody"] = {"required": True, "content": {m: {"schema": {"type": "string"}}
                                                               for m in route.body_media}}
        op["parameters"] = params + [{"name": h, "in": "header", "required": False,
                                      "schema": {"type": "string", "maxLength": 255}} for h in route.headers]
        if not op["parameters"]:
            del op["parameters"]
        content = ({"schema": {"$ref": f"#/components/schemas/{route.response.__name__}"}}
                   if route.response is not None else {"schema": {"type": "string"}})
        op["responses"][str(route.status)] = {"description": "OK", "content": {route.media: content}}
        for code, text in route.responses:
            op["responses"][code] = {"description": text, "content": {route.media: content}}
        problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        errors = {"400": "Bad request", "404": "Not found"}
        if route.roles is not None:
            errors |= {"401": "No or unknown API key", "403": "The key's role may not do this"}
            op["security"] = [{"bearer": []}]
        if route.body is not None or route.large_body:
            errors |= {"413": "Body too large", "415": "Unknown content type", "422": "Invalid body"}
        for code, text in errors.items():
            op["responses"][code] = {"description": text, "content": problem}
        paths.setdefault(path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Shaozi", "version": "1", "description": "Early-warning message dispatch"},
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
