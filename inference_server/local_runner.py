# SPDX-License-Identifier: GPL-3.0-or-later
"""The local job runner (``strata serve`` without ``--ray``): one worker process on this machine runs one job at a
time. A dispatcher thread owns the worker process and its pipe: it hands out the JobManager's queued jobs, applies
progress messages, notices a dead worker (a crash or ``kill -9``), fails the job it was running with the exit code and
starts a new one. The worker's side of the pipe is ``worker.py``.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

from .job_manager import DispatcherRunner, ManagerSettings
from .worker import worker_main

# Workers that die before reporting ready, in a row, before jobs are refused with 503 (restarts continue, slower).
WORKER_START_TRIES = 3


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


class LocalWorkerRunner(DispatcherRunner):
    """Runs one job at a time in a worker process on this machine (``strata serve`` without ``--ray``).

    The dispatcher thread spawns the worker (and every replacement), not the caller of ``start()``: Linux sends the
    worker its parent-death signal (worker._die_with_parent) when the *thread* that spawned it ends, and start() runs
    on a server thread-pool thread that may be retired while the server lives on."""

    def __init__(self, settings: ManagerSettings) -> None:
        super().__init__(settings)
        self._worker: _Worker | None = None
        self.worker_restarts = 0
        self._failed_starts = 0

    def close(self) -> None:
        self._stopping = True
        if self._thread is not None:
            self._thread.join(10)
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop()  # up to seconds: not under the lock that status requests take

    def cancel(self, job_id: str) -> None:
        with self._lock:
            worker = self._worker
            if worker is not None and worker.job_id == job_id:
                worker.cancel_event.set()
                worker.cancel_requested_at = time.monotonic()

    def health(self) -> dict[str, Any]:
        with self._lock:
            worker = self._worker
            running = worker.job_id if worker is not None else None
            return {
                "runner": "local",
                "running": running,
                "running_jobs": [running] if running else [],
                "worker_pid": worker.process.pid if worker is not None and worker.ready else None,
                "worker_restarts": self.worker_restarts,
            }

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
            if not worker.ready or worker.job_id is not None:
                return
            message = self.manager.next_job()
            if message is None:
                return
            worker.cancel_event.clear()
            worker.cancel_requested_at = None
            worker.job_id = message["job"]
        try:
            worker.conn.send(message)
        except (OSError, ValueError):
            pass  # the death is noticed by the loop

    def _handle(self, worker: _Worker, message: dict[str, Any]) -> None:
        kind = message.get("type")
        manager = self.manager
        with self._lock:
            if kind == "ready":
                worker.ready = True
                self._failed_starts = 0
                manager.runner_ready(message.get("describe") or {})
            elif kind == "progress":
                manager.job_progress(message["job"], message["stage"], message["step"], message["total"])
            elif kind == "done":
                if message.get("describe"):
                    manager.runner_describe(message["describe"])
                worker.job_id = None
                manager.job_finished(message["job"], message["status"], message.get("error"),
                                     message.get("layers"), message.get("notes"))

    def _worker_died(self, worker: _Worker) -> None:
        worker.process.join(5)
        code = worker.process.exitcode
        with self._lock:
            if worker.job_id is not None:
                self.manager.job_lost(worker.job_id, f"worker process exited with code {code} while running this "
                                                     f"job (crash or killed); the next job starts a fresh worker")
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
                    self.manager.runner_unavailable(
                        f"the worker process cannot start (exit code {code}, {self._failed_starts} tries); see the "
                        f"server's error output")
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
