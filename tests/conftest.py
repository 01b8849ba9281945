# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared fixtures for the server tests: a real ``strata serve`` subprocess on loopback, and an in-process app."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TERMINAL = ("succeeded", "failed", "canceled")


def missing_tool(reason: str) -> None:
    """A tool the tests read results back with (LibreOffice, ImageMagick) is absent: skip on a developer's machine,
    fail in CI, where scripts/setup.sh must have installed it (a skipped check there would pass silently)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI installs it through scripts/setup.sh)")
    pytest.skip(reason)


def png_bytes_of(image: Image.Image, format: str = "PNG", **save_args) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **save_args)
    return buffer.getvalue()


def sample_image(width_px: int = 96, height_px: int = 64) -> Image.Image:
    """A background gradient with two flat shapes: small, fast, and not trivially one layer."""
    y, x = np.mgrid[0:height_px, 0:width_px]
    rgb = np.stack([x * 255 // max(width_px - 1, 1), y * 255 // max(height_px - 1, 1), np.full_like(x, 90)], axis=2)
    rgb = rgb.astype(np.uint8)
    rgb[height_px // 4: height_px // 2, width_px // 5: width_px // 2] = (230, 30, 40)
    rgb[height_px // 2: height_px - 6, width_px // 2: width_px - 8] = (20, 40, 220)
    return Image.fromarray(rgb, "RGB")


def sample_png() -> bytes:
    return png_bytes_of(sample_image())


class ServerUnderTest:
    """``python -m inference_server serve`` on 127.0.0.1:0, as the Blender add-on starts it."""

    def __init__(self, data_dir: Path, extra_env: dict | None = None, args: tuple = (),
                 ready_timeout_s: float = 60) -> None:
        env = dict(os.environ, STRATA_TOKEN=TOKEN, PYTHONUNBUFFERED="1", **(extra_env or {}))
        self.data_dir = data_dir
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "inference_server", "serve", "--host", "127.0.0.1", "--port", "0",
             "--data-dir", str(data_dir), "--backend", "cpu", *args],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.stderr_lines: list[str] = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        line = self._read_listening_line(timeout_s=ready_timeout_s)
        announcement = json.loads(line)
        assert announcement["event"] == "listening", line
        self.url = announcement["url"]
        self.pid = announcement["pid"]

    def _drain_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    def _read_listening_line(self, timeout_s: float) -> str:
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout_s)
        if not result or not result[0]:
            self.stop()
            raise AssertionError("server did not announce itself; stderr:\n" + "".join(self.stderr_lines))
        return result[0]

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, headers=AUTH, timeout=30, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return requests.post(self.url + path, headers=AUTH, timeout=30, **kwargs)

    def submit(self, image_bytes: bytes | None = None, **params) -> str:
        files = {"image": ("input.png", image_bytes, "image/png")} if image_bytes is not None else None
        response = self.post("/v1/jobs", files=files, data={"params": json.dumps(params)})
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def wait(self, job_id: str, timeout_s: float = 60.0) -> dict:
        return wait_for_job(self.get, job_id, timeout_s)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def start_server(tmp_path):
    """Factory: start_server(data_dir=None, extra_env=None, args=()) -> ServerUnderTest, stopped after the test."""
    started: list[ServerUnderTest] = []

    def start(data_dir: Path | None = None, extra_env: dict | None = None, args: tuple = ()) -> ServerUnderTest:
        server = ServerUnderTest(data_dir or tmp_path / "data", extra_env, args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One real server subprocess shared by a test module."""
    process = ServerUnderTest(tmp_path_factory.mktemp("server-data"))
    yield process
    process.stop()


def make_client(data_dir: Path, **settings_overrides):
    """An in-process app (real worker process, real files) driven through Starlette's TestClient."""
    from fastapi.testclient import TestClient

    from inference_server.app import Settings, create_app

    settings = Settings(data_dir=data_dir, token=TOKEN, backend="cpu", **settings_overrides)
    client = TestClient(create_app(settings), base_url="http://127.0.0.1", headers=AUTH)
    return client


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with make_client(tmp_path_factory.mktemp("client-data")) as test_client:
        yield test_client


def wait_client(client, job_id: str, timeout_s: float = 30.0) -> dict:
    return wait_for_job(client.get, job_id, timeout_s)


def wait_for_job(get, job_id: str, timeout_s: float) -> dict:
    """Poll ``GET /v1/jobs/{id}`` (through ``get(path)``: requests or TestClient) until the job is terminal."""
    deadline = time.monotonic() + timeout_s
    while True:
        record = get(f"/v1/jobs/{job_id}").json()
        if record["status"] in TERMINAL:
            return record
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {record['status']} after {timeout_s} s: {record}")
        time.sleep(0.02)
