"""The registry over HTTP: import a file (CSV or YAML, with a dry run), export it, and the log
of changes. Every problem of a refused file comes back at once, with its file and line."""

from __future__ import annotations

from aiohttp import web

from contacts.imports import COLUMNS, ImportFailed, plan, read, to_csv, to_yaml
from contacts.store import Conflict
from dispatcher.app_state import REGISTRY, ROLE
from dispatcher.codec import dumps
from dispatcher.problems import Problem

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
    try:
        change = plan(registry, read(await request.read(), file, kind), replace=replace)
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
