"""Errors as RFC 9457 problem details (``application/problem+json``)."""

from __future__ import annotations

from dispatcher.codec import dumps
from typing import Any

import structlog
from aiohttp import web

log = structlog.get_logger("shaozi.api")

PROBLEM_TYPE = "application/problem+json"


class Problem(Exception):
    """Raise anywhere in a handler to answer with a problem document."""

    def __init__(self, status: int, title: str, detail: str | None = None, *,
                 errors: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}

    def response(self) -> web.Response:
        body: dict[str, Any] = {"type": "about:blank", "title": self.title, "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        if self.errors:
            body["errors"] = self.errors
        return web.Response(status=self.status, text=dumps(body),
                            content_type=PROBLEM_TYPE, headers=self.headers)


def pydantic_errors(exc: Any) -> list[dict[str, Any]]:
    """A pydantic ValidationError's errors with dotted field paths, without echoing input."""
    return [{"path": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]} for e in exc.errors()]


@web.middleware
async def problem_middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as problem:
        return problem.response()
    except web.HTTPRequestEntityTooLarge as exc:
        return Problem(413, "Request body too large", exc.text).response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return Problem(exc.status, exc.reason, headers=headers).response()
    except Exception:
        log.exception("unhandled error", path=request.path, method=request.method)
        return Problem(500, "Internal Server Error", "the error was logged").response()
