# SPDX-License-Identifier: GPL-3.0-or-later
"""``/v1/jobs``: submit a decomposition, follow it, cancel it, fetch its files; ``/v1/health``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from starlette.datastructures import UploadFile

from .. import __version__
from ..depth import depth_file_name
from ..errors import InvalidInput, NotFound
from ..image_input import load_image
from ..job_manager import JobManager
from ..layers import MANIFEST_NAME, PREVIEW_NAME, layer_file_name
from .models import Health, JobCreated, JobList, JobStatus, error_responses
from .request_helpers import Manager, ServerSettings, parse_params, read_form

router = APIRouter()

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


@router.post("/v1/jobs", status_code=202, response_model=JobCreated,
             responses=error_responses(400, 404, 413, 429, 503, 507), summary="Submit a decomposition job",
             openapi_extra=_JOB_BODY)
async def submit_job(request: Request, manager: Manager, settings: ServerSettings):
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
        params_dict = parse_params(params)
        data = await image.read() if image is not None else None
    finally:
        await form.close()
    max_pixels = settings.max_pixels
    loader = (lambda: load_image(data, max_pixels=max_pixels)) if data is not None else None
    record = await run_in_threadpool(manager.submit, params_dict, loader)
    return {"id": record["id"], "status": record["status"]}


@router.get("/v1/jobs", response_model=JobList, responses=error_responses(), summary="All jobs, oldest first")
def list_jobs(manager: Manager):
    return {"jobs": manager.all_jobs()}


@router.get("/v1/jobs/{job_id}", response_model=JobStatus, responses=error_responses(404),
            summary="Status and progress")
def get_job(job_id: str, manager: Manager):
    return manager.get(job_id)


@router.post("/v1/jobs/{job_id}/cancel", response_model=JobStatus, responses=error_responses(404, 409),
             summary="Cancel a queued or running job")
def cancel_job(job_id: str, manager: Manager):
    return manager.cancel(job_id)


def _job_file(manager: JobManager, job_id: str, name: str) -> Path:
    path = manager.job_folder(job_id) / name
    if not path.is_file():
        raise NotFound(f"{name} of job {job_id} is missing on disk (was the job folder edited or deleted?)")
    return path


def _check_layer_index(manager: JobManager, job_id: str, index: int) -> None:
    manager.job_folder(job_id)  # 404/409 before talking about layers
    count = int(manager.get(job_id).get("layers") or 0)
    if not 0 <= index < count:
        raise NotFound(f"job {job_id} has {count} layers (0–{count - 1}); there is no layer {index}")


@router.get("/v1/jobs/{job_id}/manifest", responses=error_responses(404, 409),
            summary="The finished job's manifest.json")
def get_manifest(job_id: str, manager: Manager) -> dict[str, Any]:
    return json.loads(_job_file(manager, job_id, MANIFEST_NAME).read_text("utf-8"))


@router.get("/v1/jobs/{job_id}/preview.png", response_class=FileResponse,
            responses={200: _PNG, **error_responses(404, 409)}, summary="Composite of all layers")
def get_preview(job_id: str, manager: Manager):
    return FileResponse(_job_file(manager, job_id, PREVIEW_NAME), media_type="image/png")


@router.get("/v1/jobs/{job_id}/layers/{index}.png", response_class=FileResponse,
            responses={200: _PNG, **error_responses(400, 404, 409)}, summary="One RGBA layer (0 = back)")
def get_layer(job_id: str, index: int, manager: Manager):
    _check_layer_index(manager, job_id, index)
    return FileResponse(_job_file(manager, job_id, layer_file_name(index)), media_type="image/png")


@router.get("/v1/jobs/{job_id}/depth/{index}.png", response_class=FileResponse,
            responses={200: _PNG, **error_responses(400, 404, 409)},
            summary="One layer's depth map (16-bit, 0 = farthest; jobs run with depth: true)")
def get_depth(job_id: str, index: int, manager: Manager):
    _check_layer_index(manager, job_id, index)
    if not manager.get(job_id).get("params", {}).get("depth"):
        raise NotFound(f"job {job_id} was run without depth; submit it with params {{\"depth\": true}}")
    return FileResponse(_job_file(manager, job_id, depth_file_name(index)), media_type="image/png")


@router.get("/v1/health", response_model=Health, responses=error_responses(), summary="Backend, device, queue")
def health(manager: Manager):
    return {"status": "ok", "version": __version__, **manager.health()}
