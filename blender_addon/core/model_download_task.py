# SPDX-License-Identifier: GPL-3.0-or-later
"""Download Model: run ``python -m inference_server.model_download`` in the server's env and follow its progress.

The download itself lives in the server package (it needs huggingface_hub, which Blender's Python lacks); this
task reads its JSON lines: ``plan`` → the tier and the files, ``file`` → bytes of the file in flight, ``done`` or
``error``. A cancel kills the process; the file in flight stays as a ``.part`` and the next run resumes it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .background_task import BackgroundTask, TaskError

DEFAULT_MODEL = "Qwen/Qwen-Image-Layered"
MARKER_NAME = ".strata-download.json"  # written by the server's model_download once every file is in place


def models_dir(root: str | os.PathLike) -> Path:
    return Path(root) / "models"


def model_folder(root: str | os.PathLike, model: str = "", gguf: str = "") -> Path:
    """Where Download Model puts ``model`` (a Hub id; its owner/name becomes one folder name)."""
    name = (model or DEFAULT_MODEL).replace("/", "--")
    if gguf:
        name += "--" + Path(gguf).stem
    return models_dir(root) / name


def downloaded(folder: str | os.PathLike) -> dict:
    """The finished download's record ({'repo', 'tier', 'description', ...}) or {} when it is not complete."""
    try:
        record = json.loads((Path(folder) / MARKER_NAME).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _size(num_bytes) -> str:
    if num_bytes is None:
        return "?"
    return f"{num_bytes / 2**30:.2f} GB" if num_bytes >= 2**30 else f"{num_bytes / 2**20:.1f} MB"


@dataclass
class DownloadOptions:
    python: str  # the server env's python
    local_dir: str  # model_folder(...)
    model: str = ""  # Hub id ('' = the server's default)
    gguf: str = ""  # OWNER/REPO/FILE.gguf for the transformer, optional
    log_path: str | None = None
    env: dict | None = None  # e.g. PYTHONPATH for a source checkout, HF_ENDPOINT for a mirror
    plan_only: bool = False


class ModelDownload(BackgroundTask):
    name = "download"

    def __init__(self, options: DownloadOptions) -> None:
        super().__init__(log_path=options.log_path)
        self.options = options
        self.plan: dict = {}

    def argv(self) -> list[str]:
        options = self.options
        argv = [options.python, "-m", "inference_server.model_download", "--local-dir", options.local_dir]
        if options.model:
            argv += ["--model", options.model]
        if options.gguf:
            argv += ["--gguf", options.gguf]
        if options.plan_only:
            argv.append("--plan-only")
        return argv

    def run(self) -> dict:
        if not self.options.python or not os.path.isfile(self.options.python):
            raise TaskError("no server installed yet: press Install Server first (the download runs in the server's "
                            "Python, which has huggingface_hub)")
        self.set_stage("asking the Hub for the files", 0.0)
        result: dict = {}
        done_bytes: dict[str, int] = {}

        def on_line(line: str) -> None:
            try:
                event = json.loads(line)
            except ValueError:
                return  # a warning from a library: already in the log
            if not isinstance(event, dict):
                return
            kind = event.get("event")
            if kind == "plan":
                self.plan = event
                total = event.get("total_bytes") or 0
                self.set_progress(0.0, stage=f"tier {event.get('tier')}: {len(event.get('files', []))} files, "
                                             f"{_size(total)} ({_size(event.get('have_bytes'))} already here)")
            elif kind == "file":
                done_bytes[event["name"]] = event.get("bytes") or 0
                total = self.plan.get("total_bytes") or 0
                have = sum(done_bytes.values())
                fraction = have / total if total else 0.0
                self.set_progress(fraction, stage=f"file {event.get('index', 0) + 1}/{event.get('count')}: "
                                                  f"{event['name']} {_size(event.get('bytes'))} of "
                                                  f"{_size(event.get('size'))}")
            elif kind in ("done", "error"):
                result.update(event)

        code, _ = self.run_process(self.argv(), on_line, env=self.options.env)
        if result.get("event") == "error":
            raise TaskError(result.get("detail") or "the download failed")
        if code != 0 or result.get("event") != "done":
            raise TaskError(f"the download process exited with code {code}; see {self.log_path or 'its log'}")
        return {"path": result.get("path"), "tier": self.plan.get("tier"),
                "description": self.plan.get("description"), "total_bytes": self.plan.get("total_bytes")}


__all__ = ["DownloadOptions", "ModelDownload", "downloaded", "model_folder"]
