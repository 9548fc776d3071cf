"""The registry over HTTP: import a file (CSV or YAML, with a dry run), export it, the log of
changes, and its records one by one (list, get, create, replace, delete). Every problem of a
refused file comes back at once, with its file and line; every change is checked against the
registry it changes and written only if that registry is still the one in Redis.

A viewer (or a feed) sees phone numbers masked; only an admin sees keys, secrets and webhooks."""

from __future__ import annotations

import asyncio

from aiohttp import web
from pydantic import BaseModel

from channels.base import mask
from contacts import Registry, RegistryError
from contacts.imports import COLUMNS, MODELS, Batch, ImportFailed, noun, plan, read, to_csv, to_yaml
from contacts.store import Conflict, key_of, plain
from dispatcher.app_state import KEYS, REDIS, REGISTRY, ROLE
from dispatcher.audit import readiness
from dispatcher.codec import dumps
from dispatcher.problems import Problem
from dispatcher.request_parts import int_param, json_body, validated

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")
FLAGS = ("1", "true", "yes")


async def import_registry(request: web.Request) -> web.Response:
    live = request.app[REGISTRY]
    if live.store is None:
        raise Problem(409, "Registry is fixed", "this registry is not kept in Redis")
    kind = request.query.get("kind")
    if kind is not None and kind not in COLUMNS:
        raise Problem(400, "Bad query parameter", f"kind must be one of {', '.join(COLUMNS)}")
    is_yaml = request.content_type in YAML_TYPES
    file = request.query.get("file") or ("registry.yaml" if is_yaml else f"{kind or 'registry'}.csv")
    if is_yaml and not file.lower().endswith((".yaml", ".yml", ".json")):
        file += ".yaml"
    dry_run = request.query.get("dry_run", "").lower() in FLAGS
    replace = request.query.get("replace", "").lower() in FLAGS
    registry = await live.refresh(now=True)
    version = live.version
    data = await request.read()
    try:
        # A large file takes seconds to check: in a thread, so that intake goes on meanwhile.
        change = await asyncio.to_thread(lambda: plan(registry, read(data, file, kind), replace=replace))
    except ImportFailed as exc:
        raise Problem(422, "Invalid registry file", f"{len(exc.problems)} problem(s); nothing was written",
                      errors=[{"file": p.file, "line": p.line, "message": p.message} for p in exc.problems]) from exc
    changes_anything = any(change.upserts.values()) or any(change.removals.values())
    if not dry_run and changes_anything:
        try:
            version = await live.store.write(change.upserts, change.removals, by=request[ROLE],
                                             note=f"import {file}", expect=version)
        except Conflict as exc:
            raise Problem(409, "Conflict", str(exc)) from exc
        await live.refresh(now=True)
    return web.json_response({"file": file, "dry_run": dry_run, "replace": replace, "version": version,
                              "changes": change.summary}, dumps=dumps)


