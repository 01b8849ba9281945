# SPDX-License-Identifier: GPL-3.0-or-later
"""A server of another release than the add-on: the operators report it, the panel and the preferences show it, and
the job still runs. The server is the real one on loopback, announcing another version (as in
tests/core/test_versions.py)."""

import os
import sys

import bpy
from conftest import ADDON, REPO, SERVER_PYTHON, configure_local_server
from conftest import _wait_for_job as wait_for_job
from layout_recorder import draw_panel, draw_preferences, texts

OTHER_VERSION = "0.0.1"
PATCHED_SERVE = ("import sys, inference_server; inference_server.__version__ = sys.argv.pop(1); "
                 "from inference_server.cli import main; sys.exit(main())")


def _module(name):
    return sys.modules[f"{ADDON}.{name}"]


def _decompose_and_read_reports(scene, image_path, capfd):
    """Decompose ``image_path`` into 2 layers to the end → what the operator reported (its console lines)."""
    scene.strata.image_path = str(image_path)
    scene.strata.layers_auto = False
    scene.strata.layers = 2
    capfd.readouterr()
    assert bpy.ops.strata.decompose() == {'FINISHED'}
    reports = capfd.readouterr().out
    settings = wait_for_job()
    assert settings.job_status == "succeeded", settings.job_message  # a warning, not a refusal
    return reports


def test_a_server_of_another_version_is_reported_and_shown(scene, addon_prefs, sample_png, tmp_path, capfd):
    connection = _module("connection")
    addon_version = _module("core.versions").addon_version()
    expected = (f"The Strata server is version {OTHER_VERSION}, this add-on {addon_version}: Repair / Upgrade Server "
                f"in the add-on preferences, or update the add-on, so that both match")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    server = _module("core.server_process").AddonServerProcess(
        command=[SERVER_PYTHON, "-c", PATCHED_SERVE, OTHER_VERSION], backend="cpu", data_dir=tmp_path / "data",
        cwd=str(REPO), env=env)
    server.start()
    try:
        addon_prefs.connection = 'URL'
        addon_prefs.server_url, addon_prefs.server_token = server.url, server.token
        assert f"Warning: {expected}" in _decompose_and_read_reports(scene, sample_png, capfd)

        panel = draw_panel(_module("panels").VIEW3D_PT_strata_decompose, bpy.context)
        assert expected in texts(panel, "label")
        assert expected in texts(draw_preferences(addon_prefs, bpy.context), "label")

        assert bpy.ops.strata.restart_server() == {'FINISHED'}  # in URL mode: checks the server, says what it is
        assert f"Warning: {expected}" in capfd.readouterr().out
    finally:
        server.stop()
        configure_local_server(addon_prefs)
        connection.stop_server()
    assert connection.server_state()["version_warning"] == ""


def test_a_started_server_of_another_version_is_reported_and_shown(scene, local_server, sample_png, capfd):
    """The add-on starts the server itself (a server command set in the preferences) and learns its version then."""
    connection = _module("connection")
    local_server.server_python = ""
    local_server.server_command = f"{SERVER_PYTHON} -c '{PATCHED_SERVE}' {OTHER_VERSION}"
    try:
        connection.restart_server(connection.settings_from_preferences(local_server)).join(60)
        assert connection.server_state()["status"] == "running", connection.server_state()["message"]
        warning = connection.server_state()["version_warning"]
        assert warning.startswith(f"The Strata server is version {OTHER_VERSION}, this add-on ")
        assert warning in texts(draw_panel(_module("panels").VIEW3D_PT_strata_decompose, bpy.context), "label")
        assert f"Warning: {warning}" in _decompose_and_read_reports(scene, sample_png, capfd)
    finally:
        connection.stop_server()  # the next test starts the add-on's own server again
        configure_local_server(local_server)


def test_the_add_ons_own_server_gets_no_warning(scene, local_server, sample_png, capfd):
    connection = _module("connection")
    connection.restart_server(connection.settings_from_preferences(local_server)).join(60)
    assert connection.server_state()["status"] == "running", connection.server_state()["message"]
    assert "Warning:" not in _decompose_and_read_reports(scene, sample_png, capfd)
    assert connection.server_state()["version_warning"] == ""
    assert connection.server_state()["version_url"] == connection.current_server().url
