# SPDX-License-Identifier: GPL-3.0-or-later
"""Export routes (auth and the Origin check are app-wide middleware, ``security.GuardMiddleware``).

- ``GET /v1/jobs/{id}/export.pptx|export.psd|export.zip``: a finished job's layers (``?with_original=true`` adds the
  original image as a first slide to the PowerPoint).
- ``POST /v1/exports/pptx|psd``: Blender's recomposed camera view. Multipart: form field ``layout`` (JSON, see
  ``Layout.from_json``) and one PNG file part ``layer_<i>`` per layout layer; for PowerPoint optionally
  ``with_original=true`` and a PNG part ``original``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ..errors import InvalidInput, StrataError
from ..exports.archive import archive_bytes
from ..exports.export_layout import (
    MAX_LAYOUT_LAYERS,
    Layout,
    decode_layer_image,
    layout_json_schema,
    load_job_layout,
    safe_file_stem,
)
from ..exports.pptx import pptx_bytes
from ..exports.psd import psd_bytes
from ..job_manager import JobManager
from .request_helpers import Manager, read_form

router = APIRouter()

MEDIA_TYPES = {
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "psd": "image/vnd.adobe.photoshop",
    "zip": "application/zip",
}
MAX_LAYOUT_JSON_BYTES = 1_000_000


def _responses(kind: str, *error_codes: int) -> dict:
    """OpenAPI: the file's media type, and the JSON ``{"detail"}`` errors a client should expect."""
    reasons = {400: "bad layout, parameter or image", 401: "missing or wrong bearer token",
               403: "foreign Origin or Host", 404: "no such job", 409: "the job has not succeeded (yet)",
               413: "upload or image too large"}
    error = {"content": {"application/json": {"schema": {
        "type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"]}}}}
    return {200: {"content": {MEDIA_TYPES[kind]: {"schema": {"type": "string", "format": "binary"}}},
                  "description": f"the .{kind} file"},
            **{code: {**error, "description": reasons[code]} for code in (401, 403, *error_codes)}}


def _layout_body(with_original: bool) -> dict:
    """OpenAPI: the multipart body of the layout exports (parsed by hand: the part names depend on the layout).

    ``layout`` is a text part holding JSON; its JSON Schema travels as ``contentSchema`` (OpenAPI 3.1), and each
    ``layer_<i>`` part (i < the layout's layer count) is a PNG file part.
    """
    properties = {
        "layout": {"type": "string", "contentMediaType": "application/json", "contentSchema": layout_json_schema(),
                   "description": "layout JSON: frame size and the placed layers, back to front (see contentSchema)"},
    }
    encoding = {"layout": {"contentType": "application/json"}}
    # Every possible part is named (not additionalProperties), so clients and fuzzers send them as file parts.
    for index in range(MAX_LAYOUT_LAYERS):
        properties[f"layer_{index}"] = {"type": "string", "format": "binary",
                                        "description": f"PNG of layout layer {index} (required when it exists)"}
        encoding[f"layer_{index}"] = {"contentType": "image/png"}
    if with_original:
        properties["with_original"] = {"type": "string", "enum": ["true", "false"],
                                       "description": "put the original image on a first slide"}
        properties["original"] = {"type": "string", "format": "binary", "description": "PNG of the original"}
        encoding["original"] = {"contentType": "image/png"}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["layout", "layer_0"], "properties": properties,
        "additionalProperties": False}, "encoding": encoding}}}}


def _file_response(data: bytes, stem: str, extension: str) -> Response:
    stem = safe_file_stem(stem)
    ascii_stem = stem.encode("ascii", "replace").decode("ascii").replace("?", "_")
    disposition = f"attachment; filename=\"{ascii_stem}.{extension}\"; filename*=UTF-8''{quote(stem)}.{extension}"
    return Response(content=data, media_type=MEDIA_TYPES[extension],
                    headers={"Content-Disposition": disposition, "Cache-Control": "no-store"})


async def _call(function: Callable, *args):
    """Run an export off the event loop; StrataErrors become ``{"detail": ...}`` with their HTTP status."""
    try:
        return await run_in_threadpool(function, *args)
    except StrataError as error:
        raise HTTPException(status_code=error.http_status, detail=str(error)) from None


def _job_export(manager: JobManager, job_id: str, kind: str, with_original: bool) -> bytes:
    folder = manager.job_folder(job_id, require_succeeded=True)  # 404 unknown id, 409 not finished
    if kind == "zip":
        return archive_bytes(folder, top_folder=f"strata-{job_id}")
    layout = load_job_layout(folder)
    if kind == "pptx":
        return pptx_bytes(layout, with_original=with_original)
    return psd_bytes(layout)


