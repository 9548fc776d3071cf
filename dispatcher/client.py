"""The CLI's client side: post an alert to a running Shaozi and follow it; show a summary."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

END_STATES = ("settled", "cancelled", "expired")
ORDER = ("queued", "sending", "sent", "delivered", "acknowledged", "failed", "undeliverable", "cancelled", "expired")


class ClientError(RuntimeError):
    pass


async def _request(session: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[int, Any]:
    async with session.request(method, url, **kw) as resp:
        data = await resp.json(content_type=None)
        if resp.status >= 400:
            detail = data.get("detail") or data.get("title") if isinstance(data, dict) else data
            raise ClientError(f"{resp.status}: {detail}")
        return resp.status, data


async def region_names(session: aiohttp.ClientSession, base_url: str, codes: list[str]) -> str:
    """The registry's names of region codes, for an area description ("六指街道、长轩岭街道")."""
    _, tree = await _request(session, "GET", f"{base_url}/v1/regions")
    names: dict[str, str] = {}
    stack = list(tree["items"])
    while stack:
        region = stack.pop()
        names[region["code"]] = region["name"]
        stack.extend(region.get("children", []))
    return "、".join(names.get(code, code) for code in codes)


async def send_alert(base_url: str, key: str, alert: dict, *, follow: bool, out=sys.stdout) -> dict:
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        area = alert["info"]["area"]
        if not area.get("areaDesc"):
            area["areaDesc"] = await region_names(session, base_url, area["regions"])
        status, accepted = await _request(session, "POST", f"{base_url}/v1/alerts", json=alert)
        note = " (a duplicate of an earlier post)" if accepted.get("duplicate") else ""
        print(f"alert {accepted['id']} accepted{note}: {accepted['url']}", file=out)
        if accepted.get("recipients_hint"):
            print(f"note: {accepted['recipients_hint']}", file=out)
        if not follow:
            return accepted
        return await follow_alert(session, base_url, accepted["id"], out=out)


async def follow_alert(session: aiohttp.ClientSession, base_url: str, alert_id: str, *, out=sys.stdout,
                       poll_s: float = 0.3) -> dict:
    while True:
        _, summary = await _request(session, "GET", f"{base_url}/v1/alerts/{alert_id}")
        totals = summary["totals"]
        total = sum(totals.values())
        done = total - totals.get("queued", 0) - totals.get("sending", 0)
        _progress(done, total, summary["state"], out)
        if summary["state"] in END_STATES:
            print(file=out)
            print(render_summary(summary), file=out)
            return summary
        await asyncio.sleep(poll_s)


def _progress(done: int, total: int, state: str, out) -> None:
    width = 30
    finished = state in END_STATES
    filled = (width if finished else 0) if total == 0 else int(width * done / total)
    pct = (100 if finished else 0) if total == 0 else int(100 * done / total)
    out.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {pct:3d}% {done}/{total} {state:<12}")
    out.flush()


async def show_alert(base_url: str, key: str, alert_id: str) -> str:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as session:
        _, summary = await _request(session, "GET", f"{base_url}/v1/alerts/{alert_id}")
    return render_summary(summary)


def render_summary(summary: dict) -> str:
    info = (summary["alert"].get("info") or [{}])[0]
    lines = [
        f"alert {summary['id']}  {summary['state']}  priority {summary['priority']}",
        f"{info.get('severity', '')} {info.get('event', '')}: {info.get('headline', '')}".strip(),
        summary["summary"],
        "",
    ]
    states = [s for s in ORDER if s in summary["totals"]]
    if not states:
        return "\n".join(lines).rstrip()
    header = ["channel", *states, "total"]
    rows = [[ch, *(str(c.get(s, 0)) for s in states), str(sum(c.values()))]
            for ch, c in sorted(summary["counts"].items())]
    rows.append(["all", *(str(summary["totals"].get(s, 0)) for s in states), str(sum(summary["totals"].values()))])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        lines.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


async def show_silent(base_url: str, key: str, alert_id: str) -> str:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as session:
        _, data = await _request(session, "GET", f"{base_url}/v1/alerts/{alert_id}/silent")
    return render_silent(data)


