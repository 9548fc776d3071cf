"""The ack page behind a signed link: ``GET /a/<token>`` shows the warning and one large
收到 button; ``POST`` acknowledges that receipt. Made for a phone, in Chinese, with nothing
loaded from elsewhere."""

from __future__ import annotations

import html
import time

import structlog
from aiohttp import web

from dispatcher.acklinks import AckLinkError
from dispatcher.app_state import ACK_LINKS, STORE
from dispatcher.receipts import Change, parse_receipt_id

log = structlog.get_logger("shaozi.ack")

PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:0;padding:1.2em;max-width:36em;line-height:1.6;color:#222}}
h1{{font-size:1.35em;margin:.2em 0}} .severity{{color:#b00;font-weight:bold}}
.box{{background:#f6f6f6;border-radius:8px;padding:.8em 1em;margin:1em 0}}
button{{width:100%;font-size:1.6em;padding:.7em;border:0;border-radius:10px;background:#c00;color:#fff}}
.done{{font-size:1.3em;color:#070;font-weight:bold}} .muted{{color:#666;font-size:.9em}}
</style></head><body>{body}</body></html>"""

SEVERITY = {"Extreme": "特别严重", "Severe": "严重", "Moderate": "较重", "Minor": "一般"}
PROBLEMS = {
    "expired": (410, "链接已过期", "这条确认链接已过期，预警已结束。This link has expired."),
    "forged": (403, "链接无效", "这条确认链接无效，请使用短信中的原始链接。This link is not valid."),
    "malformed": (400, "链接无效", "这条确认链接不完整，请使用短信中的原始链接。This link is incomplete."),
    "unknown": (404, "找不到预警", "找不到这条预警，它可能已被清理。This warning is no longer kept."),
}


def _page(title: str, body: str, status: int = 200) -> web.Response:
    response = web.Response(text=PAGE.format(title=html.escape(title), body=body), status=status,
                            content_type="text/html", charset="utf-8")
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _problem_page(reason: str) -> web.Response:
    status, title, text = PROBLEMS[reason]
    return _page(title, f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>", status)


async def _receipt(request: web.Request) -> tuple[str, int, dict, dict] | web.Response:
    try:
        alert_id, number = parse_receipt_id(request.app[ACK_LINKS].verify(request.match_info["token"]))
    except AckLinkError as exc:
        log.info("ack link refused", reason=exc.reason)
        return _problem_page(exc.reason)
    except ValueError:
        return _problem_page("malformed")
    store = request.app[STORE]
    doc, receipt = await store.doc(alert_id), await store.receipts.get(alert_id, number)
    if doc is None or receipt is None:
        return _problem_page("unknown")
    return alert_id, number, doc, receipt


def _warning(doc: dict) -> str:
    info = (doc["alert"].get("info") or [{}])[0]
    drill = "【演练】" if doc["alert"].get("status") == "Exercise" else ""
    severity = SEVERITY.get(info.get("severity", ""), info.get("severity", ""))
    parts = [f'<p class="severity">{drill}{html.escape(severity)} · {html.escape(info.get("event", ""))}</p>',
             f'<h1>{html.escape(info.get("headline") or info.get("event", ""))}</h1>']
    for key in ("description", "instruction"):
        if info.get(key):
            parts.append(f'<div class="box">{html.escape(info[key])}</div>')
    return "".join(parts)


async def show(request: web.Request) -> web.Response:
    found = await _receipt(request)
    if isinstance(found, web.Response):
        return found
    _, _, doc, receipt = found
    if receipt["s"] == "acknowledged":
        action = '<p class="done">✓ 已确认收到 Acknowledged</p>'
    else:
        action = ('<form method="post"><button type="submit">收到 / Acknowledge</button></form>'
                  f'<p class="muted">{html.escape(receipt["name"])}，请确认已收到此预警。</p>')
    return _page("预警确认", _warning(doc) + action)


async def acknowledge(request: web.Request) -> web.Response:
    found = await _receipt(request)
    if isinstance(found, web.Response):
        return found
    alert_id, number, doc, _ = found
    change = Change(number, "acknowledged", {"note": "acknowledged by link"})
    applied = (await request.app[STORE].receipts.apply(alert_id, [change], time.time()))[0]
    log.info("acknowledged by link", alert_id=alert_id, delivery_id=f"{alert_id}.{number}", new=applied)
    text = "✓ 已确认收到，谢谢。Acknowledged, thank you." if applied else "✓ 此前已确认过，无需再次确认。Already acknowledged."
    return _page("预警确认", _warning(doc) + f'<p class="done">{text}</p>')
