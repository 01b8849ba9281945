# SPDX-License-Identifier: GPL-3.0-or-later
"""``StrataAPI``: FastAPI whose schema tells the truth about what GuardMiddleware and the error handlers add to every
operation, so the routers need not repeat it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from .models import ErrorBody


class StrataAPI(FastAPI):
    """Adds to every operation of the generated schema: the bearer token, 401/403, 404/409 where a job id is in the
    path, 413 on bodies, and 400 where FastAPI would document its 422 (our handler answers validation errors with
    400)."""

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
