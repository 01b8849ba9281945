# SPDX-License-Identifier: GPL-3.0-or-later
"""The built extension zip installs into a user repository, enables as ``bl_ext.user_default.strata`` and works."""

import shutil
import sys
import time
import zipfile

import addon_utils
import bpy
import pytest
from conftest import ADDON, EXTENSION, REPO, build_zip, configure_local_server, reset_scene


@pytest.fixture
def extension_zip(tmp_path):
    return build_zip(tmp_path)


def test_zip_ships_the_sources_only(tmp_path):
    """Caches, dotfiles, tests and old builds lying in the add-on folder stay out of the zip; every module is in."""
    source = tmp_path / "strata"
    shutil.copytree(REPO / "blender_addon", source, ignore=shutil.ignore_patterns("__pycache__"))
    sources = sorted(str(path.relative_to(source)) for path in source.rglob("*") if path.is_file())
    junk = ["__pycache__/operators.cpython-311.pyc", "core/__pycache__/client.cpython-311.pyc", "stray.pyc",
            ".DS_Store", ".pytest_cache/v/cache/lastfailed", "tests/test_local.py", "strata-0.0.9.zip"]
    for name in junk:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(b"junk")
    zip_path = build_zip(tmp_path / "dist", "--source-dir", str(source))
    names = sorted(zipfile.ZipFile(zip_path).namelist())
    # Plus the server wheel that Install Server installs, a real wheel of this checkout's package.
    wheels = [name for name in names if name.startswith("server/")]
    assert len(wheels) == 1 and wheels[0].startswith("server/strata-") and wheels[0].endswith("-py3-none-any.whl")
    assert sorted(set(names) - set(wheels)) == sources
    assert "blender_manifest.toml" in sources and "core/client.py" in sources
    with zipfile.ZipFile(zip_path) as outer, zipfile.ZipFile(outer.open(wheels[0])) as wheel:
        assert "inference_server/app.py" in wheel.namelist()


def test_zip_installs_enables_and_decomposes(extension_zip, legacy_disabled, sample_png):
    assert bpy.ops.extensions.package_install_files(filepath=extension_zip, repo="user_default",
                                                    enable_on_install=True) == {'FINISHED'}
    assert EXTENSION in bpy.context.preferences.addons
    package = sys.modules[EXTENSION]
    assert package.__file__.startswith(bpy.utils.user_resource('EXTENSIONS'))  # the installed copy, not the repo

    # Preferences resolve through __package__, whatever the package is called.
    extension_prefs = bpy.context.preferences.addons[EXTENSION].preferences
    configure_local_server(extension_prefs)
    scene = reset_scene()
    scene.strata.image_path = str(sample_png)
    scene.strata.layers_auto = False
    scene.strata.layers = 2
    assert bpy.ops.strata.decompose() == {'FINISHED'}
    job_watch = sys.modules[f"{EXTENSION}.job_watch"]
    deadline = time.monotonic() + 90
    while job_watch.tick() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert scene.strata.job_status == "succeeded", scene.strata.job_message
    assert len([obj for obj in bpy.data.objects if obj.strata.role == 'LAYER']) == 2

    # Disabling the extension stops the server it started.
    connection = sys.modules[f"{EXTENSION}.connection"]
    server = connection.current_server()
    assert server is not None and server.is_alive()
    process = server.process
    addon_utils.disable(EXTENSION, default_set=True)
    assert process.poll() is not None


def test_disable_unregisters_everything_and_enable_registers_again(legacy_disabled):
    """What ``unregister()`` must undo (classes in reverse, properties, the job timer, the server) is gone after
    disabling, and enabling again gives a working add-on: no leftovers that make a re-enable fail."""
    for name in ("STRATA_OT_decompose", "STRATA_OT_export_view", "VIEW3D_PT_strata_decompose", "STRATA_UL_layers",
                 "StrataPreferences", "StrataSceneSettings", "StrataObjectSettings"):
        assert not hasattr(bpy.types, name), name
    assert not hasattr(bpy.types.Scene, "strata") and not hasattr(bpy.types.Object, "strata")
    assert sys.modules[f"{ADDON}.connection"].current_server() is None

    assert addon_utils.enable(ADDON, default_set=True, handle_error=None) is not None
    assert bpy.ops.strata.decompose.poll() and hasattr(bpy.types.Scene, "strata")
    addon_utils.disable(ADDON, default_set=True)
