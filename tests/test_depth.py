# SPDX-License-Identifier: GPL-3.0-or-later
"""Depth per layer: the hidden-area completion, the 16-bit files, and the real loading path on a tiny random
Depth Anything built offline (``scripts/make_tiny_depth_anything.py``), through the CLI and the HTTP API."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
from conftest import REPO, png_bytes_of, sample_image
from PIL import Image

from inference_server import depth

sys.path.insert(0, str(REPO / "scripts"))


@pytest.fixture(scope="module")
def tiny_depth_model(tmp_path_factory):
    from make_tiny_depth_anything import build_tiny_depth_model

    return build_tiny_depth_model(tmp_path_factory.mktemp("tiny-depth"))


def test_hidden_area_of_a_tilted_plane_is_continued_from_its_surroundings():
    height_px, width_px = 120, 160
    y, x = np.mgrid[:height_px, :width_px]
    tilted = (0.2 + 0.6 * x / width_px + 0.1 * y / height_px).astype(np.float32)
    # The composite's depth: the background's tilted plane, and a near box in front of it.
    seen = tilted.copy()
    seen[30:90, 50:110] = 5.0
    back = np.ones((height_px, width_px), np.float32)
    front = np.zeros_like(back)
    front[30:90, 50:110] = 1.0
    back_map, front_map = depth.layer_depths(seen, [back, front])
    hidden = front > 0
    assert np.abs(back_map[~hidden] - tilted[~hidden]).max() == 0, "seen pixels keep the model's depth"
    # Behind the box the background continues its plane, nowhere near the box's depth.
    assert np.abs(back_map[hidden] - tilted[hidden]).max() < 0.08
    assert np.all(front_map[hidden] == 5.0) and np.abs(front_map[~hidden] - 5.0).max() < 1e-3


def test_depth_maps_share_one_scale_and_round_trip_as_16_bit_png(tmp_path):
    maps = depth.encode_depth_maps([np.full((4, 5), 1.0, np.float32), np.full((4, 5), 3.0, np.float32)])
    assert maps[0].max() == 0 and maps[1].min() == 65535
    depth.write_depth_maps(tmp_path, maps)
    with Image.open(tmp_path / "depth_01.png") as image:
        assert image.mode == "I;16"
    assert np.array_equal(depth.read_depth_map(tmp_path / "depth_01.png"), maps[1])


def test_an_unknown_depth_model_is_a_clear_error(monkeypatch, tmp_path):
    from inference_server.errors import ModelUnavailable

    with pytest.raises(ModelUnavailable, match="STRATA_DEPTH_MODEL"):
        depth.DepthEstimator(str(tmp_path / "nothing-here"))


def test_a_missing_depth_model_fails_the_cli_before_decomposing(tmp_path):
    from test_cli import strata

    image_path = tmp_path / "in.png"
    image_path.write_bytes(png_bytes_of(sample_image(80, 60)))
    result = strata("decompose", image_path, "-n", 2, "-o", tmp_path / "out", "--backend", "cpu", "--depth",
                    "--quiet", env_extra={"STRATA_DEPTH_MODEL": str(tmp_path / "no-model"), "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1 and "STRATA_DEPTH_MODEL" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_cli_depth_writes_a_depth_map_per_layer(tmp_path, tiny_depth_model):
    from test_cli import strata

    image_path = tmp_path / "in.png"
    image_path.write_bytes(png_bytes_of(sample_image(80, 60)))
    out = tmp_path / "out"
    result = strata("decompose", image_path, "-n", 3, "-o", out, "--backend", "cpu", "--depth", "--quiet",
                    env_extra={"STRATA_DEPTH_MODEL": str(tiny_depth_model), "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["depth"] is True
    assert manifest["depth"]["files"] == [f"depth_{k:02d}.png" for k in range(len(manifest["layers"]))]
    assert manifest["depth"]["model"] == str(tiny_depth_model)
    maps = [depth.read_depth_map(out / name) for name in manifest["depth"]["files"]]
    assert all(m.shape == (60, 80) and m.dtype == np.uint16 for m in maps)
    assert min(int(m.min()) for m in maps) == 0 and max(int(m.max()) for m in maps) == 65535
    # The zip export carries the depth maps its manifest names.
    archive = tmp_path / "layers.zip"
    assert strata("export", out, "--zip", archive).returncode == 0
    import zipfile

    with zipfile.ZipFile(archive) as opened:
        zipped = {name.split("/", 1)[1] for name in opened.namelist()}
    assert set(manifest["depth"]["files"]) <= zipped


def test_api_job_with_depth_serves_depth_maps(start_server, tiny_depth_model):
    server = start_server(extra_env={"STRATA_DEPTH_MODEL": str(tiny_depth_model), "HF_HUB_OFFLINE": "1"})
    job = server.submit(png_bytes_of(sample_image(96, 64)), layers=3, depth=True)
    record = server.wait(job)
    assert record["status"] == "succeeded", record
    manifest = server.get(f"/v1/jobs/{job}/manifest").json()
    for index in range(record["layers"]):
        response = server.get(f"/v1/jobs/{job}/depth/{index}.png")
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(response.content)) as image:
            assert image.mode == "I;16" and image.size == (96, 64)
    assert len(manifest["depth"]["files"]) == record["layers"]
    plain = server.submit(png_bytes_of(sample_image(96, 64)), layers=2)
    assert server.wait(plain)["status"] == "succeeded"
    missing = server.get(f"/v1/jobs/{plain}/depth/0.png")
    assert missing.status_code == 404 and "depth" in missing.json()["detail"]
    bad = server.post("/v1/jobs", files={"image": ("a.png", png_bytes_of(sample_image()), "image/png")},
                      data={"params": json.dumps({"depth": "yes"})})
    assert bad.status_code == 400 and "depth must be true or false" in bad.json()["detail"]
