# SPDX-License-Identifier: GPL-3.0-or-later
"""The replica side of ``strata serve --ray``: a Ray Serve deployment whose replicas each own one loaded backend.

Runs inside Ray worker processes, possibly on other machines: nothing here touches the server's data folder. A job
arrives as its message plus the input image's bytes; ``run`` streams back dicts (through the handle's streaming
response) and ships the finished job's files as bytes:

  {"type": "started", "replica": actor name, "pid": ..., "node_ip": ...}
  {"type": "progress", "stage": ..., "step": ..., "total": ...}
  {"type": "done", "status": "succeeded"|"failed"|"canceled", "error": ..., "layers": n, "notes": [...],
   "files": {name: bytes} (succeeded only; manifest.json last), "describe": {...}, "peak_rss_mib": ...,
   "peak_gpu_mib": ... (None without CUDA)}

Cancellation: the server sets a flag on the ``JobBoard`` actor; ``run`` polls it while the backend works in a thread
and sets the backend's ordinary ``CancelToken``. The debug setting ``STRATA_FAULT_INJECT`` (debug_faults.py) works
here too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from .backends import BackendChoice, choose_backend
from .backends.base import Backend, CancelToken
from .debug_faults import DebugFaults
from .errors import StrataError
from .worker import ProgressReporter, decompose_job, describe_backend, job_outcome, save_job

logger = logging.getLogger(__name__)

# How often a running job asks the board whether it was canceled (one small actor call per job per interval).
CANCEL_POLL_S = 0.2
RAY_NAMESPACE = "strata"
DEPLOYMENT_NAME = "StrataReplica"
# One job at a time per replica (a model fills its GPU); Serve queues the rest at the handle and its autoscaler
# scales on that queue. Health checks are generous: a CPU-bound job may hold the GIL for a while.
DEPLOYMENT_OPTIONS = dict(
    name=DEPLOYMENT_NAME, max_ongoing_requests=1, health_check_period_s=5, health_check_timeout_s=60,
    graceful_shutdown_timeout_s=5, graceful_shutdown_wait_loop_s=1,
    logging_config={"log_level": "WARNING", "enable_access_log": False},
)


def board_name(app_name: str) -> str:
    return f"{app_name}-job-board"


class JobBoard:
    """A small Ray actor (no CPU reserved) holding the cancel flags of running jobs: replicas cannot be addressed
    one by one through a Serve handle, but every replica can ask the board."""

    def __init__(self) -> None:
        self._canceled: set[str] = set()

    def cancel(self, job_id: str) -> None:
        self._canceled.add(job_id)

    def forget(self, job_id: str) -> None:
        self._canceled.discard(job_id)

    def is_canceled(self, job_id: str) -> bool:
        return job_id in self._canceled


class StrataReplica:
    """One model replica: loads the backend once, then runs one job at a time (``max_ongoing_requests=1``)."""

    def __init__(self, backend_name: str, backend_options: dict[str, Any]) -> None:
        self._board = None  # found by name at the first job: the server creates it, possibly after this replica
        # One long-lived thread runs every job: the backend's thread-local state (torch, CUDA streams) stays put, and
        # glibc does not open a new malloc arena per job (a thread per job grew a replica by ~12 MiB a job).
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="strata-job")
        self._faults = DebugFaults.from_environment()
        self._backend = None
        self._backend_error: str | None = None
        self._choice = BackendChoice(backend_name)
        try:
            # "auto" is settled here, on the replica's node, as the local worker settles it; when that means the CPU
            # decomposer, the reason shows in /v1/health (auto_fallback) and in every job's notes.
            self._choice = choose_backend(backend_name, backend_options.get("model_id"), backend_options.get("gpus"))
            self._backend = self._create_backend(self._choice.name, backend_options)
            self._describe = describe_backend(self._backend, self._choice)
        except Exception as exc:  # a missing dependency or model: report it per job instead of crash-looping
            self._backend_error = str(exc) if isinstance(exc, StrataError) else f"{type(exc).__name__}: {exc}"
            self._describe = {"backend": backend_name, "device": "none", "model_loaded": False,
                              "error": self._backend_error}

    def _create_backend(self, backend_name: str, backend_options: dict[str, Any]) -> Backend:
        """The backend this replica serves (a subclass may build it otherwise: the GPU load test builds random
        weights straight on the replica's GPU instead of loading 57 GB of them)."""
        from .backends import create_backend

        return create_backend(backend_name, **backend_options)

    def describe(self) -> dict[str, Any]:
        return dict(self._describe)

    def _identity(self) -> dict[str, Any]:
        import ray

        context = ray.get_runtime_context()
        return {"replica": context.get_actor_name(), "pid": os.getpid(), "node_ip": ray.util.get_node_ip_address()}

    async def run(self, message: dict[str, Any], image_bytes: bytes):
        """Run one job; an async generator so the replica's event loop (Serve's health checks) stays free while
        the backend works in a thread."""
        job_id = message["job"]
        yield {"type": "started", **self._identity()}
        backend = self._backend
        if backend is None:
            yield self._done({"status": "failed", "error": self._backend_error})
            return
        message = dict(message, notes=[*message.get("notes", []), *self._choice.notes()])

        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        cancel = CancelToken()

        def send(event: dict[str, Any]) -> None:  # from the job thread
            loop.call_soon_threadsafe(events.put_nowait, event)

        progress = ProgressReporter(send, self._faults)

        def work() -> None:
            send(self._run_job(backend, message, image_bytes, progress, cancel))

        finished = self._executor.submit(work)
        while True:
            try:
                event = await asyncio.wait_for(events.get(), timeout=CANCEL_POLL_S)
            except asyncio.TimeoutError:
                if not cancel.canceled:
                    try:
                        if await self._job_board().is_canceled.remote(job_id):
                            cancel.cancel()
                    except Exception:  # the board died with the server: nobody wants this result any more
                        cancel.cancel()
                continue
            yield event
            if event["type"] == "done":
                break
        await asyncio.wrap_future(finished)

    def _job_board(self):
        if self._board is None:
            import ray
            from ray import serve

            app_name = serve.get_replica_context().app_name
            self._board = ray.get_actor(board_name(app_name), namespace=RAY_NAMESPACE)
        return self._board

    def _run_job(self, backend: Backend, message: dict[str, Any], image_bytes: bytes, progress,
                 cancel: CancelToken) -> dict[str, Any]:
        try:
            stack, depth_maps, extra_manifest = decompose_job(backend, message, image_bytes, progress, cancel)
            # 3. Save into a scratch folder with the same writer as the local worker, and ship the files' bytes:
            # the server writes them into the job folder (no shared disk between the nodes).
            with tempfile.TemporaryDirectory(prefix="strata-replica-") as scratch:
                save_job(scratch, stack, depth_maps, extra_manifest)
                names = sorted(path.name for path in Path(scratch).iterdir() if path.name != "manifest.json")
                files = {name: (Path(scratch) / name).read_bytes() for name in names + ["manifest.json"]}
            return self._done({"status": "succeeded", "layers": len(stack.layers), "notes": stack.notes,
                               "files": files})
        except Exception as exc:
            status, error = job_outcome(exc, backend.name)
            return self._done({"status": status, "error": error})

    def _done(self, fields: dict[str, Any]) -> dict[str, Any]:
        if self._backend is not None:
            try:
                self._describe = describe_backend(self._backend, self._choice)
            except Exception:
                pass
        try:
            import resource  # Unix only

            peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        except ImportError:
            peak_rss_mib = None
        torch = sys.modules.get("torch")  # never imported here for the cpu backend
        peak_gpu_mib = None
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            peak_gpu_mib = torch.cuda.max_memory_allocated() / 2**20
        return {"type": "done", "error": None, "describe": dict(self._describe), "peak_rss_mib": peak_rss_mib,
                "peak_gpu_mib": peak_gpu_mib,
                **fields}


def replica_deployment(**options):
    """The Serve deployment of StrataReplica with our defaults, ``options`` (replicas, resources) on top."""
    from ray import serve

    return serve.deployment(StrataReplica, **{**DEPLOYMENT_OPTIONS, **options})


def build_app(args: dict[str, Any]):
    """Application builder for Ray Serve config files (``serve deploy``, a KubeRay ``RayService``)::

        import_path: inference_server.ray_replica:build_app
        args: {backend: qwen, backend_options: {preset: fast}}

    Replica counts, autoscaling and resources go in the config's ``deployments`` entry named ``StrataReplica``;
    ``strata serve --ray ADDRESS --ray-app NAME`` then sends its jobs to this application."""
    return replica_deployment().bind(args.get("backend", "auto"), dict(args.get("backend_options") or {}))
