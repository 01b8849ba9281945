# SPDX-License-Identifier: GPL-3.0-or-later
"""Jobs: a bounded queue in front of a job runner, job records on disk, cancellation, crash recovery.

Statuses follow cog: ``queued → running → succeeded | failed | canceled``. Each job has a folder
``DATA_DIR/jobs/<id>/`` holding ``input.png`` (the validated upload), ``job.json`` (this record, rewritten atomically
on every status change) and, once it succeeded, the LayerStack files.

The JobManager owns the records and the queue; a runner runs the jobs and reports back through the manager's
``job_*`` / ``runner_*`` methods (see ``JobRunner``). Two runners exist:
  * ``local_runner.LocalWorkerRunner``: one dispatcher thread owns one worker process and its pipe: it hands out
    queued jobs, applies progress messages, notices a dead worker (a crash or ``kill -9``), fails the job it was
    running with the exit code and starts a new one;
  * ``ray_runner.RayRunner`` (``strata serve --ray``): jobs run on a Ray Serve deployment of model replicas.
Request handlers only touch the records under ``self._lock``; runners share that one lock (two locks taken in
opposite orders deadlocked the server once). Nothing that can wait long runs under it: no Ray call, no pipe read,
no image encoding; only small job.json writes.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .errors import Busy, InvalidInput, ModelUnavailable, NotFound, QueueFull, StorageFailed
from .layers import MANIFEST_NAME, layer_file_name, link_child, read_manifest, write_bytes_atomic, write_png_atomic
from .params import DecomposeParams, params_that_ran
from .worker import backend_mismatch

logger = logging.getLogger(__name__)

JOB_RECORD_NAME = "job.json"
INPUT_NAME = "input.png"
TERMINAL = ("succeeded", "failed", "canceled")
JOB_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class ManagerSettings:
    data_dir: Path
    backend: str = "auto"
    backend_options: dict[str, Any] = field(default_factory=dict)
    preset: str | None = None  # default preset for jobs that do not name one
    max_queue: int = 8  # queued jobs, not counting the running one
    max_pixels: int = 40_000_000
    # A running job that was asked to cancel but did not stop within this time (a step that never returns, a
    # model load) gets its worker killed and restarted.
    cancel_grace_s: float = 30.0
    ready_timeout_s: float = 120.0
    # Set by ``strata serve --ray``: jobs run on Ray Serve replicas (ray_runner.RaySettings) instead of a local worker.
    ray: Any = None


def check_job_id(job_id: str) -> str:
    """Job ids become folder names: only our own 32-hex-digit ids are accepted (no path tricks)."""
    if not isinstance(job_id, str) or not JOB_ID_PATTERN.match(job_id):
        raise NotFound(f"no job {job_id!r} (job ids are 32 lowercase hex digits)")
    return job_id


class JobRunner(Protocol):
    """What runs the jobs. It pulls work with ``manager.next_job()`` and reports with ``manager.job_started /
    job_progress / job_finished / job_lost`` and ``manager.runner_ready / runner_unavailable``."""

    def start(self, manager: JobManager) -> None:
        """Begin running jobs (returns at once; the runner reports ready through the manager)."""

    def cancel(self, job_id: str) -> None:
        """The job left the manager's queue and is running or about to: stop it (it ends ``canceled``)."""

    def health(self) -> dict[str, Any]:
        """``running``, ``worker_pid``, ``worker_restarts`` and anything else /v1/health shows about the runner."""

    def close(self) -> None:
        """Stop the running jobs' processes; the manager fails what did not finish."""


