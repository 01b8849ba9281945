#!/usr/bin/env bash
# Sets up both environments from scratch (idempotent):
#   .venv          the inference server (torch CPU build pinned, diffusers, fastapi, exporters, Ray Serve)
#   .venv-blender  headless Blender as a Python module (bpy pins numpy<2, so it can't share the server env)
# plus the Debian packages the tests use (LibreOffice renders PPTX files back to PNG).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ "${STRATA_SKIP_APT:-0}" != 1 ] && { ! command -v soffice >/dev/null 2>&1 || ! command -v identify >/dev/null 2>&1; }; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        libreoffice-impress fonts-dejavu-core imagemagick >/dev/null \
        || echo "setup: LibreOffice/ImageMagick could not be installed; PPTX render and PSD read-back tests will be skipped" >&2
fi

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# torch==2.13.0 is the local CPU build; any other spec would pull GBs of CUDA wheels.
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0 -e ".[qwen,test,ray]"

if [ ! -x .venv-blender/bin/python ]; then
    "$PYTHON" -m venv .venv-blender
fi
.venv-blender/bin/python -m pip install -q --disable-pip-version-check bpy==5.0.1 "pytest>=8" pytest-timeout pillow

echo "setup: ready (.venv = server, .venv-blender = Blender)"
