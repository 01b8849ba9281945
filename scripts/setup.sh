#!/usr/bin/env bash
# Sets up both environments from scratch (idempotent):
#   .venv          the inference server (torch CPU build pinned, diffusers, fastapi, exporters)
#   .venv-blender  headless Blender as a Python module (bpy pins numpy<2, so it can't share the server env)
# plus the Debian packages the tests use (LibreOffice renders PPTX files back to PNG).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# libgs-common: Ghostscript's CMYK ICC profile (the CMYK input test); libegl-mesa0 + libgl1-mesa-dri: EEVEE renders.
APT_PACKAGES="libreoffice-impress fonts-dejavu-core imagemagick libgs-common libegl-mesa0 libgl1-mesa-dri"
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
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0 -e ".[qwen,test,bench]"

if [ ! -x .venv-blender/bin/python ]; then
    "$PYTHON" -m venv .venv-blender
fi
.venv-blender/bin/python -m pip install -q --disable-pip-version-check bpy==5.0.1 "pytest>=8" pytest-timeout pillow

echo "setup: ready (.venv = server, .venv-blender = Blender)"
