# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures for the Blender tests: real bpy (one import per process), the add-on enabled, a real CPU server.

Run them in the Blender venv, in one pytest process (bpy can be imported only once):

    .venv-blender/bin/python -m pytest tests/blender -q

The server is a real ``strata serve`` subprocess started by the add-on itself, with the server venv's Python
(env ``STRATA_SERVER_PYTHON``, default ``<repo>/.venv/bin/python``).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SERVER_PYTHON = os.environ.get("STRATA_SERVER_PYTHON", str(REPO / ".venv" / "bin" / "python"))

# Blender reads its user folders when bpy is imported: point them at a throw-away folder before that, so tests
# never touch the real ~/.config/blender (layers of unsaved files and installed extensions land there).
_USER_RESOURCES = tempfile.mkdtemp(prefix="strata-blender-user-")
os.environ["BLENDER_USER_RESOURCES"] = _USER_RESOURCES

bpy = pytest.importorskip("bpy", reason="the Blender tests need the bpy module (pip install bpy==5.0.1)")

ADDON = "blender_addon"
EXTENSION = "bl_ext.user_default.strata"  # the add-on installed from the built zip


_exit_status = [0]


def missing_tool(reason: str) -> None:
    """A tool or driver a test needs is absent: skip on a developer's machine, fail in CI (see tests/conftest.py)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI installs it through scripts/setup.sh)")
    pytest.skip(reason)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_USER_RESOURCES, ignore_errors=True)
    _exit_status[0] = int(exitstatus)


def pytest_unconfigure(config):
    """bpy 4.2's module segfaults in its exit handlers once any Python property callback was registered (even
    after unregistering; a three-line PropertyGroup with ``update=`` reproduces it), and 4.5's can hang in them: after
    pytest has reported, leave without running them, with pytest's own exit status. 5.0 exits cleanly."""
    if bpy.app.version < (5, 0, 0):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status[0])


@pytest.fixture(scope="session")
def addon():
    """The add-on enabled as a legacy module from the repo, configured to start a CPU server; → its module name."""
    import addon_utils

    if not Path(SERVER_PYTHON).exists():
        pytest.skip(f"no server Python at {SERVER_PYTHON}: set STRATA_SERVER_PYTHON")
    sys.path.insert(0, str(REPO))
    module = addon_utils.enable(ADDON, default_set=True, handle_error=None)
    assert module is not None, "the add-on failed to register"
    configure_local_server(prefs())
    yield ADDON
    addon_utils.disable(ADDON, default_set=True)


def prefs():
    return bpy.context.preferences.addons[ADDON].preferences


def configure_local_server(preferences):
    preferences.connection = 'START'
    preferences.server_python = SERVER_PYTHON
    preferences.server_command = ""
    preferences.server_source_dir = str(REPO)  # the repo is not pip-installed into the server venv
    preferences.backend = 'cpu'
    preferences.layer_storage = 'FILES'
    preferences.pixel_exact = True


@pytest.fixture
def local_server(addon):
    """Preferences pointing at the add-on's own local CPU server (restored after tests that change them)."""
    configure_local_server(prefs())
    yield prefs()
    configure_local_server(prefs())


def reset_scene():
    """An empty, unsaved file with one camera at an arbitrary pose, so exactness does not rely on a trivial camera."""
    job_watch = sys.modules.get(f"{ADDON}.job_watch")
    if job_watch is not None and job_watch.active() is not None:
        job_watch.unregister()  # a job a failed test left running: the next test must not fail on "wait for it"
    bpy.ops.wm.read_homefile(use_empty=True)  # also forgets a previous test's saved .blend path
    for collection in list(bpy.data.collections):
        bpy.data.collections.remove(collection)
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    for blocks in (bpy.data.meshes, bpy.data.materials, bpy.data.images, bpy.data.cameras, bpy.data.lights):
        for block in list(blocks):
            blocks.remove(block)
    scene = bpy.context.scene
    data = bpy.data.cameras.new("Test Camera")
    data.lens = 35.0
    camera = bpy.data.objects.new("Test Camera", data)
    scene.collection.objects.link(camera)
    camera.location = (1.0, -8.0, 2.0)
    camera.rotation_euler = (1.40, 0.0, 0.35)
    scene.camera = camera
    settings = scene.strata
    settings.image = None
    settings.image_path = ""
    settings.job_id = settings.job_status = settings.job_stage = settings.job_message = ""
    settings.job_progress = 0.0
    bpy.context.view_layer.update()
    return scene


@pytest.fixture
def scene(addon):
    return reset_scene()


@pytest.fixture(scope="session")
def sample_png(tmp_path_factory):
    """A 160×120 flat poster (background, shapes, text) drawn by the server package's sample generator."""
    path = tmp_path_factory.mktemp("samples") / "poster.png"
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from benchmarks.samples import save_sample; "
            "save_sample(sys.argv[2], 'flat', 160, 120, seed=7)")
    subprocess.run([SERVER_PYTHON, "-c", code, str(REPO), str(path)], check=True, timeout=120)
    return path


def psnr_db(a, b, peak=255.0):
    """PSNR of two images of values in [0, ``peak``] (255: uint8 renders and composites; 1.0: bpy float pixels)."""
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(peak ** 2 / mse))


def render_camera_view(scene, path, samples=4):
    """The scene camera's view rendered with Cycles on the CPU to ``path``; → H×W×3 uint8."""
    from PIL import Image

    scene.render.engine = 'CYCLES'
    scene.cycles.device = 'CPU'
    scene.cycles.samples = samples
    scene.render.dither_intensity = 0.0
    scene.render.image_settings.file_format = 'PNG'
    scene.render.image_settings.color_mode = 'RGB'
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    return np.asarray(Image.open(path).convert("RGB"))


def _wait_for_job(timeout_s=90.0):
    """Call job_watch.tick() until the job ends, as Blender's timer would (timers never fire in the bpy module)."""
    job_watch = sys.modules[f"{ADDON}.job_watch"]
    deadline = time.monotonic() + timeout_s
    while job_watch.tick() is not None:
        if time.monotonic() > deadline:
            raise AssertionError(f"the job did not finish within {timeout_s} s: {bpy.context.scene.strata.job_stage}")
        time.sleep(0.05)
    return bpy.context.scene.strata


@pytest.fixture
def wait_for_job(addon):
    """``wait_for_job(timeout_s)`` → Scene.strata once the job has ended."""
    return _wait_for_job


@pytest.fixture
def addon_prefs(addon):
    return prefs()


def build_zip(output_dir, *args):
    """``scripts/build_extension.py`` → the zip's path (validated by Blender's extension CLI)."""
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "build_extension.py"), "--output-dir",
                             str(output_dir), *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success parsing TOML" in result.stdout  # `extension validate` ran on the source and on the zip
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture
def legacy_disabled(addon):
    """Same classes and operator ids: the repo copy must be off while the installed extension is on."""
    import addon_utils

    addon_utils.disable(ADDON, default_set=True)
    yield
    if EXTENSION in bpy.context.preferences.addons:
        addon_utils.disable(EXTENSION, default_set=True)
    addon_utils.enable(ADDON, default_set=True, handle_error=None)
    configure_local_server(prefs())
