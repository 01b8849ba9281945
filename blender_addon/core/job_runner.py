# SPDX-License-Identifier: GPL-3.0-or-later
"""Run server work off the main thread: a decomposition job ((start the server,) submit, poll, download the layers)
or a camera-view export (upload the layers and layout, write the file).

Blender's main thread must never wait on the network, so a runner does all HTTP on a daemon thread and exposes
``snapshot()``, a copy of its state taken under a lock. The Blender side (``job_watch.tick``) reads the snapshot
from a timer and builds the stack once the layers are on disk.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .client import ServerClient, ServerError

_LAYER_FILE = re.compile(r"layer_(\d+)\.png$")
TERMINAL = ("succeeded", "failed", "canceled")


def process_umask() -> int:
    """The process umask, read without changing it where the OS says (os.umask can only be read by setting it,
    which races with threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write beside ``path``, fsync, then rename: a crash never leaves a half-written layer behind.

    Twin of ``inference_server.layers.write_bytes_atomic`` on purpose: the extension ships without the server
    package (and Blender's Python lacks its dependencies), so it cannot import it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes 0600 files: give the result the mode any new file gets
            os.fchmod(fd, 0o666 & ~process_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise


def layer_file_name(index: int) -> str:
    return f"layer_{index:02d}.png"


def layer_file_index(path: str) -> int | None:
    """The layer index a ``layer_file_name`` file carries (``.../layer_03.png`` → 3), or None for another file."""
    match = _LAYER_FILE.search(os.path.basename(path))
    return int(match.group(1)) if match else None


def depth_file_name(index: int) -> str:
    """The depth map of layer ``index``, beside it (as the server's ``depth.depth_file_name`` names it)."""
    return f"depth_{index:02d}.png"


@dataclass
class JobResult:
    job_id: str
    server_url: str
    layer_paths: list[str]
    names: list[str]
    width_px: int
    height_px: int
    manifest: dict[str, Any]


@dataclass
class ExportResult:
    """A written export; ``manifest["notes"]`` is what the panel shows afterwards (like a job's notes)."""

    path: str
    manifest: dict[str, Any]


@dataclass
class JobSnapshot:
    """What the UI shows. ``status`` follows the server (queued|running|succeeded|failed|canceled) plus 'starting'."""

    status: str = "starting"
    stage: str = ""
    step: int = 0
    total: int = 0
    error: str = ""
    job_id: str = ""
    result: JobResult | ExportResult | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def progress(self) -> float:
        if self.status == "succeeded":
            return 1.0
        return min(1.0, self.step / self.total) if self.total > 0 else 0.0


class _Runner:
    """A daemon thread running ``_run_steps`` with a lock-protected ``JobSnapshot``; ``start()``, ``snapshot()``,
    ``cancel()``, ``join()``. ``connect()`` returns a ``ServerClient`` and may take seconds (it may start the
    server): it runs on the thread."""

    def __init__(self, connect: Callable[[], ServerClient], state: JobSnapshot, name: str) -> None:
        self._connect = connect
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._state = state
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)

    def start(self):
        self._thread.start()
        return self

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            return dataclasses.replace(self._state)

    def cancel(self) -> None:
        """Ask for cancellation: the thread forwards it to the server and reports 'canceled'."""
        self._cancel.set()

    def join(self, timeout_s: float | None = None) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _update(self, **changes: Any) -> None:
        with self._lock:
            self._state = dataclasses.replace(self._state, **changes)

    def _canceled(self) -> bool:
        """True, with the state set to 'canceled', once ``cancel()`` was asked for."""
        if self._cancel.is_set():
            self._update(status="canceled", stage="canceled")
            return True
        return False

    def _run(self) -> None:
        try:
            self._run_steps()
        except ServerError as e:
            self._update(status="failed", error=str(e))
        except Exception as e:  # anything else must still end the job, or the UI waits forever
            self._update(status="failed", error=f"{type(e).__name__}: {e}")

    def _run_steps(self) -> None:
        raise NotImplementedError


class JobRunner(_Runner):
    """``JobRunner(connect, image_bytes, params, output_dir).start()``; poll ``snapshot()``; ``cancel()``.

    ``job_id`` skips the submit when the caller already submitted (to report submit errors immediately).
    ``choose_input(client) -> (image_bytes, extra params)``, if given, decides on the thread what to submit once
    the server is up (a recursive job whose parent is on that server, else an upload).
    Layers land in ``output_dir/<job_id>/layer_XX.png``.
    """

    def __init__(self, connect: Callable[[], ServerClient], image_bytes: bytes | None, params: dict,
                 output_dir: str | os.PathLike, job_id: str = "", poll_interval_s: float = 0.25,
                 file_name: str = "image.png",
                 choose_input: Callable[[ServerClient], tuple[bytes | None, dict]] | None = None) -> None:
        super().__init__(connect, JobSnapshot(job_id=job_id, status="queued" if job_id else "starting"),
                         "strata-job")
        self._image_bytes = image_bytes
        self._params = dict(params)
        self._output_dir = Path(output_dir)
        self._file_name = file_name
        self._poll_interval_s = poll_interval_s
        self._choose_input = choose_input

    def _run_steps(self) -> None:
        # 1. Connect (may start the server)
        self._update(stage="connecting to the server")
        client = self._connect()
        job_id = self._state.job_id
        if not job_id and self._canceled():
            return

        # 2. Submit
        if not job_id:
            image_bytes, params = self._image_bytes, self._params
            if self._choose_input is not None:
                image_bytes, extra = self._choose_input(client)
                params = {**params, **extra}
            self._update(stage="uploading" if image_bytes is not None else "submitting")
            job_id = client.submit(image_bytes, params, self._file_name)
            self._update(job_id=job_id, status="queued", stage="queued")

        # 3. Poll until the job ends, forwarding a cancel request once
        cancel_sent = False
        while True:
            if self._cancel.is_set() and not cancel_sent:
                cancel_sent = True
                try:
                    client.cancel(job_id)
                except ServerError as e:
                    if e.status != 409:  # 409: the job already ended; its status tells how
                        raise
            status = client.status(job_id)
            state = str(status.get("status", ""))
            self._update(status=state if state != "succeeded" else "running",
                         stage=str(status.get("stage") or state), step=int(status.get("step") or 0),
                         total=int(status.get("total") or 0))
            if state == "failed":
                self._update(status="failed", error=str(status.get("error") or "the job failed on the server"))
                return
            if state == "canceled":
                self._update(status="canceled", stage="canceled")
                return
            if state == "succeeded":
                break
            time.sleep(self._poll_interval_s)

        # 4. Download the layers, each written atomically
        manifest = client.manifest(job_id)
        layers = manifest.get("layers") or []
        count = int(status.get("layers") or len(layers))
        folder = self._output_dir / job_id
        paths, names = [], []
        for index in range(count):
            if self._canceled():
                return
            self._update(stage="downloading layers", step=index, total=count)
            path = folder / layer_file_name(index)
            write_bytes_atomic(path, client.layer_png(job_id, index))
            paths.append(str(path))
            entry = layers[index] if index < len(layers) and isinstance(layers[index], dict) else {}
            names.append(str(entry.get("name") or ("Background" if index == 0 else f"Layer {index}")))
        # 4b. Depth maps beside the layers (depth_XX.png), when the job estimated them: Relief reads them there.
        depth_files = (manifest.get("depth") or {}).get("files") or []
        for index, name in enumerate(depth_files[:count]):
            if self._canceled():
                return
            self._update(stage="downloading depth", step=index, total=count)
            write_bytes_atomic(folder / os.path.basename(str(name)), client.depth_png(job_id, index))
        result = JobResult(job_id=job_id, server_url=client.url, layer_paths=paths, names=names,
                           width_px=int(manifest.get("width_px") or 0), height_px=int(manifest.get("height_px") or 0),
                           manifest=manifest)
        self._update(status="succeeded", stage="done", step=count, total=count, result=result)


class ExportRunner(_Runner):
    """Export Blender's camera view through the server: ``ExportRunner(connect, 'pptx', layout, pngs, path)``.

    The server renders the file (seconds for big layers) and the add-on may have to start it first: both happen on
    the thread. The file is written atomically; ``notes`` (e.g. the view export's warnings) come back in the
    result's manifest, followed by where the file went.
    """

    def __init__(self, connect: Callable[[], ServerClient], kind: str, layout: dict, layer_pngs: list[bytes],
                 path: str | os.PathLike, notes: list[str] | None = None) -> None:
        super().__init__(connect, JobSnapshot(), "strata-export")
        self._kind = kind
        self._layout = layout
        self._layer_pngs = layer_pngs
        self._path = Path(path)
        self._notes = list(notes or [])

    def _run_steps(self) -> None:
        # 1. Connect (may start the server)
        self._update(status="running", stage="connecting to the server")
        client = self._connect()
        if self._canceled():
            return

        # 2. The server lays the layers out into the file
        self._update(stage=f"exporting {self._kind.upper()}")
        data = client.export_layout(self._kind, self._layout, self._layer_pngs)
        if self._canceled():
            return

        # 3. Write it (atomically: an existing file is replaced only by a complete one)
        try:
            write_bytes_atomic(self._path, data)
        except OSError as e:
            self._update(status="failed", error=f"cannot write {self._path}: {e.strerror or e}")
            return
        count = len(self._layer_pngs)
        notes = self._notes + [f"Exported {count} layer{'s' if count != 1 else ''} to {self._path}"]
        self._update(status="succeeded", stage="done",
                     result=ExportResult(path=str(self._path), manifest={"notes": notes}))
