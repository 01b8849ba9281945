"""The HTTP API: a FastAPI app built by ``create_app(settings)`` (nothing is created at import time).

Security model (a local tool that a web page must not be able to drive):
  * the server binds 127.0.0.1 unless started with ``--allow-remote`` and a token from the environment;
  * every request needs ``Authorization: Bearer <token>`` (compared in constant time);
  * a request carrying a foreign ``Origin`` (any web page other than one served from loopback) gets 403, and while
    bound to loopback a ``Host`` other than 127.0.0.1/localhost/[::1] gets 403 (DNS rebinding);
  * request bodies are capped (413) before any parsing.
Errors are always JSON ``{"detail": "<a sentence that says what to do>"}``.
"""

from __future__ import annotations

import hmac
import importlib.util
import json
import re
import urllib.parse
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from . import __version__, docs_pages
from .depth import depth_file_name
from .errors import InvalidInput, NotFound, QueueFull, StrataError
from .images import DEFAULT_MAX_PIXELS, load_image
from .jobs import JobManager, ManagerSettings
from .layers import MANIFEST_NAME, PREVIEW_NAME, layer_file_name

DEFAULT_MAX_UPLOAD_BYTES = 64 * 1024 * 1024
QUEUE_FULL_RETRY_AFTER_S = 2
_LOCAL_ORIGIN = re.compile(r"^http://(127\.0\.0\.1|localhost|\[::1\])(:\d{1,5})?$")
_LOCAL_HOST = re.compile(r"^(127\.0\.0\.1|localhost|\[::1\])(:\d{1,5})?$")


@dataclass
class Settings:
    data_dir: Path
    token: str
    backend: str = "auto"
    backend_options: dict[str, Any] = field(default_factory=dict)
    preset: str | None = None
    max_queue: int = 8
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    allow_remote: bool = False
    cancel_grace_s: float = 30.0
    ray: Any = None  # ray_runner.RaySettings for strata serve --ray

    def manager_settings(self) -> ManagerSettings:
        return ManagerSettings(
            data_dir=Path(self.data_dir), backend=self.backend, backend_options=dict(self.backend_options),
            preset=self.preset, max_queue=self.max_queue, max_pixels=self.max_pixels,
            cancel_grace_s=self.cancel_grace_s, ray=self.ray,
        )


# ------------------------------------------------------------------ response models (for an accurate OpenAPI schema)


class ErrorBody(BaseModel):
    detail: str


class JobCreated(BaseModel):
    id: str
    status: Literal["queued"]


class JobStatus(BaseModel):
    id: str
    status: Literal["queued", "running", "succeeded", "failed", "canceled"]
    stage: str | None = None
    step: int = 0
    total: int = 0
    error: str | None = None
    layers: int | None = None
    params: dict[str, Any]
    parent: dict[str, Any] | None = None
    children: dict[str, list[str]] = {}
    notes: list[str] = []
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    cancel_requested: bool | None = None


class JobList(BaseModel):
    jobs: list[JobStatus]


class Health(BaseModel):
    status: Literal["ok"]
    backend: str
    device: str
    model_loaded: bool
    backend_error: str | None = None
    tier: dict[str, Any] | None = Field(
        None, description="qwen VRAM tier: tier, formats, summary ('16 GB tier: 4-bit transformer ...'), reason")
    transformer: str | None = Field(None, description="GGUF transformer file, when one is used")
    version: str
    queue_length: int
    running: str | None = None
    worker_pid: int | None = None
    worker_restarts: int = 0
    runner: Literal["local", "ray"] = "local"
    running_jobs: list[str] = []
    # strata serve --ray: the replicas that have run jobs (name, pid, node_ip, job, jobs_done, peak_rss_mib)
    replicas: list[dict[str, Any]] | None = None


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    reasons = {
        400: "bad parameter or image", 401: "missing or wrong bearer token", 403: "foreign Origin or Host",
        404: "no such job or layer", 409: "the job is not in a state that allows this",
        413: "upload or image too large",
        429: "queue full", 503: "model unavailable", 507: "the data folder cannot be written (disk full?)",
    }
    # 401/403/413 and the general 400 come from GuardMiddleware and are added to every operation by StrataAPI.openapi.
    declared: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody, "description": reasons[code]}
                                                 for code in codes}
    return declared


