# SPDX-License-Identifier: GPL-3.0-or-later
"""The add-on's urllib client against a real `strata serve` subprocess (CPU backend): the calls Blender makes."""

import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from blender_addon.core.client import ServerClient, ServerError, encode_multipart
from blender_addon.core.job_runner import ExportRunner, JobRunner
from blender_addon.core.server_process import AddonServerProcess

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    process = AddonServerProcess(sys.executable, backend="cpu", data_dir=tmp_path_factory.mktemp("data"),
                                 cwd=str(REPO), env=env)
    process.start()
    yield process
    process.stop()


@pytest.fixture
def client(server):
    return ServerClient(server.url, server.token)


@pytest.fixture(scope="module")
def poster_png():
    from benchmarks.samples import make_flat_poster

    composite, _ = make_flat_poster(96, 72, seed=3)
    buffer = io.BytesIO()
    Image.fromarray(composite, "RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


def _wait(client, job_id, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.status(job_id)
        if status["status"] in ("succeeded", "failed", "canceled"):
            return status
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s} s")


def test_submit_poll_and_fetch_layers(client, poster_png):
    job_id = client.submit(poster_png, {"layers": 3, "backend": "cpu", "seed": 1})
    status = _wait(client, job_id)
    assert status["status"] == "succeeded", status
    manifest = client.manifest(job_id)
    assert (manifest["width_px"], manifest["height_px"]) == (96, 72)
    layers = [Image.open(io.BytesIO(client.layer_png(job_id, k))) for k in range(status["layers"])]
    assert all(layer.mode == "RGBA" and layer.size == (96, 72) for layer in layers)
    # The layers are the image: their "over" composite reproduces the input.
    out = np.zeros((72, 96, 3))
    for layer in layers:
        rgba = np.asarray(layer, np.float64) / 255.0
        out = rgba[..., :3] * rgba[..., 3:] + out * (1 - rgba[..., 3:])
    original = np.asarray(Image.open(io.BytesIO(poster_png)).convert("RGB"), np.float64) / 255.0
    psnr_db = 10 * np.log10(1.0 / np.mean((out - original) ** 2))
    assert psnr_db > 30, psnr_db
    assert client.preview_png(job_id).startswith(b"\x89PNG")
    assert client.export_job(job_id, "zip")[:2] == b"PK"


def test_server_detail_becomes_the_error_message(client, poster_png):
    with pytest.raises(ServerError) as caught:
        client.submit(b"definitely not an image", {"layers": 2})
    assert caught.value.status == 400 and "not a recognisable image" in str(caught.value)
    with pytest.raises(ServerError) as caught:
        client.submit(poster_png, {"layerz": 2})
    assert caught.value.status == 400 and "unknown parameter" in str(caught.value)
    with pytest.raises(ServerError) as caught:
        client.status("no-such-job")
    assert caught.value.status == 404


def test_unreachable_server_names_the_url():
    with pytest.raises(ServerError, match=r"cannot reach the Strata server at http://127.0.0.1:9") as caught:
        ServerClient("http://127.0.0.1:9", "x" * 20, timeout_s=2).health()
    assert caught.value.status is None


def test_job_runner_downloads_layers_atomically(client, poster_png, tmp_path):
    runner = JobRunner(lambda: client, poster_png, {"layers": 2, "backend": "cpu"}, tmp_path,
                       poll_interval_s=0.05).start()
    assert runner.join(60)
    snapshot = runner.snapshot()
    assert snapshot.status == "succeeded", snapshot.error
    assert snapshot.progress == 1.0
    result = snapshot.result
    assert [Path(p).name for p in result.layer_paths] == ["layer_00.png", "layer_01.png"]
    assert all(Path(p).parent == tmp_path / result.job_id for p in result.layer_paths)
    assert result.server_url == client.url
    # No temporary files left beside the layers.
    assert sorted(p.name for p in (tmp_path / result.job_id).iterdir()) == ["layer_00.png", "layer_01.png"]


def test_job_runner_reports_failures_instead_of_raising(tmp_path):
    dead = ServerClient("http://127.0.0.1:9", "x" * 20, timeout_s=2)
    runner = JobRunner(lambda: dead, b"\x89PNG\r\n\x1a\n", {"layers": 2}, tmp_path).start()
    assert runner.join(30)
    snapshot = runner.snapshot()
    assert snapshot.status == "failed" and "cannot reach" in snapshot.error
    assert list(tmp_path.iterdir()) == []


def test_export_runner_writes_the_file_off_the_calling_thread(client, poster_png, tmp_path):
    """What Blender's Export Camera View runs on its thread: the server's PPTX, written atomically, with notes."""
    layout = {"width_px": 96, "height_px": 72, "name": "view", "layers": [
        {"name": "poster", "x_px": 0, "y_px": 0, "width_px": 96, "height_px": 72, "opacity": 1.0, "visible": True}]}
    path = tmp_path / "out" / "view.pptx"
    runner = ExportRunner(lambda: client, "pptx", layout, [poster_png], path, notes=["an orbit warning"]).start()
    assert runner.join(60)
    snapshot = runner.snapshot()
    assert snapshot.status == "succeeded", snapshot.error
    assert path.read_bytes()[:2] == b"PK"  # a PPTX is a zip
    assert sorted(p.name for p in path.parent.iterdir()) == ["view.pptx"]
    assert snapshot.result.manifest["notes"] == ["an orbit warning", f"Exported 1 layer to {path}"]

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    runner = ExportRunner(lambda: client, "pptx", layout, [poster_png], blocker / "view.pptx").start()
    assert runner.join(60)
    snapshot = runner.snapshot()
    assert snapshot.status == "failed" and snapshot.error.startswith(f"cannot write {blocker / 'view.pptx'}")


def test_multipart_encoding_is_parsed_by_the_server_side_parser():
    from python_multipart.multipart import parse_options_header  # python-multipart, the server's parser
    body, content_type = encode_multipart({"params": json.dumps({"a": 1})},
                                          [("image", "x.png", b"\x00\x01", "image/png")])
    kind, options = parse_options_header(content_type)
    assert kind == b"multipart/form-data" and options[b"boundary"].decode() in body.decode("latin-1")
