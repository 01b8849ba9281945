# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``strata`` command as a user runs it (a subprocess: real exit codes, real stderr)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import requests
from conftest import REPO, png_bytes_of, sample_image

from inference_server.layers import LayerStack


def strata(*args, env_extra=None, timeout_s=120):
    env = {key: value for key, value in os.environ.items() if key != "STRATA_TOKEN"}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "inference_server", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout_s)


def test_decompose_writes_a_layer_folder(tmp_path):
    image_path = tmp_path / "in.png"
    image_path.write_bytes(png_bytes_of(sample_image(80, 60)))
    out = tmp_path / "out"
    result = strata("decompose", image_path, "-n", 3, "-o", out, "--backend", "cpu", "--seed", 5)
    assert result.returncode == 0, result.stderr
    assert "wrote 3 layers" in result.stdout
    stack = LayerStack.load(out)
    assert len(stack.layers) == 3 and (stack.width_px, stack.height_px) == (80, 60)
    assert stack.backend == "cpu" and stack.params["seed"] == 5

    again = strata("decompose", image_path, "-n", 3, "-o", out, "--backend", "cpu")
    assert again.returncode == 2 and "--force" in again.stderr, "an existing result must not be overwritten silently"


def test_decompose_auto_chooses_the_count(tmp_path):
    image_path = tmp_path / "in.png"
    image_path.write_bytes(png_bytes_of(sample_image(120, 90)))
    out = tmp_path / "out"
    result = strata("decompose", image_path, "-n", "auto", "-o", out, "--backend", "cpu")
    assert result.returncode == 0, result.stderr
    assert "note: layers: auto; found" in result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["layers"] == "auto" and manifest["layer_count"]["chosen_by_backend"]
    assert manifest["layer_count"]["returned"] == len(manifest["layers"]) >= 2

    bad = strata("decompose", image_path, "-n", "many", "-o", tmp_path / "bad", "--backend", "cpu")
    assert bad.returncode == 2 and "a whole number of layers or 'auto'" in bad.stderr



def test_decompose_auto_on_a_machine_without_a_gpu_says_why_once(tmp_path):
    # This machine (and CI) has no CUDA GPU: `auto` runs the CPU decomposer and says why, once on stderr.
    image_path = tmp_path / "in.png"
    image_path.write_bytes(png_bytes_of(sample_image(80, 60)))
    result = strata("decompose", image_path, "-n", 2, "-o", tmp_path / "out", "--backend", "auto")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("runs the CPU decomposer, not Qwen-Image-Layered") == 1, result.stderr
    assert result.stderr.count("running the CPU decomposer") == 0, result.stderr


def test_decompose_layer_of_a_finished_folder_keeps_the_tree(tmp_path):
    import numpy as np
    from PIL import Image

    from benchmarks.samples import make_flat_poster

    poster, _ = make_flat_poster(160, 120, seed=2)
    image_path = tmp_path / "poster.png"
    Image.fromarray(poster).save(image_path)
    parent = tmp_path / "parent"
    assert strata("decompose", image_path, "-n", 3, "-o", parent, "--backend", "cpu").returncode == 0
    child = tmp_path / "child"
    result = strata("decompose", parent, "--layer", 0, "-n", 2, "-o", child, "--backend", "cpu")
    assert result.returncode == 0, result.stderr

    child_stack = LayerStack.load(child)
    assert child_stack.parent == {"folder": str(parent.resolve()), "layer": 0}
    parent_manifest = json.loads((parent / "manifest.json").read_text())
    assert parent_manifest["children"] == {"0": [str(child.resolve())]}
    # The sub-layers recompose layer 0 of the parent.
    layer_0 = LayerStack.load(parent).layers[0].rgba.astype(int)
    assert np.abs(child_stack.composite().astype(int) - layer_0).mean() <= 1.0
    # Exporting the parent as a zip takes the tree along; unzipped, the manifest's children resolve beside it.
    result = strata("export", parent, "--zip", tmp_path / "tree.zip")
    assert result.returncode == 0, result.stderr
    import zipfile

    with zipfile.ZipFile(tmp_path / "tree.zip") as archive:
        archive.extractall(tmp_path / "unzipped")
    unzipped = tmp_path / "unzipped" / "parent"
    children = json.loads((unzipped / "manifest.json").read_text())["children"]
    assert children == {"0": ["children/child"]}
    unzipped_child = LayerStack.load(unzipped / children["0"][0])
    assert len(unzipped_child.layers) == len(child_stack.layers)
    np.testing.assert_array_equal(unzipped_child.composite(), child_stack.composite())

    bad = strata("decompose", parent, "--layer", 7, "-o", tmp_path / "bad", "--backend", "cpu")
    assert bad.returncode == 2 and "layers 0–2" in bad.stderr
    not_folder = strata("decompose", image_path, "--layer", 0, "-o", tmp_path / "bad", "--backend", "cpu")
    assert not_folder.returncode == 2 and "not a decomposition folder" in not_folder.stderr


