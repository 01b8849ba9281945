# SPDX-License-Identifier: GPL-3.0-or-later
"""The README's one command, ``scripts/demo.py``, end to end at a tiny size: every file it lists is there; a re-run
on the user's own image (``--image``) replaces the first run's layers instead of adding a second job folder.

It runs in a child process: the demo imports bpy itself (once per process) and starts its own server.
"""

import os
import subprocess
import sys

from conftest import REPO, SERVER_PYTHON


def test_demo_writes_the_stack_preview_and_exports(tmp_path):
    out = tmp_path / "demo"
    env = dict(os.environ, STRATA_SERVER_PYTHON=SERVER_PYTHON, BLENDER_USER_RESOURCES=str(tmp_path / "user"))
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "demo.py"), "--out", str(out), "--size", "96x72",
                             "--layers", "2", "--frames", "4", "--preview-percent", "100"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    listed = [line.split("  (")[0].strip() for line in result.stdout.split("wrote:")[-1].splitlines() if "KiB)" in line]
    names = [os.path.relpath(path, out) for path in listed]
    assert {"poster.png", "poster.blend", "parallax.gif", "parallax_view.pptx", "parallax_view.psd", "parallax.glb",
            os.path.join("web", "index.html")} <= set(names)
    layers = [name for name in names if name.startswith("strata" + os.sep)]
    assert len(layers) == 2 and all(name.endswith(".png") for name in layers)  # beside the .blend
    for path in listed:
        assert os.path.getsize(path) > 0, path
    assert open(out / "parallax_view.pptx", "rb").read(2) == b"PK"
    assert open(out / "parallax_view.psd", "rb").read(4) == b"8BPS"
    assert open(out / "parallax.glb", "rb").read(4) == b"glTF"
    # The rest view is exported too, and the log says which frame is which.
    assert {"rest_view.pptx", "rest_view.psd"} <= set(names)
    assert "at the peak of the move (frame 3)" in result.stdout and "at rest (frame 1)" in result.stdout

    # Again on the user's own image (the poster just written) into the same folder: one job folder, not two.
    poster = tmp_path / "mine.png"
    os.replace(out / "poster.png", poster)
    again = subprocess.run([sys.executable, str(REPO / "scripts" / "demo.py"), "--out", str(out), "--image",
                            str(poster), "--layers", "2", "--frames", "4", "--preview-percent", "100"],
                           env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"decomposing {poster}" in again.stdout and not (out / "poster.png").exists()
    assert len(list((out / "strata").iterdir())) == 1
