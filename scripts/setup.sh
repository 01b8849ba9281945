#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Sets up both environments from scratch (idempotent):
#   .venv          the inference server (torch CPU build pinned, diffusers, fastapi, exporters, Ray Serve)
#   .venv-blender  headless Blender as a Python module (bpy pins numpy<2, so it can't share the server env)
# plus the Debian packages the tests use (LibreOffice renders PPTX files back to PNG; Chromium renders the exported
# web page headless).
set -euo pipefail
cd "$(dirname "$0")/.."
# bpy==5.0.1 (headless Blender: the demo and the Blender tests) has wheels for Python 3.11 only. Check before
# anything is built, and take python3.11 from PATH when the default python3 is another version.
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    if ! python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null && command -v python3.11 >/dev/null 2>&1; then
        PYTHON=python3.11
    fi
fi
if ! PY_VERSION=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); then
    echo "setup: cannot run '$PYTHON'. Install Python 3.11 and run: PYTHON=/path/to/python3.11 bash scripts/setup.sh" >&2
    exit 2
fi
if [ "$PY_VERSION" != "3.11" ]; then
    echo "setup: $PYTHON is Python $PY_VERSION; setup needs Python 3.11 (bpy==5.0.1, headless Blender, has wheels for 3.11 only)." >&2
    echo "setup: install it (e.g. apt install python3.11 python3.11-venv, or pyenv install 3.11) and run:" >&2
    echo "setup:     PYTHON=/path/to/python3.11 bash scripts/setup.sh" >&2
    exit 2
fi
if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    echo "setup: $PYTHON cannot create venvs (no ensurepip); on Debian/Ubuntu: apt install python3.11-venv" >&2
    exit 2
fi

# libgs-common: Ghostscript's CMYK ICC profile (the CMYK input test); libegl-mesa0 + libgl1-mesa-dri: EEVEE renders;
# chromium: renders the exported web page headless (tests/blender/test_stack_export.py).
APT_PACKAGES="libreoffice-impress fonts-dejavu-core imagemagick libgs-common libegl-mesa0 libgl1-mesa-dri chromium"
missing=$(for package in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || echo "$package"
done)
if [ "${STRATA_SKIP_APT:-0}" != 1 ] && [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq || true
    # shellcheck disable=SC2086
    if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null; then
        # In CI a missing reader must fail the run, not turn its tests into skips.
        [ "${CI:-}" = true ] && { echo "setup: apt-get could not install:" $missing >&2; exit 1; }
        echo "setup: could not install" $missing "- the tests that need them will be skipped" >&2
    fi
fi

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# torch==2.13.0 is the local CPU build; any other spec would pull GBs of CUDA wheels.
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
# tiers: gguf + torchao, so the GGUF and quantize-on-load tests run on the CPU (torch stays pinned in the same call).
# The constraints pin every other package to the versions the README's numbers were measured with: a fresh machine
# with newer opencv / onnxruntime / numpy scored a generated benchmark row differently with the same code.
.venv/bin/python -m pip install -q --disable-pip-version-check -c scripts/constraints/server.txt torch==2.13.0 \
    -e ".[qwen,tiers,test,bench,ray]"

if [ ! -x .venv-blender/bin/python ]; then
    "$PYTHON" -m venv .venv-blender
fi
# setuptools >= 70.1 builds wheels by itself: scripts/build_extension.py then builds the server wheel offline.
.venv-blender/bin/python -m pip install -q --disable-pip-version-check -c scripts/constraints/blender.txt bpy==5.0.1 \
    "pytest>=8" pytest-timeout pillow "setuptools>=70.1"

echo "setup: ready (.venv = server, .venv-blender = Blender)"
