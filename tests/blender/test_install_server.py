# SPDX-License-Identifier: GPL-3.0-or-later
"""Install Server from the built extension zip, as a new user would: no terminal, no checkout on the path.

The operator runs headless with real bpy and builds a real venv (Blender's Python, the server wheel from the zip
and its dependencies from the package index as this machine has it configured). To keep CI's time sane the first
install is Torch: None (the CPU decomposer alone, about a minute); Decompose then works through that env. A reinstall
with the default choice (torch's CPU build here, no NVIDIA GPU) is canceled while pip installs torch: the working
server stays in use and no half-built env is left.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import addon_utils
import bpy
import pytest
from conftest import ADDON, EXTENSION, build_zip, configure_local_server, prefs, reset_scene
from layout_recorder import draw_panel, draw_preferences, texts

INSTALL_TIMEOUT_S = 1200


def _module(name):
    return sys.modules[f"{EXTENSION}.{name}"]


def _wait(task, timeout_s, until=None):
    """Call server_setup.tick() as Blender's timer would, until the task ends (or ``until(snapshot)``)."""
    server_setup = _module("server_setup")
    deadline = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < deadline:
        server_setup.tick()
        snapshot = task.snapshot()
        seen.append((snapshot.progress, snapshot.stage))
        if snapshot.done or (until is not None and until(snapshot)):
            return snapshot, seen
        time.sleep(0.2)
    raise AssertionError(f"{task.name} did not end within {timeout_s} s: {task.snapshot().stage}")


def _draw_preferences(extension_prefs):
    """What the preferences show now → the recording layout (LayoutError on a bad call)."""
    return draw_preferences(extension_prefs, bpy.context)


def _decompose(sample_png):
    scene = reset_scene()
    scene.strata.image_path = str(sample_png)
    scene.strata.layers_auto = False
    scene.strata.layers = 2
    assert bpy.ops.strata.decompose() == {'FINISHED'}
    job_watch = _module("job_watch")
    deadline = time.monotonic() + 180
    while job_watch.tick() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert scene.strata.job_status == "succeeded", scene.strata.job_message
    return len([obj for obj in bpy.data.objects if obj.strata.role == 'LAYER'])


@pytest.fixture(scope="module")
def extension(addon, tmp_path_factory):
    """The zip installed and enabled as an extension, its preferences as a new user has them (nothing set)."""
    addon_utils.disable(ADDON, default_set=True)
    zip_path = build_zip(tmp_path_factory.mktemp("dist"))
    assert bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default",
                                                    enable_on_install=True) == {'FINISHED'}
    bpy.context.preferences.system.use_online_access = True  # off in a fresh Blender: the operators check it
    extension_prefs = bpy.context.preferences.addons[EXTENSION].preferences
    extension_prefs.connection = 'START'
    extension_prefs.server_python = extension_prefs.server_command = extension_prefs.server_source_dir = ""
    extension_prefs.backend = 'cpu'
    yield extension_prefs
    _module("connection").stop_server()
    addon_utils.disable(EXTENSION, default_set=True)
    addon_utils.enable(ADDON, default_set=True, handle_error=None)
    configure_local_server(prefs())


@pytest.fixture(scope="module")
def installed(extension):
    """Install Server pressed once and finished → (the task's final snapshot, progress seen, seconds)."""
    server_setup = _module("server_setup")
    assert server_setup.installed() == {}
    hint = "No server yet: Install Server in the add-on's preferences"
    assert hint in texts(draw_panel(_module("panels").VIEW3D_PT_strata_decompose, bpy.context), "label")
    extension.torch_build = 'NONE'
    try:
        started = time.perf_counter()
        assert bpy.ops.strata.install_server() == {'FINISHED'}
        returned_s = time.perf_counter() - started
        assert returned_s < 1.0, f"the operator blocked Blender for {returned_s:.1f} s"
        task = server_setup.task("install")
        snapshot, seen = _wait(task, INSTALL_TIMEOUT_S)
    finally:
        extension.torch_build = 'AUTO'
    elapsed_s = time.perf_counter() - started
    print(f"\nInstall Server: {snapshot.status} in {elapsed_s:.1f} s")
    if snapshot.status == "succeeded":
        assert hint not in texts(draw_panel(_module("panels").VIEW3D_PT_strata_decompose, bpy.context), "label")
    return snapshot, seen, elapsed_s


