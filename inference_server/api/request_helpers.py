# SPDX-License-Identifier: GPL-3.0-or-later
"""What the routes need from a request: its multipart form, the ``params`` JSON, the app's job manager and
settings (set on ``app.state`` by ``create_app``; routes take them through ``Depends``)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import InvalidInput
from ..job_manager import JobManager
from .settings import Settings


async def read_form(request: Request, **limits: int) -> FormData:
    """The request's multipart form (Starlette's parser, with ``limits``); a body that is not one is a 400."""
    try:
        return await request.form(**limits)
    except StarletteHTTPException:
        raise  # Starlette's own 400s (too many files or fields, a part over max_part_size) say what is wrong
    except Exception as error:  # python-multipart raises several types for a malformed body
        raise InvalidInput(f"expected a multipart/form-data body ({error})") from None


def parse_params(text: str | None) -> dict[str, Any]:
    """The ``params`` form field: a JSON object, or {} when absent or blank."""
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


async def job_manager(request: Request) -> JobManager:
    return request.app.state.manager


async def server_settings(request: Request) -> Settings:
    return request.app.state.settings


Manager = Annotated[JobManager, Depends(job_manager)]
ServerSettings = Annotated[Settings, Depends(server_settings)]
