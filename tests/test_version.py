# SPDX-License-Identifier: GPL-3.0-or-later
"""One version for the whole product: the server package, the installed distribution and the Blender extension."""

from __future__ import annotations

import importlib.metadata

import tomllib
from conftest import REPO

from inference_server import __version__


def test_the_extension_manifest_and_the_package_carry_the_same_version():
    manifest = tomllib.loads((REPO / "blender_addon" / "blender_manifest.toml").read_text(encoding="utf-8"))
    assert manifest["version"] == __version__
    assert importlib.metadata.version("strata") == __version__