@pytest.mark.parametrize("setup, args, words", [
    ("missing", ["-n", "3"], "no such file"),
    ("text", ["-n", "3"], "not a recognisable image"),
    ("tiny", ["-n", "3"], "at least 16 px"),
    ("ok", ["-n", "0"], "between 1 and 16"),
    ("ok", ["-n", "many"], "whole number"),
])
def test_decompose_bad_input_exits_2_without_traceback(tmp_path, setup, args, words):
    image_path = tmp_path / "in.png"
    if setup == "text":
        image_path.write_text("hello")
    elif setup == "tiny":
        image_path.write_bytes(png_bytes_of(sample_image(4, 4)))
    elif setup == "ok":
        image_path.write_bytes(png_bytes_of(sample_image()))
    result = strata("decompose", image_path, *args, "-o", tmp_path / "out", "--backend", "cpu")
    assert result.returncode == 2, result.stderr
    assert words in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_serve_refuses_a_public_address_without_allow_remote(tmp_path):
    result = strata("serve", "--host", "0.0.0.0", "--port", 0, "--data-dir", tmp_path, timeout_s=30)
    assert result.returncode == 2 and "--allow-remote" in result.stderr


def test_serve_allow_remote_needs_a_chosen_token(tmp_path):
    result = strata("serve", "--host", "0.0.0.0", "--allow-remote", "--port", 0, "--data-dir", tmp_path, timeout_s=30)
    assert result.returncode == 2 and "STRATA_TOKEN" in result.stderr


def test_serve_generates_and_prints_a_token_when_none_is_set(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "STRATA_TOKEN"}
    proc = subprocess.Popen([sys.executable, "-m", "inference_server", "serve", "--port", "0", "--data-dir",
                             str(tmp_path), "--backend", "cpu"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        token = proc.stderr.readline().split("generated token: ")[1].strip()
        url = json.loads(proc.stdout.readline())["url"]
        assert url.startswith("http://127.0.0.1:") and len(token) >= 32
        assert requests.get(url + "/v1/health", headers={"Authorization": f"Bearer {token}"}, timeout=10).ok
        assert requests.get(url + "/v1/health", timeout=10).status_code == 401
    finally:
        proc.terminate()
        proc.wait(15)


def test_serve_with_an_unusable_data_dir_says_so_in_one_line(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    result = strata("serve", "--port", 0, "--data-dir", tmp_path / "a-file" / "data", timeout_s=30)
    assert result.returncode == 2, result.stderr
    assert "cannot use --data-dir" in result.stderr and "Traceback" not in result.stderr


def test_decompose_into_an_unwritable_place_says_so_in_one_line(tmp_path):
    image_path = tmp_path / "in.png"
    image_path.write_bytes(png_bytes_of(sample_image()))
    (tmp_path / "a-file").write_text("not a folder")
    result = strata("decompose", image_path, "-n", 2, "-o", tmp_path / "a-file" / "out", "--backend", "cpu")
    assert result.returncode == 2, result.stderr
    assert "cannot write" in result.stderr and "Traceback" not in result.stderr
