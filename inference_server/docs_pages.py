"""``GET /`` (where things are) and ``/docs`` (Swagger UI, served from this machine, never from a CDN).

A browser cannot send ``Authorization: Bearer`` when a person opens a page, so the docs work as Jupyter's do: open
``/docs?token=<token>`` once; the server checks the token, answers with a redirect to ``/docs`` (the token leaves
the address bar) and sets an HttpOnly, ``SameSite=Strict`` cookie holding an HMAC of the token, never the token
itself. ``GuardMiddleware`` accepts that cookie like the bearer header. Cross-site use stays impossible: a strict
cookie is not sent on requests started by another site, and a foreign ``Origin`` or ``Host`` is refused first.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from . import __version__
from .errors import NotFound

COOKIE_NAME = "strata_docs"
DOCS_PATH = "/docs"
STATIC_PREFIX = "/docs/static/"
_STATIC_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png")


def cookie_value(token: str) -> str:
    """What the docs cookie holds: a keyed hash of the token (a leaked cookie does not reveal the token)."""
    return hmac.new(token.encode("utf-8"), b"strata docs session", hashlib.sha256).hexdigest()


def cookie_header(token: str) -> bytes:
    return (f"{COOKIE_NAME}={cookie_value(token)}; Path=/; HttpOnly; SameSite=Strict").encode("latin-1")


def presented_cookie(cookie_header_value: bytes) -> bytes:
    """The docs cookie's value from a ``Cookie`` header, or b''."""
    for part in cookie_header_value.split(b";"):
        name, _, value = part.strip().partition(b"=")
        if name == COOKIE_NAME.encode():
            return value.strip()
    return b""


def _static_dir() -> Path | None:
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).parent / "static"


def add_docs_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def root():
        return {
            "name": "Strata inference server",
            "version": __version__,
            "docs": DOCS_PATH,
            "openapi": "/openapi.json",
            "health": "/v1/health",
            "jobs": "/v1/jobs",
            "exports": ["/v1/exports/pptx", "/v1/exports/psd"],
            "auth": "every request needs 'Authorization: Bearer <token>'; in a browser open /docs?token=<token> once",
        }

    @app.get(DOCS_PATH, include_in_schema=False)
    def docs():
        if _static_dir() is None:
            return HTMLResponse("<p>The interactive docs need the fastapi-offline package (pip install "
                                "fastapi-offline); the schema is at <a href='/openapi.json'>/openapi.json</a>.</p>",
                                status_code=503)
        page = get_swagger_ui_html(openapi_url="/openapi.json", title="Strata inference server — API",
                                   swagger_js_url=STATIC_PREFIX + "swagger-ui-bundle.js",
                                   swagger_css_url=STATIC_PREFIX + "swagger-ui.css",
                                   swagger_favicon_url=STATIC_PREFIX + "favicon.png")
        page.headers["Cache-Control"] = "no-store"
        page.headers["X-Frame-Options"] = "DENY"  # no framing by another page (clickjacking)
        return page

    @app.get(STATIC_PREFIX + "{name}", include_in_schema=False)
    def docs_static(name: str):
        folder = _static_dir()
        if folder is None or name not in _STATIC_FILES:
            raise NotFound(f"no docs file {name!r}")
        return FileResponse(folder / name)
