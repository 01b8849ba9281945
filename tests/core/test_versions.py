# SPDX-License-Identifier: GPL-3.0-or-later
"""The add-on's version check against real servers on loopback: the real server package as it is, and the same
package announcing another release (its ``__version__`` set before any of its modules reads it), as a server
installed from an older or newer wheel answers."""

import os
import sys
from pathlib import Path

import pytest
import tomllib

from blender_addon.core.client import ServerClient
from blender_addon.core.server_process import AddonServerProcess
from blender_addon.core.versions import MANIFEST_PATH, addon_version, version_warning

REPO = Path(__file__).resolve().parents[2]
OTHER_VERSION = "0.0.1"
# `python -c PATCHED_SERVE VERSION serve ...`: the real `strata serve`, reporting VERSION in /v1/health.
PATCHED_SERVE = ("import sys, inference_server; inference_server.__version__ = sys.argv.pop(1); "
                 "from inference_server.cli import main; sys.exit(main())")


def _health(tmp_path, command=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    server = AddonServerProcess(None if command else sys.executable, backend="cpu", data_dir=tmp_path / "data",
                                cwd=str(REPO), env=env, command=command)
    server.start()
    try:
        return ServerClient(server.url, server.token).health()
    finally:
        server.stop()


def test_the_add_on_version_is_its_manifest_version():
    with open(MANIFEST_PATH, "rb") as handle:
        assert addon_version() == tomllib.load(handle)["version"]
    assert addon_version() != OTHER_VERSION  # or the mismatch test below would prove nothing


def test_the_real_server_of_the_same_release_gets_no_warning(tmp_path):
    health = _health(tmp_path)
    assert health["version"] == addon_version()
    assert version_warning(health, addon_version()) == ""


def test_a_server_of_another_release_is_named_with_both_versions_and_the_fix(tmp_path):
    health = _health(tmp_path, command=[sys.executable, "-c", PATCHED_SERVE, OTHER_VERSION])
    assert health["version"] == OTHER_VERSION
    warning = version_warning(health, addon_version())
    assert warning == (f"The Strata server is version {OTHER_VERSION}, this add-on {addon_version()}: Repair / "
                       f"Upgrade Server in the add-on preferences, or update the add-on, so that both match")


@pytest.mark.parametrize("health", [{"status": "ok"}, {"status": "ok", "version": ""}])
def test_a_server_that_reports_no_version_is_called_older(health):
    assert version_warning(health, "0.1.0").startswith(
        "The Strata server does not report its version (older than this add-on's 0.1.0)")
