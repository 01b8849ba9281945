# SPDX-License-Identifier: GPL-3.0-or-later
"""The add-on's version, and whether the server it talks to is the same release.

The add-on and the server ship together (the extension bundles the server wheel; Install Server installs it), so one
version names both: ``blender_manifest.toml``'s ``version``, equal to ``inference_server.__version__`` (checked by
``tests/test_version.py``). A server of another version (a venv installed by hand long ago, a studio server not yet
upgraded) may lack an endpoint or a parameter this add-on sends: the add-on says so up front instead of failing
later with an error that does not name the cause.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import tomllib

MANIFEST_PATH = Path(__file__).resolve().parents[1] / "blender_manifest.toml"


@functools.cache
def addon_version(manifest_path: str | Path = MANIFEST_PATH) -> str:
    """The ``version`` of the add-on's ``blender_manifest.toml`` (read once)."""
    with open(manifest_path, "rb") as handle:
        return str(tomllib.load(handle)["version"])


def version_warning(health: dict[str, Any], addon: str) -> str:
    """'' when the server that answered ``/v1/health`` with ``health`` is version ``addon``, else one line that says
    both versions and what to do."""
    server = health.get("version")
    if server == addon:
        return ""
    fix = "Repair / Upgrade Server in the add-on preferences, or update the add-on, so that both match"
    if not server:
        return f"The Strata server does not report its version (older than this add-on's {addon}): {fix}"
    return f"The Strata server is version {server}, this add-on {addon}: {fix}"
