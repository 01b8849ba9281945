# SPDX-License-Identifier: GPL-3.0-or-later
"""The worker process: owns the backend (so a loaded pipeline stays loaded between jobs) and runs one job at a time.

It is started with the ``spawn`` method (a clean interpreter: no inherited threads or CUDA state) and talks to the
JobManager over one duplex pipe:

  manager → worker  {"type": "run", "job": id, "params": {...}, "input": path, "folder": path, "notes": [...],
                     "parent": {...} | None}
                    {"type": "stop"}
  worker → manager  {"type": "ready", "pid": ..., "describe": {...}}
                    {"type": "progress", "job": id, "stage": ..., "step": ..., "total": ...}
                    {"type": "done", "job": id, "status": "succeeded"|"failed"|"canceled", "error": ..., "layers": n,
                     "describe": {...}}

Cancellation is a shared ``multiprocessing.Event`` the manager sets; the backend checks it every step through the
usual ``CancelToken`` interface. The worker writes the job's files itself (``LayerStack.save``), so layers never
travel through the pipe.

Failure paths a healthy machine never produces (an OOM, a slow step, a crash on start) are injected through the
debug setting ``STRATA_FAULT_INJECT`` (``debug_faults.py``), for the tests only.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .debug_faults import DebugFaults
from .errors import JobCanceled, OutOfMemory, StrataError
from .params import DecomposeParams

if TYPE_CHECKING:
    from .backends import Backend, BackendChoice

# Progress messages are throttled to this interval (a backend may report every row); stage changes always go through.
PROGRESS_INTERVAL_S = 0.1


class ProgressReporter:
    """The backend's progress callback in a worker process or a Ray replica: passes ``{"type": "progress", "stage",
    "step", "total"}`` to ``send`` at most every PROGRESS_INTERVAL_S, a new stage and a stage's last step always,
    and gives the debug faults (slow steps, an injected OOM) their turn on every call."""

    def __init__(self, send: Callable[[dict[str, Any]], None], faults: DebugFaults) -> None:
        self._send = send
        self._faults = faults
        self._last_stage: str | None = None
        self._last_sent_s = 0.0

    def __call__(self, stage: str, step: int, total: int) -> None:
        now = time.monotonic()
        if stage != self._last_stage or step >= total or now - self._last_sent_s >= PROGRESS_INTERVAL_S:
            self._send({"type": "progress", "stage": stage, "step": int(step), "total": int(total)})
            self._last_stage, self._last_sent_s = stage, now
        self._faults.on_progress()


def backend_mismatch(requested: str, actual: str) -> str | None:
    """The error message when a job asks for a backend this server does not run, else None."""
    if requested in ("auto", actual):
        return None
    return (
        f"this server runs the {actual!r} backend; the job asked for {requested!r}. Use backend 'auto' (or "
        f"{actual!r}), or restart the server with --backend {requested}"
    )


def out_of_memory_message(detail: str) -> str:
    return (
        f"the accelerator ran out of memory ({detail.strip().splitlines()[0] if detail.strip() else 'no detail'}). "
        f"Restart the server with --preset lowvram (CPU offload, lower peak memory), use resolution 640, or close "
        f"other programs using the GPU"
    )


def _is_torch_oom(exc: BaseException) -> bool:
    # Checked by name so the worker does not import torch for the CPU backend.
    return type(exc).__name__ == "OutOfMemoryError" and type(exc).__module__.startswith("torch")


def _free_accelerator_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _die_with_parent() -> None:
    """If the server is killed (kill -9, power button), its worker must not live on, finish the job and write into
    a folder the next server has already marked failed. Linux: ask the kernel to SIGKILL us when the parent dies.
    The kernel means the parent *thread* that spawned us, so the JobManager spawns workers from its long-lived
    dispatcher thread only."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the parent-pid check in the progress callback covers it


def worker_main(conn, cancel_event, backend_name: str, backend_options: dict[str, Any]) -> None:
    """Entry point of the worker process (must stay importable at module level for ``spawn``)."""
    _die_with_parent()
    parent_pid = os.getppid()
    from .backends import BackendChoice, choose_backend, create_backend
    from .backends.base import CancelToken

    class SharedCancelToken(CancelToken):
        def __init__(self, event) -> None:
            self._event = event

    faults = DebugFaults.from_environment()
    backend = None
    backend_error = None
    choice = BackendChoice(backend_name)
    try:
        choice = choose_backend(backend_name, backend_options.get("model_id"), backend_options.get("gpus"))
        backend = create_backend(choice.name, **backend_options)
        describe = describe_backend(backend, choice)
    except Exception as exc:  # a missing dependency or model: report it per job instead of crash-looping
        backend_error = str(exc) if isinstance(exc, StrataError) else f"{type(exc).__name__}: {exc}"
        describe = {"backend": backend_name, "device": "none", "model_loaded": False, "error": backend_error}
    conn.send({"type": "ready", "pid": os.getpid(), "describe": describe})

    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the manager went away
            return
        if message.get("type") == "stop":
            return
        if message.get("type") != "run":
            continue
        job_id = message["job"]
        if backend is None:
            conn.send({"type": "done", "job": job_id, "status": "failed", "error": backend_error, "describe": describe})
            continue
        message = dict(message, notes=[*message.get("notes", []), *choice.notes()])
        result = _run_job(backend, message, conn, SharedCancelToken(cancel_event), faults, parent_pid)
        try:
            result["describe"] = describe_backend(backend, choice)
        except Exception:
            result["describe"] = describe
        conn.send(result)