_PNG = {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}, "description": "PNG image"}


# The multipart body of POST /v1/jobs, declared by hand: FastAPI would describe an optional file as "binary or null",
# which no multipart client can send, and clients (schemathesis included) would then send the picture as text.
_JOB_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {
    "schema": {"type": "object", "additionalProperties": False, "properties": {
        "image": {"type": "string", "format": "binary",
                  "description": "the picture (PNG, JPEG, WebP, GIF, BMP, TIFF); leave it out for a recursive job"},
        "params": {"type": "string", "contentMediaType": "application/json",
                   "description": 'JSON object of decomposition parameters, e.g. {"layers": 4}; a recursive job '
                                  'names parent_job and parent_layer'},
    }},
    "encoding": {"image": {"contentType": "image/png, image/jpeg, image/webp, image/gif, image/bmp, image/tiff"},
                 "params": {"contentType": "application/json"}},
}}}}


async def read_form(request: Request, **limits: int):
    """The request's multipart form (Starlette's parser, with ``limits``); a body that is not one is a 400."""
    try:
        return await request.form(**limits)
    except StarletteHTTPException:
        raise  # Starlette's own 400s (too many files or fields, a part over max_part_size) say what is wrong
    except Exception as error:  # python-multipart raises several types for a malformed body
        raise InvalidInput(f"expected a multipart/form-data body ({error})") from None


# ------------------------------------------------------------------ guard middleware (pure ASGI: sees the raw body)


def _json_response(status: int, detail: str, extra_headers: list | None = None):
    body = json.dumps({"detail": detail}).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return {"type": "http.response.start", "status": status, "headers": headers + (extra_headers or [])}, body


class GuardMiddleware:
    """Origin/Host checks, bearer token, body size cap. Runs before routing, so it covers every path."""

    def __init__(self, app, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.token = settings.token.encode("utf-8")
        self.docs_cookie = docs_pages.cookie_value(settings.token).encode("ascii")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {}
        for key, value in scope.get("headers", []):
            headers.setdefault(key.decode("latin-1").lower(), value)

        async def reject(status: int, detail: str, extra=None):
            start, body = _json_response(status, detail, extra)
            await send(start)
            await send({"type": "http.response.body", "body": body})

        origin = headers.get("origin")
        if origin is not None and not _LOCAL_ORIGIN.match(origin.decode("latin-1")):
            return await reject(403, f"cross-site request refused: Origin {origin.decode('latin-1')!r} is not this "
                                     f"machine; only local clients may use the Strata server")
        host = headers.get("host")
        if not self.settings.allow_remote and host is not None and not _LOCAL_HOST.match(host.decode("latin-1")):
            return await reject(403, f"Host {host.decode('latin-1')!r} refused: this server answers only to "
                                     f"127.0.0.1/localhost (start it with --allow-remote to serve other names)")
        if scope["path"] == docs_pages.DOCS_PATH and scope["method"] == "GET":
            query_token = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
            if query_token:
                # /docs?token=...: a browser's way in. Checked like the header, then traded for the docs cookie
                # and a redirect that takes the token out of the address bar.
                if not hmac.compare_digest(query_token[0].encode("utf-8"), self.token):
                    return await reject(401, "wrong token in /docs?token=...; use the token the server printed or "
                                             "STRATA_TOKEN")
                await send({"type": "http.response.start", "status": 303, "headers": [
                    (b"location", docs_pages.DOCS_PATH.encode()), (b"content-length", b"0"),
                    (b"set-cookie", docs_pages.cookie_header(self.settings.token)),
                    (b"cache-control", b"no-store")]})
                await send({"type": "http.response.body", "body": b""})
                return
        authorization = headers.get("authorization", b"")
        scheme, _, presented = authorization.partition(b" ")
        # The scheme is case-insensitive (RFC 7235); the token is compared in constant time.
        bearer_ok = scheme.lower() == b"bearer" and hmac.compare_digest(presented.strip(), self.token)
        cookie = docs_pages.presented_cookie(headers.get("cookie", b""))
        if not bearer_ok and not (cookie and hmac.compare_digest(cookie, self.docs_cookie)):
            reason = "missing" if not authorization else "wrong"
            return await reject(401, f"{reason} bearer token: send 'Authorization: Bearer <token>' with the token the "
                                     f"server printed or STRATA_TOKEN (in a browser: open /docs?token=<token>)",
                                [(b"www-authenticate", b"Bearer")])

        limit = self.settings.max_upload_bytes
        declared = headers.get("content-length")
        if declared is not None:
            try:
                declared_bytes = int(declared)
            except ValueError:
                return await reject(400, "Content-Length is not a number")
            if declared_bytes > limit:
                return await reject(413, f"request body is {declared_bytes / 2**20:.1f} MiB; the limit is "
                                         f"{limit / 2**20:.1f} MiB (start the server with a larger --max-upload-mib)")
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)

        # Read the whole body here (bounded), so chunked uploads without Content-Length are capped too.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return await reject(413, f"request body exceeds the {limit / 2**20:.1f} MiB limit (start the server "
                                         f"with a larger --max-upload-mib)")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