class DispatcherRunner:
    """What both runners share: one dispatcher thread (the subclass's ``_run``) started by ``start``, and the
    manager's lock as their own, so that no two locks can be taken in opposite orders (with a lock of its own, the Ray
    runner's dispatcher, holding it and calling ``next_job()``, deadlocked with a cancel request holding the
    manager's lock and calling ``cancel()``)."""

    dispatcher_name = "strata-dispatcher"

    def __init__(self, settings: ManagerSettings) -> None:
        self.settings = settings
        self._manager: JobManager | None = None
        self._lock = threading.RLock()  # the manager's, from start() on
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def manager(self) -> JobManager:
        if self._manager is None:
            raise RuntimeError(f"{type(self).__name__} used before start(manager)")
        return self._manager

    def start(self, manager: JobManager) -> None:
        self._manager = manager
        self._lock = manager._lock
        self._thread = threading.Thread(target=self._run, name=self.dispatcher_name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        raise NotImplementedError


class JobManager:
    def __init__(self, settings: ManagerSettings, runner: JobRunner | None = None) -> None:
        self.settings = settings
        self.jobs_dir = Path(settings.data_dir) / "jobs"
        self._lock = threading.RLock()
        self._records: dict[str, dict[str, Any]] = {}
        self._queue: deque[str] = deque()
        self._ready = threading.Event()
        self._describe: dict[str, Any] = {"backend": settings.backend, "device": "unknown", "model_loaded": False}
        self._unavailable: str | None = None  # why new jobs get 503 (the runner cannot run any)
        if runner is None and settings.ray is not None:
            from .ray_runner import RayRunner

            runner = RayRunner(settings)
        elif runner is None:
            from .local_runner import LocalWorkerRunner

            runner = LocalWorkerRunner(settings)
        self.runner: JobRunner = runner

    # ----------------------------------------------------------------- lifecycle

    def start(self, wait_ready: bool = True) -> None:
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self._load_existing()
        self.runner.start(self)
        if wait_ready:
            self._ready.wait(self.settings.ready_timeout_s)

    def close(self) -> None:
        self.runner.close()
        with self._lock:
            for record in self._records.values():
                if record["status"] not in TERMINAL:
                    self._finish(record, "failed", "the server shut down before the job finished; submit it again")
            self._queue.clear()

    def _load_existing(self) -> None:
        """Pick up the jobs of a previous run: finished ones stay served; unfinished ones cannot resume."""
        for record_path in sorted(self.jobs_dir.glob(f"*/{JOB_RECORD_NAME}")):
            try:
                record = json.loads(record_path.read_text("utf-8"))
            except (OSError, ValueError):
                continue
            if record.get("id") != record_path.parent.name or not JOB_ID_PATTERN.match(record_path.parent.name):
                continue
            if record.get("status") not in TERMINAL:
                record.update(status="failed", error="server restarted before the job finished; submit it again",
                              finished_at=time.time())
                self._write_record(record)
            self._records[record["id"]] = record

    # ----------------------------------------------------------------- API used by the HTTP layer and tests

    @property
    def backend_name(self) -> str | None:
        """The backend the worker actually runs ("auto" resolved), once the worker has reported ready."""
        name = self._describe.get("backend")
        return name if self._ready.is_set() else None

    def submit(self, params_dict: dict[str, Any], image_loader: Callable[[], tuple[Any, list[str]]] | None = None
               ) -> dict[str, Any]:
        """Queue a job and return its public record.

        ``image_loader`` returns ``(PIL RGBA image, notes)`` (``image_input.load_image`` bound to the upload); it is
        only called once the parameters, the backend choice and the queue's room are known to be fine, so a bad
        request or a full queue costs no decoding. Recursive jobs pass no loader and name a parent job and layer
        instead.
        """
        params_dict = dict(params_dict)
        if self.settings.preset and "preset" not in params_dict:
            params_dict["preset"] = self.settings.preset
        params = DecomposeParams.from_dict(params_dict)
        running = self.backend_name or self.settings.backend
        mismatch = backend_mismatch(params.backend, running)
        if mismatch and running != "auto":  # "auto" not yet resolved: the worker checks when it runs the job
            raise InvalidInput(mismatch)

        parent = None
        input_path = None
        image_rgba, notes = None, []
        if params.parent_job is not None or params.parent_layer is not None:
            if image_loader is not None:
                raise InvalidInput("send either an image or parent_job + parent_layer (recursive decomposition), "
                                   "not both")
            input_path, parent = self._parent_input(params.parent_job, params.parent_layer)
            notes = [f"input: layer {params.parent_layer} of job {params.parent_job} (recursive decomposition)"]
            self._check_room()
        elif image_loader is None:
            raise InvalidInput("no image: send the picture as the multipart file part 'image'")
        else:
            self._check_room()
            image_rgba, notes = image_loader()

        job_id = uuid.uuid4().hex
        folder = self.jobs_dir / job_id
        try:
            folder.mkdir(parents=True)
            if image_rgba is not None:
                # Outside the lock: encoding a large PNG takes a while and status requests must not wait for it.
                input_path = folder / INPUT_NAME
                write_png_atomic(input_path, np.asarray(image_rgba, dtype=np.uint8))
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise StorageFailed(f"could not store the job in {self.jobs_dir} ({exc.strerror or exc}); free disk space "
                                f"or check the server's --data-dir, then retry") from None
        record = {
            "id": job_id,
            "status": "queued",
            "stage": None,
            "step": 0,
            "total": 0,
            "error": None,
            "layers": None,
            "params": params_that_ran(params.to_dict(), self.backend_name),
            "parent": parent,
            "children": {},
            "notes": list(notes or []),
            "input": str(input_path),
            "created_at": time.time(),
            "started_at": None,
            "finished_at": None,
        }
        with self._lock:
            try:
                self._check_room()
            except QueueFull:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            self._records[job_id] = record
            self._queue.append(job_id)
            self._write_record(record)
        return self.public(record)

    def _check_room(self) -> None:
        with self._lock:
            if self._unavailable is not None:
                raise ModelUnavailable(self._unavailable)
            if len(self._queue) >= self.settings.max_queue:
                raise QueueFull(
                    f"the queue is full ({len(self._queue)} jobs waiting, limit {self.settings.max_queue}); wait for "
                    f"a job to finish or cancel one, then retry"
                )

    def get(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            return self.public(self._record(job_id))

    def all_jobs(self) -> list[dict[str, Any]]:
        with self._lock:
            records = sorted(self._records.values(), key=lambda r: r.get("created_at") or 0)
            return [self.public(record) for record in records]

    def cancel(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            record = self._record(job_id)
            status = record["status"]
            if status in TERMINAL:
                raise Busy(f"job {job_id} already {status}; only queued or running jobs can be canceled")
            handed_to_runner = job_id not in self._queue  # a Ray job waiting for a replica is still "queued"
            if handed_to_runner:
                record["cancel_requested"] = True
            else:
                self._queue.remove(job_id)
                self._finish(record, "canceled", None)
            public = self.public(record)
        if handed_to_runner:
            # Outside the lock: the Ray runner reaches the job through Ray calls, which can wait on Ray's control
            # store; status requests and the runners' progress reports must not wait with them. A job that ends
            # meanwhile is simply no longer found by the runner.
            self.runner.cancel(job_id)
        return public

    def job_folder(self, job_id: str, require_succeeded: bool = True) -> Path:
        with self._lock:
            record = self._record(job_id)
            if require_succeeded and record["status"] != "succeeded":
                raise Busy(
                    f"job {job_id} is {record['status']}; its files exist once it succeeded"
                    + (f" (error: {record['error']})" if record.get("error") else "")
                )
        return self.jobs_dir / job_id

    def health(self) -> dict[str, Any]:
        with self._lock:
            return {
                "backend": self._describe.get("backend", self.settings.backend),
                "device": self._describe.get("device", "unknown"),
                "model_loaded": bool(self._describe.get("model_loaded", False)),
                "backend_error": self._describe.get("error"),
                "auto_fallback": self._describe.get("auto_fallback"),
                "tier": self._describe.get("tier"),
                "transformer": self._describe.get("transformer"),
                "queue_length": len(self._queue),
                **self.runner.health(),
                # Several GPUs (qwen_parallel): the layout and each rank's device and process.
                **{key: self._describe[key] for key in ("parallel", "ranks") if key in self._describe},
            }

    # ----------------------------------------------------------------- API used by the runners

    def next_job(self, mark_running: bool = True) -> dict[str, Any] | None:
        """Take the oldest queued job: the message a runner needs to run it, or None when the queue is empty.
        ``mark_running=False`` leaves it "queued" until the runner calls ``job_started`` (a Ray job waits for a
        replica)."""
        with self._lock:
            if not self._queue:
                return None
            job_id = self._queue.popleft()
            record = self._records[job_id]
            if mark_running:
                record.update(status="running", started_at=time.time(),
                              params=params_that_ran(record["params"], self.backend_name))
                self._write_record(record)
            return {
                "type": "run",
                "job": job_id,
                "params": record["params"],
                "input": record["input"],
                "folder": str(self.jobs_dir / job_id),
                "notes": record.get("notes", []),
                "parent": record.get("parent"),
                "max_pixels": max(self.settings.max_pixels, 10**8),
            }

    def job_started(self, job_id: str) -> None:
        with self._lock:
            record = self._records.get(job_id)
            if record is not None and record["status"] == "queued":
                record.update(status="running", started_at=time.time(),
                              params=params_that_ran(record["params"], self.backend_name))
                self._write_record(record)

    def job_progress(self, job_id: str, stage: str, step: int, total: int) -> None:
        with self._lock:
            record = self._records.get(job_id)
            if record is not None and record["status"] == "running":
                record.update(stage=stage, step=step, total=total)

    def job_finished(self, job_id: str, status: str, error: str | None, layers: int | None = None,
                     notes: list[str] | None = None) -> None:
        with self._lock:
            record = self._records.get(job_id)
            if record is not None and record["status"] not in TERMINAL:
                record["params"] = params_that_ran(record["params"], self._describe.get("backend"))
                if notes is not None:
                    record["notes"] = list(notes)
                self._finish(record, status, error, layers)

    def job_lost(self, job_id: str, reason: str) -> None:
        """The process running the job died: it ends "canceled" if a cancel was asked for, else "failed"."""
        with self._lock:
            record = self._records.get(job_id)
            if record is not None and record["status"] not in TERMINAL:
                if record.get("cancel_requested"):
                    self._finish(record, "canceled", None)
                else:
                    self._finish(record, "failed", reason)

    def job_note(self, job_id: str, note: str) -> None:
        with self._lock:
            record = self._records.get(job_id)
            if record is not None:
                record.setdefault("notes", []).append(note)
                self._write_record(record)

    def cancel_requested(self, job_id: str) -> bool:
        with self._lock:
            return bool(self._records.get(job_id, {}).get("cancel_requested"))

    def runner_ready(self, describe: dict[str, Any]) -> None:
        """The runner can run jobs; ``describe`` is the backend's /v1/health description."""
        with self._lock:
            self._describe = dict(describe)
            self._unavailable = None
            self._ready.set()

    def runner_describe(self, describe: dict[str, Any]) -> None:
        with self._lock:
            self._describe = dict(describe)

    def runner_unavailable(self, message: str) -> None:
        """The runner cannot run jobs (a worker that cannot start, a Ray cluster out of reach): new jobs get 503
        with ``message``, queued ones fail with it, and server start-up stops waiting; /v1/health shows it."""
        with self._lock:
            self._unavailable = message
            self._describe = dict(self._describe, error=message, model_loaded=False)
            self._ready.set()
            while self._queue:
                self._finish(self._records[self._queue.popleft()], "failed", message)

    @staticmethod
    def public(record: dict[str, Any]) -> dict[str, Any]:
        keys = ("id", "status", "stage", "step", "total", "error", "layers", "params", "parent", "children", "notes",
                "created_at", "started_at", "finished_at", "cancel_requested")
        return {key: record.get(key) for key in keys if key in record}

    # ----------------------------------------------------------------- internals

    def _record(self, job_id: str) -> dict[str, Any]:
        check_job_id(job_id)
        record = self._records.get(job_id)
        if record is None:
            raise NotFound(f"no job {job_id}")
        return record

    def _parent_input(self, parent_job: str | None, parent_layer: int | None) -> tuple[Path, dict[str, Any]]:
        if parent_job is None or parent_layer is None:
            raise InvalidInput("recursive decomposition needs both parent_job and parent_layer")
        # Their types were checked by DecomposeParams.validate.
        with self._lock:
            record = self._record(parent_job)
            if record["status"] != "succeeded":
                raise InvalidInput(f"parent job {parent_job} is {record['status']}; only a succeeded job's layers "
                                   f"can be decomposed further")
            count = int(record.get("layers") or 0)
        if not 0 <= parent_layer < count:
            raise NotFound(f"parent job {parent_job} has {count} layers (0–{count - 1}); there is no layer "
                           f"{parent_layer}")
        folder = self.jobs_dir / parent_job
        path = folder / layer_file_name(parent_layer)
        if not path.is_file():
            raise NotFound(f"layer {parent_layer} of job {parent_job} is missing on disk")
        try:
            entry = read_manifest(folder)["layers"][parent_layer]
        except (OSError, ValueError, KeyError, IndexError):
            entry = {}
        if entry.get("bbox_px", True) is None:
            raise InvalidInput(f"layer {parent_layer} of job {parent_job} is empty (fully transparent); there is "
                               f"nothing in it to decompose")
        return path, {"job": parent_job, "layer": parent_layer}

    def _write_record(self, record: dict[str, Any]) -> None:
        path = self.jobs_dir / record["id"] / JOB_RECORD_NAME
        try:
            write_bytes_atomic(path, json.dumps(record, indent=2).encode("utf-8"))
        except OSError as exc:
            # Disk full or the folder gone: the record stays served from memory; the dispatcher (which calls this)
            # must not die with it, or no job would ever run again.
            logger.error("could not write %s: %s", path, exc)

    def _finish(self, record: dict[str, Any], status: str, error: str | None, layers: int | None = None) -> None:
        record.update(status=status, error=error, finished_at=time.time())
        if layers is not None:
            record["layers"] = layers
        record.pop("cancel_requested", None)
        self._write_record(record)
        if status == "succeeded" and record.get("parent"):
            self._link_child(record)

    def _link_child(self, child: dict[str, Any]) -> None:
        """Keep the tree: the parent's record and manifest list the child under the layer it came from."""
        parent_id, layer = child["parent"]["job"], child["parent"]["layer"]
        parent = self._records.get(parent_id)
        if parent is None:
            return
        parent.setdefault("children", {}).setdefault(str(layer), []).append(child["id"])
        self._write_record(parent)
        try:
            link_child(self.jobs_dir / parent_id, layer, child["id"])
        except (OSError, ValueError) as exc:  # as in _write_record: the job record still lists the child
            logger.error("could not list job %s in %s: %s", child["id"], self.jobs_dir / parent_id / MANIFEST_NAME, exc)