@router.get("/v1/jobs/{job_id}/export.pptx", responses=_responses("pptx", 404, 409),
            summary="A finished job as PowerPoint: one picture per layer")
async def export_job_pptx(job_id: str, manager: Manager, with_original: bool = False) -> Response:
    data = await _call(_job_export, manager, job_id, "pptx", with_original)
    return _file_response(data, f"strata-{job_id}", "pptx")


@router.get("/v1/jobs/{job_id}/export.psd", responses=_responses("psd", 404, 409),
            summary="A finished job as a layered Photoshop file")
async def export_job_psd(job_id: str, manager: Manager) -> Response:
    data = await _call(_job_export, manager, job_id, "psd", False)
    return _file_response(data, f"strata-{job_id}", "psd")


@router.get("/v1/jobs/{job_id}/export.zip", responses=_responses("zip", 404, 409),
            summary="A finished job's layer PNGs, manifest.json and preview.png")
async def export_job_zip(job_id: str, manager: Manager) -> Response:
    data = await _call(_job_export, manager, job_id, "zip", False)
    return _file_response(data, f"strata-{job_id}", "zip")


async def _read_layout_form(request: Request, allow_original: bool) -> tuple[Layout, bool]:
    """Parse the multipart body into a Layout (and the with_original flag). Raises HTTPException 400/413."""
    # One part per layer, plus layout, original and with_original.
    form = await read_form(request, max_files=MAX_LAYOUT_LAYERS + 1, max_fields=MAX_LAYOUT_LAYERS + 8,
                           max_part_size=MAX_LAYOUT_JSON_BYTES)
    try:
        layout_text = form.get("layout")
        if layout_text is None:
            raise InvalidInput("missing form field 'layout' (the layout JSON: width_px, height_px, name, layers)")
        if isinstance(layout_text, UploadFile):
            layout_text = (await layout_text.read(MAX_LAYOUT_JSON_BYTES + 1)).decode("utf-8", "replace")
        try:
            layout_json = json.loads(layout_text)
        except ValueError as error:
            raise InvalidInput(f"form field 'layout' is not valid JSON ({error})") from None
        images: dict[int, bytes] = {}
        original = None
        for key, value in form.multi_items():
            if key in ("layout", "with_original"):
                continue
            if key == "original" and allow_original:
                if not isinstance(value, UploadFile):
                    raise InvalidInput("'original' must be a PNG file part")
                original = await value.read()
                continue
            index_text = key[len("layer_"):] if key.startswith("layer_") else ""
            if not index_text.isdigit():
                expected = "layout, layer_<i>" + (", original, with_original" if allow_original else "")
                raise InvalidInput(f"unexpected form part {key!r}; expected {expected}")
            if not isinstance(value, UploadFile):
                raise InvalidInput(f"{key} must be a file part holding a PNG, got a text field")
            index = int(index_text)
            if index in images:
                raise InvalidInput(f"{key} was sent twice")
            images[index] = await value.read()
        with_original = str(form.get("with_original", "false")).strip().lower()
        if with_original not in ("true", "false", "1", "0"):
            raise InvalidInput(f"with_original must be true or false, got {with_original!r}")
        layout = await run_in_threadpool(Layout.from_json, layout_json, images)
        if original is not None:
            layout.original = await run_in_threadpool(decode_layer_image, original, "original")
        return layout, with_original in ("true", "1")
    except StrataError as error:
        raise HTTPException(status_code=error.http_status, detail=str(error)) from None
    finally:
        await form.close()


@router.post("/v1/exports/pptx", responses=_responses("pptx", 400, 413), openapi_extra=_layout_body(True),
             summary="A layout (Blender's camera view) as PowerPoint")
async def export_layout_pptx(request: Request) -> Response:
    layout, with_original = await _read_layout_form(request, allow_original=True)
    data = await _call(pptx_bytes, layout, with_original)
    return _file_response(data, layout.name, "pptx")


@router.post("/v1/exports/psd", responses=_responses("psd", 400, 413), openapi_extra=_layout_body(False),
             summary="A layout (Blender's camera view) as a layered Photoshop file")
async def export_layout_psd(request: Request) -> Response:
    layout, _ = await _read_layout_form(request, allow_original=False)
    data = await _call(psd_bytes, layout)
    return _file_response(data, layout.name, "psd")