# ------------------------------------------------------------------ the app


def _parse_params(text: str | None) -> dict[str, Any]:
    if text is None or text.strip() == "":
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"params must be a JSON object such as {{\"layers\": 4}}; could not parse it: "
                           f"{exc}") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"params must be a JSON object such as {{\"layers\": 4}}, got {type(value).__name__}")
    return value


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
        docs_url=None,  # FastAPI's docs pages load scripts from a CDN: docs_pages serves them from this machine
        redoc_url=None,
    )
    app.state.manager = manager
    app.state.settings = settings

    @app.exception_handler(StrataError)
    async def strata_error(request: Request, exc: StrataError):
        # A full queue drains at about a job per few seconds on CPU; clients that honour Retry-After back off.
        headers = {"Retry-After": str(QUEUE_FULL_RETRY_AFTER_S)} if isinstance(exc, QueueFull) else None
        return JSONResponse({"detail": str(exc)}, status_code=exc.http_status, headers=headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        # Still logged by Starlette; the client gets JSON like every other error.
        return JSONResponse({"detail": f"internal server error ({type(exc).__name__}); see the server log"},
                            status_code=500)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        parts = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body",))
            parts.append(f"{where}: {error.get('msg')}")
        return JSONResponse({"detail": "invalid request: " + "; ".join(parts)}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names only the first route that matched the path; GET and POST /v1/jobs are two routes.
            allowed = set()
            for route in request.app.router.routes:
                if route.matches(request.scope)[0] != Match.NONE:
                    allowed |= set(getattr(route, "methods", None) or ())
            headers["Allow"] = ", ".join(sorted(allowed))
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=headers)

    @app.post("/v1/jobs", status_code=202, response_model=JobCreated, responses=_errors(400, 404, 413, 429, 503, 507),
              summary="Submit a decomposition job", openapi_extra=_JOB_BODY)
    async def submit_job(request: Request):
        form = await read_form(request, max_files=4, max_fields=8)
        try:
            unknown = sorted(set(form.keys()) - {"image", "params"})
            if unknown:
                raise InvalidInput(f"unknown form field(s): {', '.join(unknown)}; send 'image' (file) and "
                                   f"'params' (JSON)")
            image, params = form.get("image"), form.get("params")
            if image is not None and not isinstance(image, UploadFile):
                raise InvalidInput("'image' arrived as a text field; send the picture as a file part (with a filename, "
                                   "as curl -F image=@photo.png does)")
            if isinstance(params, UploadFile):  # curl -F params=@params.json
                params = (await params.read()).decode("utf-8", "replace")
            params_dict = _parse_params(params)
            data = await image.read() if image is not None else None
        finally:
            await form.close()
        loader = (lambda: load_image(data, max_pixels=settings.max_pixels)) if data is not None else None
        record = await run_in_threadpool(manager.submit, params_dict, loader)
        return {"id": record["id"], "status": record["status"]}

    @app.get("/v1/jobs", response_model=JobList, responses=_errors(), summary="All jobs, oldest first")
    def list_jobs():
        return {"jobs": manager.all_jobs()}

    @app.get("/v1/jobs/{job_id}", response_model=JobStatus, responses=_errors(404), summary="Status and progress")
    def get_job(job_id: str):
        return manager.get(job_id)

    @app.post("/v1/jobs/{job_id}/cancel", response_model=JobStatus, responses=_errors(404, 409),
              summary="Cancel a queued or running job")
    def cancel_job(job_id: str):
        return manager.cancel(job_id)

    def job_file(job_id: str, name: str) -> Path:
        path = manager.job_folder(job_id) / name
        if not path.is_file():
            raise NotFound(f"{name} of job {job_id} is missing on disk (was the job folder edited or deleted?)")
        return path

    @app.get("/v1/jobs/{job_id}/manifest", responses=_errors(404, 409), summary="The finished job's manifest.json")
    def get_manifest(job_id: str) -> dict[str, Any]:
        return json.loads(job_file(job_id, MANIFEST_NAME).read_text("utf-8"))

    @app.get("/v1/jobs/{job_id}/preview.png", response_class=FileResponse, responses={200: _PNG, **_errors(404, 409)},
             summary="Composite of all layers")
    def get_preview(job_id: str):
        return FileResponse(job_file(job_id, PREVIEW_NAME), media_type="image/png")

    @app.get("/v1/jobs/{job_id}/layers/{index}.png", response_class=FileResponse,
             responses={200: _PNG, **_errors(400, 404, 409)}, summary="One RGBA layer (0 = back)")
    def get_layer(job_id: str, index: int):
        manager.job_folder(job_id)  # 404/409 before talking about layers
        count = int(manager.get(job_id).get("layers") or 0)
        if not 0 <= index < count:
            raise NotFound(f"job {job_id} has {count} layers (0–{count - 1}); there is no layer {index}")
        return FileResponse(job_file(job_id, layer_file_name(index)), media_type="image/png")

    @app.get("/v1/jobs/{job_id}/depth/{index}.png", response_class=FileResponse,
             responses={200: _PNG, **_errors(400, 404, 409)},
             summary="One layer's depth map (16-bit, 0 = farthest; jobs run with depth: true)")
    def get_depth(job_id: str, index: int):
        manager.job_folder(job_id)
        count = int(manager.get(job_id).get("layers") or 0)
        if not 0 <= index < count:
            raise NotFound(f"job {job_id} has {count} layers (0–{count - 1}); there is no layer {index}")
        if not manager.get(job_id).get("params", {}).get("depth"):
            raise NotFound(f"job {job_id} was run without depth; submit it with params {{\"depth\": true}}")
        return FileResponse(job_file(job_id, depth_file_name(index)), media_type="image/png")

    @app.get("/v1/health", response_model=Health, responses=_errors(), summary="Backend, device, queue")
    def health():
        return {"status": "ok", "version": __version__, **manager.health()}

    if importlib.util.find_spec("inference_server.exports.routes") is not None:
        # Written by the exports part of the project; optional so the server runs while it is absent.
        from .exports.routes import router as exports_router

        app.include_router(exports_router)

    docs_pages.add_docs_routes(app)
    app.add_middleware(GuardMiddleware, settings=settings)
    return app


class StrataAPI(FastAPI):
    """FastAPI whose schema tells the truth about what GuardMiddleware and the error handlers add to every operation
    (the routers, including the exports router, need not repeat it): the bearer token, 401/403 on every route,
    413 on bodies, and 400 where FastAPI would document its 422 (our handler answers validation errors with 400)."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema:
            return self.openapi_schema
        schema = super().openapi()
        components = schema.setdefault("components", {})
        components.setdefault("securitySchemes", {})["bearer"] = {"type": "http", "scheme": "bearer"}
        components.setdefault("schemas", {})["ErrorBody"] = ErrorBody.model_json_schema()
        schema["security"] = [{"bearer": []}]
        error_ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
        for path, methods in schema.get("paths", {}).items():
            for method, operation in methods.items():
                responses = operation.setdefault("responses", {})
                added = {"401": "missing or wrong bearer token", "403": "foreign Origin or Host"}
                if "{job_id}" in path:  # JobManager: unknown or malformed id, job not finished
                    added.update({"404": "no such job", "409": "the job is not finished"})
                responses.pop("422", None)  # validation errors are answered with 400
                added["400"] = "bad parameter, body or header"
                if method in ("post", "put", "patch"):
                    added["413"] = "request body too large"
                for code, description in added.items():
                    responses.setdefault(code, {"description": description, **error_ref})
        self.openapi_schema = schema
        return schema
