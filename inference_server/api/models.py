# SPDX-License-Identifier: GPL-3.0-or-later
"""Response models (for an accurate OpenAPI schema) and the error responses each route declares."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


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
    auto_fallback: str | None = Field(
        None, description="why backend auto runs the CPU decomposer instead of the GPU model (no torch, no CUDA GPU, "
                          "no weights)")
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


ERROR_REASONS = {
    400: "bad parameter or image", 401: "missing or wrong bearer token", 403: "foreign Origin or Host",
    404: "no such job or layer", 409: "the job is not in a state that allows this",
    413: "upload or image too large",
    429: "queue full", 503: "model unavailable", 507: "the data folder cannot be written (disk full?)",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error codes, each a JSON ``ErrorBody``. 401/403/413 and the general 400 come
    from GuardMiddleware and are added to every operation by ``StrataAPI.openapi``."""
    declared: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody, "description": ERROR_REASONS[code]}
                                                 for code in codes}
    return declared