def test_install_server_builds_a_working_env_and_decompose_uses_it(extension, installed, sample_png):
    snapshot, seen, _ = installed
    assert snapshot.status == "succeeded", snapshot.error + "\n" + "\n".join(snapshot.log_tail[-20:])
    # The panel had something to show while it ran: moving progress, named stages, pip's lines.
    progress = [p for p, _ in seen]
    assert progress == sorted(progress) and progress[-1] == 1.0
    stages = {stage.split(":")[0] for _, stage in seen}
    assert "installing the Strata server" in stages
    assert any(line.startswith("Successfully installed") for line in snapshot.log_tail)

    server_setup = _module("server_setup")
    record = server_setup.installed()
    user_dir = Path(_module("user_folders").user_folder())
    env_python = Path(record["python"])
    assert env_python.is_file() and user_dir in env_python.parents
    assert record["torch"] == "none"
    assert [p.name for p in (user_dir / "envs").iterdir()] == [record["env"]]
    # A real install, not the checkout: the package imports from the env's own site-packages.
    where = subprocess.run([str(env_python), "-c", "import inference_server.app; print(inference_server.__file__)"],
                           capture_output=True, text=True, timeout=120, cwd=str(user_dir), env={"PATH": "/usr/bin"})
    assert where.returncode == 0, where.stderr
    assert str(env_python.parents[1]) in where.stdout

    # Decompose starts the server from that env by itself (no Python set in the preferences).
    assert extension.server_python == ""
    assert _decompose(sample_png) == 2
    server = _module("connection").current_server()
    assert server is not None and server.python_path == str(env_python)


def test_canceled_reinstall_keeps_the_working_server(extension, installed, sample_png):
    assert installed[0].status == "succeeded"
    server_setup = _module("server_setup")
    before = server_setup.installed()
    user_dir = Path(_module("user_folders").user_folder())
    assert extension.torch_build == 'AUTO'  # no NVIDIA GPU: torch's CPU build
    assert bpy.ops.strata.install_server() == {'FINISHED'}  # Repair / Upgrade, canceled while pip installs torch
    task = server_setup.task("install")
    snapshot, _ = _wait(task, 600, until=lambda s: s.stage.startswith("installing torch"))
    assert not snapshot.done, snapshot.error
    time.sleep(1.0)
    # While it runs the preferences show a progress bar with the stage, a cancel button and pip's last lines.
    layout = _draw_preferences(extension)
    bars = [kwargs for name, kwargs in layout.calls if name == "progress"]
    assert bars and bars[0]["text"].startswith("installing torch")
    assert "strata.cancel_install" in [kwargs["operator"] for name, kwargs in layout.calls if name == "operator"]
    assert any(text.startswith("Installed: strata") for text in texts(layout, "label"))  # the one in use
    assert len([t for t in texts(layout, "label") if t]) >= 6
    assert bpy.ops.strata.cancel_install() == {'FINISHED'}
    snapshot, _ = _wait(task, 60)
    assert snapshot.status == "canceled", snapshot.error
    assert "install: canceled" in texts(_draw_preferences(extension), "label")
    # Nothing half-installed is in use, nothing half-installed is left: the previous env is the only one.
    assert server_setup.installed() == before
    assert json.loads((user_dir / "server-env.json").read_text())["env"] == before["env"]
    assert [p.name for p in (user_dir / "envs").iterdir()] == [before["env"]]
    # ... and it still works, with a fresh server too.
    _module("connection").stop_server()
    assert _decompose(sample_png) == 2
    assert _module("connection").current_server().python_path == before["python"]


def test_install_errors_say_what_to_do(extension, installed):
    """No usable Python, no network: the install fails at once with a sentence, and the server in use stays."""
    server_setup = _module("server_setup")
    before = server_setup.installed()
    extension.install_python = "/nonexistent/python3.11"
    try:
        assert bpy.ops.strata.install_server() == {'FINISHED'}
        snapshot, _ = _wait(server_setup.task("install"), 60)
    finally:
        extension.install_python = ""
    assert snapshot.status == "failed" and "cannot run the Python '/nonexistent/python3.11'" in snapshot.error
    assert any("cannot run the Python" in text for text in texts(_draw_preferences(extension), "label"))

    # An unreachable index (and nothing local to fall back to): a network error, named as one.
    saved = {key: os.environ.get(key) for key in ("PIP_FIND_LINKS", "PIP_CONFIG_FILE")}
    os.environ["PIP_FIND_LINKS"] = ""
    os.environ["PIP_CONFIG_FILE"] = os.devnull
    extension.pip_options = "--index-url http://127.0.0.1:9/simple --retries 0 --timeout 2 --no-cache-dir"
    try:
        assert bpy.ops.strata.install_server() == {'FINISHED'}
        snapshot, _ = _wait(server_setup.task("install"), 300)
    finally:
        extension.pip_options = ""
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert snapshot.status == "failed"
    assert "could not download torch" in snapshot.error and "Pip Options" in snapshot.error
    assert server_setup.installed() == before
    assert [p.name for p in (Path(_module("user_folders").user_folder()) / "envs").iterdir()] == [before["env"]]