def describe_backend(backend: Backend, choice: BackendChoice) -> dict[str, Any]:
    """The backend's /v1/health description, with why ``auto`` did not use the GPU model when it did not (the local
    worker and the Ray replicas both report it)."""
    describe = dict(backend.describe())
    if choice.auto_fallback:
        describe["auto_fallback"] = choice.auto_fallback
    return describe


def _run_job(backend, message: dict, conn, cancel, faults: DebugFaults, parent_pid: int) -> dict:
    job_id = message["job"]
    report = ProgressReporter(lambda event: conn.send(dict(event, job=job_id)), faults)

    def progress(stage: str, step: int, total: int) -> None:
        if os.getppid() != parent_pid:  # orphaned: the server is gone, nobody wants this result
            os._exit(3)
        report(stage, step, total)

    try:
        stack, depth_maps, extra_manifest = decompose_job(backend, message, message["input"], progress, cancel)
        if os.getppid() != parent_pid:
            os._exit(3)
        try:
            save_job(message["folder"], stack, depth_maps, extra_manifest)
        except OSError as exc:  # disk full, folder removed or read-only: not the backend's fault
            return {"type": "done", "job": job_id, "status": "failed",
                    "error": storage_failed_message(message["folder"], exc)}
        return {"type": "done", "job": job_id, "status": "succeeded", "layers": len(stack.layers), "notes": stack.notes}
    except Exception as exc:
        status, error = job_outcome(exc, backend.name)
        return {"type": "done", "job": job_id, "status": status, "error": error}


def decompose_job(backend, message: dict, image_source, progress, cancel):
    """Steps 1–2 of a job, shared by the local worker process and Ray Serve replicas: check the parameters, load the
    image (a path, or the bytes a replica received), decompose, estimate depth when asked. Returns ``(LayerStack with
    the job's notes and parent set, depth maps or None, extra manifest entries)`` for ``save_job``; raises what the
    backend raises (map it with ``job_outcome``)."""
    from .errors import InvalidInput
    from .image_input import load_image
    from .refine import decompose_refined

    # 1. Check inputs: params are validated again here; the image was validated on upload.
    params = DecomposeParams.from_dict(message["params"])
    mismatch = backend_mismatch(params.backend, backend.name)
    if mismatch:
        raise InvalidInput(mismatch)
    image, notes = load_image(image_source, max_pixels=message.get("max_pixels", 10**9))
    if params.depth:  # a missing depth model fails the job now, not after the decomposition's work
        from .depth import get_estimator

        get_estimator()
    cancel.raise_if_canceled()
    # 2. Decompose, then refine: layers at the input's size with an exact composite (every backend).
    stack = decompose_refined(backend, image, params, progress, cancel)
    cancel.raise_if_canceled()
    # 2b. Depth per layer, when asked (the depth model stays loaded in this process between jobs).
    depth_maps, extra_manifest = None, {"job": message["job"]}
    if params.depth:
        from .depth import estimate_layer_depths

        depth_maps, extra_manifest["depth"] = estimate_layer_depths(
            stack.composite(), [layer.rgba for layer in stack.layers], progress)
        cancel.raise_if_canceled()
    stack.parent = message.get("parent")
    stack.notes = list(message.get("notes", [])) + notes + list(stack.notes)
    return stack, depth_maps, extra_manifest


def save_job(folder, stack, depth_maps, extra_manifest: dict) -> None:
    """3. Save: depth maps, layers, preview, then the manifest last (its presence means a complete job)."""
    if depth_maps is not None:
        from .depth import write_depth_maps

        write_depth_maps(folder, depth_maps)
    stack.save(folder, extra_manifest=extra_manifest)


def job_outcome(exc: Exception, backend_name: str) -> tuple[str, str | None]:
    """``(status, error)`` of a job whose steps raised ``exc``: canceled, or failed with a sentence that teaches."""
    if isinstance(exc, JobCanceled):
        return "canceled", None
    if isinstance(exc, OutOfMemory):
        _free_accelerator_memory()
        return "failed", str(exc)
    if isinstance(exc, StrataError):
        return "failed", str(exc)
    if _is_torch_oom(exc):
        _free_accelerator_memory()
        return "failed", out_of_memory_message(str(exc))
    traceback.print_exception(exc)
    return "failed", f"internal error in the {backend_name} backend: {type(exc).__name__}: {exc}"


def storage_failed_message(folder, exc: OSError) -> str:
    return (f"could not write the job's files to {folder} ({exc.strerror or exc}); free disk space or check the data "
            f"folder, then submit the job again")
