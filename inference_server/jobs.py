"""Jobs: a bounded queue in front of one worker process, job records on disk, cancellation, crash recovery.

Statuses follow cog: ``queued → running → succeeded | failed | canceled``. Each job has a folder
``DATA_DIR/jobs/<id>/`` holding ``input.png`` (the validated upload), ``job.json`` (this record, rewritten atomically
on every status change) and, once it succeeded, the LayerStack files written by the worker.

One dispatcher thread owns the worker process and its pipe: it hands out queued jobs, applies progress messages,
notices a dead worker (a crash or ``kill -9``), fails the job it was running with the exit code and starts a new one.
Request handlers only touch the records under ``self._lock``.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import re
import shutil
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import Busy, InvalidInput, ModelUnavailable, NotFound, QueueFull, StorageFailed
from .layers import MANIFEST_NAME, layer_file_name, link_child, read_manifest, write_bytes_atomic, write_png_atomic
from .params import DecomposeParams, params_that_ran
from .worker import backend_mismatch, worker_main

logger = logging.getLogger(__name__)

JOB_RECORD_NAME = "job.json"
INPUT_NAME = "input.png"
TERMINAL = ("succeeded", "failed", "canceled")
JOB_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
# Workers that die before reporting ready, in a row, before jobs are refused with 503 (restarts continue, slower).
WORKER_START_TRIES = 3


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


def check_job_id(job_id: str) -> str:
    """Job ids become folder names: only our own 32-hex-digit ids are accepted (no path tricks)."""
    if not isinstance(job_id, str) or not JOB_ID_PATTERN.match(job_id):
        raise NotFound(f"no job {job_id!r} (job ids are 32 lowercase hex digits)")
    return job_id


class _Worker:
    """One worker process, its pipe and its cancel flag."""

    def __init__(self, settings: ManagerSettings) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child_conn = context.Pipe(duplex=True)
        self.cancel_event = context.Event()
        self.process = context.Process(
            target=worker_main,
            args=(child_conn, self.cancel_event, settings.backend, settings.backend_options),
            name="strata-worker",
            daemon=True,
        )
        self.process.start()
        child_conn.close()
        self.ready = False
        self.describe: dict[str, Any] = {}
        self.job_id: str | None = None
        self.cancel_requested_at: float | None = None

    def stop(self, timeout_s: float = 5.0) -> None:
        try:
            self.conn.send({"type": "stop"})
        except (OSError, ValueError):
            pass
        self.process.join(timeout_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout_s)
        self.conn.close()


class JobManager:
    def __init__(self, settings: ManagerSettings) -> None:
        self.settings = settings
        self.jobs_dir = Path(settings.data_dir) / "jobs"
        self._lock = threading.RLock()
        self._records: dict[str, dict[str, Any]] = {}
        self._queue: deque[str] = deque()
        self._worker: _Worker | None = None
        self._worker_ready = threading.Event()
        self._describe: dict[str, Any] = {"backend": settings.backend, "device": "unknown", "model_loaded": False}
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.worker_restarts = 0
        self._failed_starts = 0

    # ----------------------------------------------------------------- lifecycle

    def start(self, wait_ready: bool = True) -> None:
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self._load_existing()
        # The dispatcher thread spawns the worker (and every replacement), not this caller: Linux sends the worker
        # its parent-death signal (worker._die_with_parent) when the *thread* that spawned it ends, and start() runs
        # on a server thread-pool thread that may be retired while the server lives on.
        self._thread = threading.Thread(target=self._run, name="strata-dispatcher", daemon=True)
        self._thread.start()
        if wait_ready:
            self._worker_ready.wait(self.settings.ready_timeout_s)

    def close(self) -> None:
        self._stopping = True
        if self._thread is not None:
            self._thread.join(10)
        with self._lock:
            if self._worker is not None:
                self._worker.stop()
                self._worker = None
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
        return name if self._worker_ready.is_set() else None

    def submit(self, params_dict: dict[str, Any], image_loader: Callable[[], tuple[Any, list[str]]] | None = None
               ) -> dict[str, Any]:
        """Queue a job and return its public record.

        ``image_loader`` returns ``(PIL RGBA image, notes)`` (``images.load_image`` bound to the upload); it is only
        called once the parameters, the backend choice and the queue's room are known to be fine, so a bad request
        or a full queue costs no decoding. Recursive jobs pass no loader and name a parent job and layer instead.
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
            if self._failed_starts >= WORKER_START_TRIES:
                raise ModelUnavailable(self._describe.get("error") or "the worker process cannot start")
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
            if status == "queued":
                self._queue.remove(job_id)
                self._finish(record, "canceled", None)
            else:
                record["cancel_requested"] = True
                worker = self._worker
                if worker is not None and worker.job_id == job_id:
                    worker.cancel_event.set()
                    worker.cancel_requested_at = time.monotonic()
            return self.public(record)

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
            worker = self._worker
            return {
                "backend": self._describe.get("backend", self.settings.backend),
                "device": self._describe.get("device", "unknown"),
                "model_loaded": bool(self._describe.get("model_loaded", False)),
                "backend_error": self._describe.get("error"),
                "tier": self._describe.get("tier"),
                "transformer": self._describe.get("transformer"),
                "queue_length": len(self._queue),
                "running": worker.job_id if worker is not None else None,
                "worker_pid": worker.process.pid if worker is not None and worker.ready else None,
                "worker_restarts": self.worker_restarts,
                # Several GPUs (qwen_parallel): the layout and each rank's device and process.
                **{key: self._describe[key] for key in ("parallel", "ranks") if key in self._describe},
            }

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

    def _run(self) -> None:
        with self._lock:
            if self._stopping:
                return
            self._worker = _Worker(self.settings)
        while not self._stopping:
            worker = self._worker
            if worker is None:
                return
            self._dispatch(worker)
            try:
                has_message = worker.conn.poll(0.05)
                message = worker.conn.recv() if has_message else None
            except (EOFError, OSError):
                self._worker_died(worker)
                continue
            if message is not None:
                self._handle(worker, message)
            elif not worker.process.is_alive():
                self._worker_died(worker)
                continue
            # Checked on every turn: a backend that keeps reporting progress but never checks the cancel flag
            # must not escape the deadline.
            self._check_cancel_deadline(worker)

    def _dispatch(self, worker: _Worker) -> None:
        with self._lock:
            if not worker.ready or worker.job_id is not None or not self._queue:
                return
            job_id = self._queue.popleft()
            record = self._records[job_id]
            record.update(status="running", started_at=time.time(),
                          params=params_that_ran(record["params"], self.backend_name))
            self._write_record(record)
            worker.cancel_event.clear()
            worker.cancel_requested_at = None
            worker.job_id = job_id
            message = {
                "type": "run",
                "job": job_id,
                "params": record["params"],
                "input": record["input"],
                "folder": str(self.jobs_dir / job_id),
                "notes": record.get("notes", []),
                "parent": record.get("parent"),
                "max_pixels": max(self.settings.max_pixels, 10**8),
            }
        try:
            worker.conn.send(message)
        except (OSError, ValueError):
            pass  # the death is noticed by the loop

    def _handle(self, worker: _Worker, message: dict[str, Any]) -> None:
        kind = message.get("type")
        with self._lock:
            if kind == "ready":
                worker.ready = True
                self._failed_starts = 0
                self._describe = dict(message.get("describe") or {})
                self._worker_ready.set()
            elif kind == "progress":
                record = self._records.get(message.get("job"))
                if record is not None and record["status"] == "running":
                    record.update(stage=message["stage"], step=message["step"], total=message["total"])
            elif kind == "done":
                if message.get("describe"):
                    self._describe = dict(message["describe"])
                record = self._records.get(message.get("job"))
                worker.job_id = None
                if record is not None and record["status"] == "running":
                    record["params"] = params_that_ran(record["params"], self._describe.get("backend"))
                    if message.get("notes") is not None:
                        record["notes"] = list(message["notes"])
                    self._finish(record, message["status"], message.get("error"), message.get("layers"))

    def _worker_died(self, worker: _Worker) -> None:
        worker.process.join(5)
        code = worker.process.exitcode
        with self._lock:
            job_id = worker.job_id
            if job_id is not None:
                record = self._records[job_id]
                if record.get("cancel_requested"):
                    self._finish(record, "canceled", None)
                else:
                    self._finish(record, "failed", f"worker process exited with code {code} while running this job "
                                                   f"(crash or killed); the next job starts a fresh worker")
            try:
                worker.conn.close()
            except OSError:
                pass
            if self._stopping:
                self._worker = None
                return
            delay_s = 0.0
            if not worker.ready:
                # It died before it could report ready: a broken install, not a job. Do not spin; tell the jobs.
                self._failed_starts += 1
                delay_s = min(0.5 * 2.0 ** self._failed_starts, 30.0)
                if self._failed_starts >= WORKER_START_TRIES:
                    message = (f"the worker process cannot start (exit code {code}, {self._failed_starts} tries); "
                               f"see the server's error output")
                    self._describe = dict(self._describe, error=message, model_loaded=False)
                    self._worker_ready.set()  # stop holding up server startup; /v1/health shows the error
                    while self._queue:
                        self._finish(self._records[self._queue.popleft()], "failed", message)
            self.worker_restarts += 1
        deadline = time.monotonic() + delay_s
        while time.monotonic() < deadline and not self._stopping:
            time.sleep(0.05)
        with self._lock:
            self._worker = None if self._stopping else _Worker(self.settings)

    def _check_cancel_deadline(self, worker: _Worker) -> None:
        started = worker.cancel_requested_at
        if started is not None and time.monotonic() - started > self.settings.cancel_grace_s:
            worker.cancel_requested_at = None
            worker.process.kill()  # noticed as a death on the next loop; the job becomes "canceled"
