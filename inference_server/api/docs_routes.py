# SPDX-License-Identifier: GPL-3.0-or-later
"""``GET /`` (where things are) and ``/docs`` (Swagger UI, served from this machine, never from a CDN).

In a browser, open ``/docs?token=<token>`` once: ``security.GuardMiddleware`` trades the token for a docs cookie.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from .. import __version__
from ..errors import NotFound

DOCS_PATH = "/docs"
STATIC_PREFIX = "/docs/static/"
_STATIC_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png")

router = APIRouter(include_in_schema=False)


def _static_dir() -> Path | None:
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).parent / "static"


@router.get("/")
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


@router.get(DOCS_PATH)
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


@router.get(STATIC_PREFIX + "{name}")
def docs_static(name: str):
    folder = _static_dir()
    if folder is None or name not in _STATIC_FILES:
        raise NotFound(f"no docs file {name!r}")
    return FileResponse(folder / name)