async def export_registry(request: web.Request) -> web.Response:
    kind = request.query.get("kind")
    if kind is not None and kind not in COLUMNS:
        raise Problem(400, "Bad query parameter", f"kind must be one of {', '.join(COLUMNS)}")
    registry = await request.app[REGISTRY].refresh(now=True)
    if kind is None:
        return web.Response(text=to_yaml(registry), content_type="application/yaml", charset="utf-8")
    return web.Response(text=to_csv(registry.records()[kind], kind), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{kind}.csv"'})


async def registry_changes(request: web.Request) -> web.Response:
    live = request.app[REGISTRY]
    changes = await live.store.changes() if live.store is not None else []
    return web.json_response({"version": live.version, "items": changes}, dumps=dumps)


# --- records: list, get, create, replace, delete --------------------------------------------

KIND_OF_PATH = {"contacts": "people", "devices": "devices", "groups": "groups", "regions": "regions"}
SECRET_FIELDS = ("key", "secret", "webhook")  # an admin's alone
FULL_PHONES = ("admin", "officer")  # the others see a masked number


def _view(record: BaseModel, role: str) -> dict:
    data = {k: v for k, v in plain(record).items() if v is not None}
    if role != "admin":
        for name in SECRET_FIELDS:
            data.pop(name, None)
    if role not in FULL_PHONES and data.get("phone"):
        data["phone"] = mask(data["phone"])
    return data


def _kind(request: web.Request) -> str:
    return KIND_OF_PATH[request.match_info["kind"]]


def _find(registry: Registry, kind: str, key: str) -> BaseModel:
    if kind == "regions":
        record = next((r for r in registry.records()["regions"] if r.code == key), None)
    else:
        record = {"people": registry.person, "devices": registry.device, "groups": registry.group}[kind](key)
    if record is None:
        raise Problem(404, "Not Found", f"no {noun(kind)} {key}")
    return record


async def list_records(request: web.Request) -> web.Response:
    kind = _kind(request)
    registry = await request.app[REGISTRY].refresh()
    items = registry.records()[kind]
    region = request.query.get("region")
    if region is not None:
        if registry.region(region) is None:
            raise Problem(400, "Bad query parameter", f"region {region} is not in the registry")
        within = set(registry.subtree([region]))
        items = [r for r in items if (r.code if kind == "regions" else r.region) in within]
    role = request.query.get("role")
    if role is not None:
        items = [r for r in items if getattr(r, "role", None) == role]
    start = int_param(request, "cursor", 0, 0, 10**9)
    limit = int_param(request, "limit", 100, 1, 1000)
    page = items[start:start + limit]
    more = start + limit < len(items)
    views = [_view(r, request[ROLE]) for r in page]
    if kind == "devices":
        await _with_presence(request, views)
    return web.json_response({"items": views, "total": len(items), "next": str(start + limit) if more else None},
                             dumps=dumps)


async def get_record(request: web.Request) -> web.Response:
    registry = await request.app[REGISTRY].refresh()
    view = _view(_find(registry, _kind(request), request.match_info["key"]), request[ROLE])
    if _kind(request) == "devices":
        await _with_presence(request, [view])
    return web.json_response(view, dumps=dumps)


async def _with_presence(request: web.Request, devices: list[dict]) -> None:
    """Each gateway's online or offline state and since when, as it last reported."""
    if not devices:
        return
    said = await request.app[REDIS].hmget(request.app[KEYS].gateways, [d["id"] for d in devices])
    for device, value in zip(devices, said):
        state, _, since = (value.decode() if value else "unknown\t").partition("\t")
        device["status"] = state
        device["status_at"] = float(since) if since else None


async def create_record(request: web.Request) -> web.Response:
    kind = _kind(request)
    record = await _record_body(request, kind)
    registry = await request.app[REGISTRY].refresh(now=True)
    try:
        _find(registry, kind, key_of(record))
    except Problem:
        pass
    else:
        raise Problem(409, "Conflict", f"{noun(kind)} {key_of(record)} exists: PUT replaces it")
    await _write(request, kind, record)
    return web.json_response(_view(record, request[ROLE]), status=201, dumps=dumps)


async def replace_record(request: web.Request) -> web.Response:
    kind = _kind(request)
    record = await _record_body(request, kind, key=request.match_info["key"])
    created = await _write(request, kind, record)
    return web.json_response(_view(record, request[ROLE]), status=201 if created else 200, dumps=dumps)


async def delete_record(request: web.Request) -> web.Response:
    kind, key = _kind(request), request.match_info["key"]
    live = request.app[REGISTRY]
    registry = await live.refresh(now=True)
    _find(registry, kind, key)
    remaining = {k: [r for r in v if not (k == kind and key_of(r) == key)] for k, v in registry.records().items()}
    try:
        Registry.from_records(remaining["regions"], remaining["people"], remaining["groups"], remaining["devices"])
    except RegistryError as exc:
        raise Problem(409, "Still referenced", f"{noun(kind)} {key} cannot go: {exc}") from exc
    await _store_write(request, {}, {kind: [key]}, f"delete {noun(kind)} {key}", live.version)
    return web.Response(status=204)


async def _record_body(request: web.Request, kind: str, key: str | None = None) -> BaseModel:
    data = await json_body(request)
    if not isinstance(data, dict):
        raise Problem(422, "Invalid request", "send one record as a JSON object")
    field = "code" if kind == "regions" else "id"
    if key is not None:
        if data.setdefault(field, key) != key:
            raise Problem(422, "Invalid request", f"{field} {data[field]!r} is not the {field} in the path ({key})")
    return validated(MODELS[kind], data)


async def _write(request: web.Request, kind: str, record: BaseModel) -> bool:
    """Check one record against the registry and store it; returns whether it is new."""
    live = request.app[REGISTRY]
    registry = await live.refresh(now=True)
    try:
        change = plan(registry, Batch("request", {kind: [(None, record)]}))
    except ImportFailed as exc:
        raise Problem(422, "Invalid request", "; ".join(p.message for p in exc.problems),
                      errors=[{"path": noun(kind), "message": p.message} for p in exc.problems]) from exc
    new = change.summary[kind]["added"] == 1
    verb = "add" if new else "replace"
    await _store_write(request, change.upserts, change.removals, f"{verb} {noun(kind)} {key_of(record)}",
                       live.version)
    return new


async def _store_write(request: web.Request, upserts: dict, removals: dict, note: str, version: int) -> None:
    live = request.app[REGISTRY]
    try:
        await live.store.write(upserts, removals, by=request[ROLE], note=note, expect=version)
    except Conflict as exc:
        raise Problem(409, "Conflict", str(exc)) from exc
    await live.refresh(now=True)


async def registry_audit(request: web.Request) -> web.Response:
    registry = await request.app[REGISTRY].refresh()
    return web.json_response(await readiness(registry, request.app[REDIS], request.app[KEYS]), dumps=dumps)
