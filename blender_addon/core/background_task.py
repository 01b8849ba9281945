# SPDX-License-Identifier: GPL-3.0-or-later
"""A long piece of work (installing the server, downloading weights) on a daemon thread, made of subprocesses.

Blender's main thread only ever reads ``snapshot()`` (a copy taken under a lock) and calls ``cancel()``; the thread
runs ``run()`` of a subclass, which reports with ``set_stage`` / ``set_progress`` / ``log`` and starts its
subprocesses with ``run_process`` so that a cancel kills them at once (their whole process group).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TERMINAL = ("succeeded", "failed", "canceled")
LOG_LINES_KEPT = 200


class TaskError(RuntimeError):
    """The task failed for a reason the user can act on; the message says what to do."""


class TaskCanceled(TaskError):
    """The user canceled the task."""


@dataclass
class TaskSnapshot:
    status: str = "idle"  # idle | running | succeeded | failed | canceled
    stage: str = ""
    progress: float = 0.0  # 0..1
    error: str = ""
    log_tail: tuple[str, ...] = ()
    result: dict = dataclasses.field(default_factory=dict)
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL


class BackgroundTask:
    """Subclasses implement ``run()`` (on the thread) and may return a result dict."""

    name = "task"

    def __init__(self, log_path: str | os.PathLike | None = None) -> None:
        self._lock = threading.Lock()
        self._state = TaskSnapshot()
        self._lines: collections.deque[str] = collections.deque(maxlen=LOG_LINES_KEPT)
        self._cancel = threading.Event()
        self._process: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self.log_path = Path(log_path) if log_path else None

    # ----------------------------------------------------------------- main-thread side

    def start(self) -> BackgroundTask:
        with self._lock:
            self._state = TaskSnapshot(status="running", stage="starting", started_at=time.time())
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self.log_path.write_text("", encoding="utf-8")
        self._thread = threading.Thread(target=self._main, daemon=True, name=f"strata-{self.name}")
        self._thread.start()
        return self

    def snapshot(self) -> TaskSnapshot:
        with self._lock:
            return dataclasses.replace(self._state, log_tail=tuple(self._lines))

    def cancel(self) -> None:
        """Stop as soon as possible: the running subprocess (and its children) is killed."""
        self._cancel.set()
        with self._lock:
            process = self._process
        if process is not None:
            _kill_group(process)

    def wait(self, timeout_s: float | None = None) -> TaskSnapshot:
        if self._thread is not None:
            self._thread.join(timeout_s)
        return self.snapshot()

    # ----------------------------------------------------------------- thread side

    def run(self) -> dict:
        raise NotImplementedError

    def cleanup(self, failed: bool) -> None:
        """Called on the thread after ``run()`` failed or was canceled: undo what is half done."""

    def _main(self) -> None:
        status, error, result = "succeeded", "", {}
        try:
            result = self.run() or {}
            self.check_canceled()
        except TaskCanceled:
            status = "canceled"
        except TaskError as e:
            status, error = "failed", str(e)
        except Exception as e:  # a bug must still end the task with a message, never leave it "running"
            status, error = "failed", f"{type(e).__name__}: {e}"
        if status != "succeeded":
            try:
                self.cleanup(failed=status == "failed")
            except Exception as e:
                self.log(f"cleanup failed: {e}")
        if error:
            self.log(f"error: {error}")
        with self._lock:
            self._state.status = status
            self._state.error = error
            self._state.result = result
            self._state.finished_at = time.time()
            if status == "succeeded":
                self._state.progress = 1.0
            self._state.stage = {"succeeded": "done", "canceled": "canceled"}.get(status, self._state.stage)

    def canceled(self) -> bool:
        return self._cancel.is_set()

    def check_canceled(self) -> None:
        if self._cancel.is_set():
            raise TaskCanceled(f"{self.name} canceled")

    def set_stage(self, stage: str, progress: float | None = None) -> None:
        self.check_canceled()
        with self._lock:
            self._state.stage = stage
            if progress is not None:
                self._state.progress = max(0.0, min(1.0, progress))
        self.log(f"== {stage}")

    def set_progress(self, progress: float, stage: str | None = None) -> None:
        with self._lock:
            self._state.progress = max(0.0, min(1.0, progress))
            if stage is not None:
                self._state.stage = stage

    def log(self, line: str) -> None:
        line = line.rstrip()
        if not line:
            return
        with self._lock:
            self._lines.append(line)
        if self.log_path is not None:
            try:
                with open(self.log_path, "a", encoding="utf-8") as handle:
                    handle.write(line + "\n")
            except OSError:
                pass  # the log file is a convenience; the panel still has the tail

    def run_process(self, argv: list[str], on_line: Callable[[str], None] | None = None,
                    env: dict[str, str] | None = None, cwd: str | None = None) -> tuple[int, list[str]]:
        """Run ``argv``, feeding each output line (stdout and stderr merged) to ``on_line`` and the log.
        → (exit code, all lines). A cancel kills it and raises ``TaskCanceled``."""
        self.check_canceled()
        self.log("$ " + " ".join(argv))
        try:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                       start_new_session=(os.name == "posix"))
        except OSError as e:
            raise TaskError(f"cannot run {argv[0]}: {e.strerror or e}") from None
        with self._lock:
            self._process = process
        if self._cancel.is_set():  # canceled between the check and Popen
            _kill_group(process)
        lines: list[str] = []
        stdout = process.stdout
        assert stdout is not None  # Popen(stdout=PIPE)
        try:
            for raw in iter(stdout.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip()
                lines.append(line)
                self.log(line)
                if on_line is not None and not self._cancel.is_set():
                    on_line(line)
            code = process.wait()
        finally:
            stdout.close()
            with self._lock:
                self._process = None
        self.check_canceled()
        return code, lines


def _kill_group(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    try:
        if os.name == "posix":
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    except (ProcessLookupError, PermissionError, OSError):
        pass


__all__ = ["BackgroundTask", "TaskCanceled", "TaskError", "TaskSnapshot"]
