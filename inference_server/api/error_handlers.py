# SPDX-License-Identifier: GPL-3.0-or-later
"""Every error as JSON ``{"detail": "<a sentence that says what to do>"}``, with the right status."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match

from ..errors import QueueFull, StrataError


def _every_route(routes: Sequence[BaseRoute]) -> Iterable[Any]:
    """Every route, the included routers' too: FastAPI ≥ 0.165 keeps an included router as one node of
    ``app.router.routes`` (``iter_route_contexts`` walks into it); older versions copy its routes into the list."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:
        return routes
    return iter_route_contexts(routes)

QUEUE_FULL_RETRY_AFTER_S = 2


async def strata_error(request: Request, exc: StrataError) -> JSONResponse:
    # A full queue drains at about a job per few seconds on CPU; clients that honour Retry-After back off.
    headers = {"Retry-After": str(QUEUE_FULL_RETRY_AFTER_S)} if isinstance(exc, QueueFull) else None
    return JSONResponse({"detail": str(exc)}, status_code=exc.http_status, headers=headers)


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    # Still logged by Starlette; the client gets JSON like every other error.
    return JSONResponse({"detail": f"internal server error ({type(exc).__name__}); see the server log"},
                        status_code=500)


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body",))
        parts.append(f"{where}: {error.get('msg')}")
    return JSONResponse({"detail": "invalid request: " + "; ".join(parts)}, status_code=400)


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette names only the first route that matched the path; GET and POST /v1/jobs are two routes.
        allowed: set[str] = set()
        for route in _every_route(request.app.router.routes):
            if route.matches(request.scope)[0] != Match.NONE:
                allowed |= set(getattr(route, "methods", None) or ())
        headers["Allow"] = ", ".join(sorted(allowed))
    return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=headers)


def add_error_handlers(app: FastAPI) -> None:
    # The decorator form: Starlette's add_exception_handler is typed for handlers of any Exception.
    app.exception_handler(StrataError)(strata_error)
    app.exception_handler(Exception)(internal_error)
    app.exception_handler(RequestValidationError)(validation_error)
    app.exception_handler(StarletteHTTPException)(http_error)
