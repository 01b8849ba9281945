# SPDX-License-Identifier: GPL-3.0-or-later
"""Start and stop a local Strata server as a child process.

The server is started with ``--port 0`` and a fresh random token in ``STRATA_TOKEN``; once listening it prints one
JSON line ``{"event": "listening", "url": ..., "pid": ...}`` on stdout, which is how we learn the port. Its stderr
goes to a log file in the data folder, so a crash can be explained with the log's last lines.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import shlex
import subprocess
import threading
import time
from pathlib import Path


class ServerStartError(RuntimeError):
    """The server could not be started or died while starting; the message carries its log's tail."""


def tail_text(path: str | os.PathLike, max_chars: int = 1500) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_chars))
            return handle.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


class AddonServerProcess:
    """The server process the add-on starts and owns:
    ``AddonServerProcess(python_path="/path/to/venv/bin/python", backend="cpu", data_dir=...)``, or ``command=[...]``.

    ``command`` (a list or a shell-like string) replaces ``python -m inference_server``; the serve arguments are
    appended to it either way.
    """

    def __init__(self, python_path: str | None = None, backend: str = "auto", model: str | None = None,
                 data_dir: str | os.PathLike | None = None, extra_args: list[str] | None = None,
                 command: list[str] | str | None = None, cwd: str | None = None, env: dict[str, str] | None = None,
                 startup_timeout_s: float = 120.0) -> None:
        # What runs the server; the serve arguments are appended to it.
        self.launcher: list[str]
        if command:
            self.launcher = shlex.split(command) if isinstance(command, str) else list(command)
        elif python_path:
            self.launcher = [python_path, "-m", "inference_server"]
        else:
            raise ServerStartError("no server to start: press Install Server in the add-on preferences, or set the "
                                   "server's Python (the venv where the Strata server is installed) or a full "
                                   "command there, or give the URL and token of a running server")
        self.python_path = python_path
        self.command = self.launcher if command else None
        self.backend = backend
        self.model = model
        self.data_dir = Path(data_dir) if data_dir else Path.home() / ".strata"
        self.extra_args = list(extra_args or [])
        self.cwd = cwd
        self.env = env
        self.startup_timeout_s = startup_timeout_s
        self.token = ""
        self.url = ""
        self.process: subprocess.Popen | None = None
        self.log_path = self.data_dir / "server.log"

    def argv(self) -> list[str]:
        args = self.launcher + ["serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(self.data_dir),
                       "--backend", self.backend]
        if self.model:
            args += ["--model", self.model]
        return args + self.extra_args

    def start(self) -> str:
        """Start the server and wait until it listens → its URL. Raises ``ServerStartError`` with the log's tail."""
        if self.is_alive():
            return self.url
        if self.python_path and not self.command and not Path(self.python_path).exists():
            raise ServerStartError(f"the server's Python {self.python_path!r} does not exist; point the add-on "
                                   f"preferences at the python of the venv where the Strata server is installed")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.token = secrets.token_urlsafe(24)
        env = dict(os.environ if self.env is None else self.env)
        env["STRATA_TOKEN"] = self.token
        env.setdefault("PYTHONUNBUFFERED", "1")
        log = open(self.log_path, "wb")
        try:
            self.process = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, cwd=self.cwd, env=env,
                # Own process group on POSIX, so a Ctrl+C in Blender's terminal does not kill the server mid-write.
                start_new_session=(os.name == "posix"))
        except OSError as e:
            log.close()
            raise ServerStartError(f"cannot start the Strata server ({' '.join(self.argv()[:3])} ...): {e}") from None
        log.close()
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read_stdout, args=(self.process, lines), daemon=True,
                         name="strata-server-stdout").start()
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None and lines.empty():
                    break
                continue
            if line is None:
                break
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("event") == "listening" and event.get("url"):
                self.url = str(event["url"]).rstrip("/")
                return self.url
        try:  # stdout closes a moment before the process is reaped: give it that moment for the exit code
            code = self.process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            code = None
        self.stop()
        why = (f"exited with code {code}" if code is not None
               else f"did not report listening within {self.startup_timeout_s:.0f} s")
        raise ServerStartError(f"the Strata server {why}. Its log ({self.log_path}) ends with:\n"
                               f"{tail_text(self.log_path) or '(empty)'}")

    @staticmethod
    def _read_stdout(process: subprocess.Popen, lines: queue.Queue) -> None:
        # Keeps draining stdout after startup so a chatty server never blocks on a full pipe.
        assert process.stdout is not None  # Popen(stdout=PIPE)
        for raw in iter(process.stdout.readline, b""):
            lines.put(raw.decode("utf-8", "replace").strip())
        lines.put(None)

    def is_alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_message(self) -> str:
        """Why the server is not running, for the UI: exit code and log tail."""
        if self.process is None:
            return "the Strata server has not been started"
        code = self.process.poll()
        if code is None:
            return f"the Strata server is running at {self.url}"
        return (f"the Strata server stopped (exit code {code}); press Restart server. "
                f"Log tail: {tail_text(self.log_path, 400) or '(empty)'}")

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate, then kill if it does not exit within ``timeout_s``."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout_s)
        if process.stdout is not None:
            process.stdout.close()
        self.process_exit_code = process.returncode


def count_cuda_gpus(python_path: str, timeout_s: float = 60.0) -> int | None:
    """How many CUDA GPUs the server's Python sees (torch), or None when it cannot tell (no torch, no python).

    Run from a background thread: importing torch takes seconds.
    """
    probe = "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)"
    try:
        done = subprocess.run([python_path, "-c", probe], capture_output=True, text=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines or not lines[-1].isdigit():
        return None
    return int(lines[-1])


def default_python() -> str:
    """The server's Python from env ``STRATA_SERVER_PYTHON``, else empty (the preferences explain what to set)."""
    return os.environ.get("STRATA_SERVER_PYTHON", "")


__all__ = ["AddonServerProcess", "ServerStartError", "count_cuda_gpus", "default_python", "qwen_serve_args",
           "tail_text", "tier_line"]


VRAM_TIERS = ("auto", "80", "24", "16", "12", "8")


def qwen_serve_args(backend: str, preset: str = "", vram: str = "auto", transformer: str = "") -> list[str]:
    """``strata serve`` options for the qwen backend's preset, VRAM tier and GGUF transformer (none for cpu)."""
    if backend == "cpu":
        return []
    if vram not in VRAM_TIERS:
        raise ServerStartError(f"VRAM tier must be one of {', '.join(VRAM_TIERS)}, got {vram!r}")
    args = ["--preset", preset] if preset else []
    args += ["--vram", vram]
    if transformer:
        args += ["--transformer", transformer]
    return args


def tier_line(health: dict) -> str:
    """What the preferences show about the GPU tier, from ``/v1/health``: the summary and why, or what is wrong."""
    tier = health.get("tier") or {}
    if tier.get("summary"):
        return f"{tier['summary']} ({tier.get('reason', '')})".replace(" ()", "")
    if health.get("backend_error"):
        return f"Qwen not loaded: {health['backend_error']}"
    if health.get("backend") == "cpu":
        return "CPU backend (no GPU tier)"
    return ""

