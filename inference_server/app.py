# SPDX-License-Identifier: GPL-3.0-or-later
"""The HTTP API: a FastAPI app built by ``create_app(settings)`` (nothing is created at import time) from the parts in
``inference_server.api``: the job, export and docs routers, GuardMiddleware (token, Origin/Host, body size; see
``api/security.py`` for the security model) and the JSON error handlers.
Errors are always JSON ``{"detail": "<a sentence that says what to do>"}``.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from . import __version__
from .api import docs_routes, export_routes, job_routes
from .api.error_handlers import add_error_handlers
from .api.openapi import StrataAPI
from .api.security import GuardMiddleware
from .api.settings import Settings
from .job_manager import JobManager

__all__ = ["Settings", "create_app"]


def create_app(settings: Settings) -> FastAPI:
    manager = JobManager(settings.manager_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(manager.start)
        try:
            yield
        finally:
            await run_in_threadpool(manager.close)

    app = StrataAPI(
        title="Strata inference server",
        version=__version__,
        description="Decompose one flat image into RGBA layers. Every request needs `Authorization: Bearer <token>`.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's docs pages load scripts from a CDN: docs_routes serves them from this machine
        redoc_url=None,
    )
    app.state.manager = manager
    app.state.settings = settings
    add_error_handlers(app)
    app.include_router(job_routes.router)
    app.include_router(export_routes.router)
    app.include_router(docs_routes.router)
    app.add_middleware(GuardMiddleware, token=settings.token, allow_remote=settings.allow_remote,
                       max_upload_bytes=settings.max_upload_bytes)
    return app
