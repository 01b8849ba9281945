#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The add-on's oldest supported Blender (blender_manifest.toml: blender_version_min 4.2) against the same Blender
# tests: add-on registration, every panel's draw, the extension zip, stack building, materials and renders (Cycles and
# EEVEE), camera moves and previews, undo, one full decompose through the local server, relief and the GLB round
# trip. About 25 s of tests (2 cores) plus a one-time ~370 MB bpy download; the venv lives under build/ (git-ignored)
# and is reused.
#
#     bash scripts/test_blender_min.sh [BPY_VERSION]       (default 4.2.*; e.g. "4.5.*" for the current LTS)
#
# Needs .venv (the server env) from scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
BPY_VERSION=${1:-4.2.*}
VENV="build/bpy-${BPY_VERSION//[*.]/}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "bpy==$BPY_VERSION" "pytest>=8" pytest-timeout pillow \
    "setuptools>=70.1"  # builds the server wheel for the extension zip offline
export STRATA_SERVER_PYTHON=${STRATA_SERVER_PYTHON:-$PWD/.venv/bin/python}
export HF_HUB_OFFLINE=1
"$VENV/bin/python" -c "import bpy; print('bpy', bpy.app.version_string)"
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider --confcutdir=tests/blender \
    tests/blender/test_panels.py tests/blender/test_extension.py tests/blender/test_animation.py \
    tests/blender/test_planes.py tests/blender/test_undo.py \
    "tests/blender/test_decompose.py::test_decompose_builds_a_camera_exact_stack" \
    "tests/blender/test_relief.py::test_relief_keeps_the_rest_view_exact_in_cycles" \
    "tests/blender/test_stack_export.py::test_glb_reimported_into_blender_reproduces_the_stack_and_camera_move"