def render_silent(data: dict) -> str:
    """Who has not acknowledged, street by street (most silent first), with what was tried."""
    lines = [f"alert {data['alert_id']}: {data['silent']} of {data['recipients']} recipients have not acknowledged"]
    for street in data["streets"]:
        lines.append(f"{street['name'] or street['code'] or '(no street)'}  {street['silent']} silent")
        for community in street["communities"]:
            lines.append(f"  {community['name'] or community['code'] or '(no community)'}")
            for person in community["people"]:
                tried = ", ".join(_tried(t) for t in person["tried"])
                lines.append(f"    {person['name']} [{person['id']}]: {tried}")
    return "\n".join(lines)


def _tried(t: dict) -> str:
    """One receipt of a silent person: 'sms delivered', 'step 4 backup → 李四 sms sent'."""
    said = f"{t['channel']} {t['state']}" + (f" ({t['error']})" if t["error"] else "")
    step = t.get("escalation")
    if step is None:
        return said
    to = f" → {t['to']}" if step["action"] == "backup" else ""
    return f"step {step['step']} {step['action']}{to} {said}"


async def import_registry(base_url: str, key: str, path: Path, *, kind: str | None = None, dry_run: bool = False,
                          replace: bool = False) -> str:
    """Post a registry file; returns what changed (or would), or ClientError with every problem."""
    media = "application/yaml" if path.suffix.lower() in (".yaml", ".yml", ".json") else "text/csv"
    params = {"file": path.name, **({"kind": kind} if kind else {}), **({"dry_run": "1"} if dry_run else {}),
              **({"replace": "1"} if replace else {})}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as session:
        async with session.post(f"{base_url}/v1/registry:import", params=params, data=path.read_bytes(),
                                headers={"Content-Type": media}) as resp:
            data = await resp.json(content_type=None)
    if resp.status == 422:
        lines = [f"{e['file']} line {e['line']}: {e['message']}" if e.get("line") else f"{e['file']}: {e['message']}"
                 for e in data.get("errors", [])]
        raise ClientError("\n".join([f"{data['detail']}:", *lines]))
    if resp.status >= 400:
        raise ClientError(f"{resp.status}: {data.get('detail') or data.get('title')}")
    verb = "would change" if data["dry_run"] else f"changed (registry version {data['version']})"
    rows = [f"{kind:<8} " + ", ".join(f"{n} {what}" for what, n in counts.items())
            for kind, counts in data["changes"].items() if any(counts.values())]
    return "\n".join([f"{data['file']} {verb}:", *rows])


async def export_registry(base_url: str, key: str, kind: str | None = None) -> str:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as session:
        async with session.get(f"{base_url}/v1/registry:export", params={"kind": kind} if kind else {}) as resp:
            text = await resp.text()
            if resp.status >= 400:
                raise ClientError(f"{resp.status}: {text}")
            return text


async def show_audit(base_url: str, key: str) -> str:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as session:
        _, data = await _request(session, "GET", f"{base_url}/v1/registry/audit")
    return render_audit(data)


def render_audit(data: dict) -> str:
    """The readiness audit as a table, worst first."""
    lines = [f"{data['ready']} of {data['total']} communities ready",
             f"{'community':<24}{'officers':>9}{'loudspeakers':>14}{'groups':>8}  {'last drill':<17}missing"]
    for c in data["communities"]:
        drill = time.strftime("%Y-%m-%d %H:%M", time.localtime(c["last_drill_ack"])) if c["last_drill_ack"] else "never"
        speakers = f"{c['loudspeakers_online']}/{c['loudspeakers']} on"
        lines.append(f"{c['name'] + ' ' + c['code']:<24}{c['info_officers']:>9}{speakers:>14}{c['chat_groups']:>8}  "
                     f"{drill:<17}{', '.join(c['missing']) or '-'}")
    lines.append(f"{'street':<24}{'duty':>9}{'staff':>14}  missing")
    for s in data["streets"]:
        lines.append(f"{s['name'] + ' ' + s['code']:<24}{s['duty_officers']:>9}{s['staff']:>14}  "
                     f"{', '.join(s['missing']) or '-'}")
    return "\n".join(lines)
