#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Wheels that `strata serve --ray --backend qwen` needs on the lent GPU machines (Python 3.12; their image has torch,
# numpy, aiohttp, grpcio, ... but not Ray, diffusers or the server's web stack), for the GPU load test in the README.
# A device call carries 64 MiB at most and Ray's wheel is 79 MB, so Ray is repacked without what a Python Serve
# application never loads (Java jars, RLlib, Ray Data/Train/Tune/LLM, the dashboard's web page), and its three native
# binaries lose their debugging symbols (`strip --strip-unneeded`; about 4 MB). The set was checked by running
# `scripts/load_test.py --ray` in a Python venv holding only these wheels (cp311 builds) and the GPU image's packages;
# grpcio-reflection must match the image's grpcio (1.84.0 in November 2026): its generated code checks.
#   bash scripts/gpu_wheels_ray.sh [DIR]      # default: .whl-ray (git-ignored)
# Then one device call on nvidia-h200-x2 runs scripts/load_test_gpu.sh with these wheels (see its header).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.whl-ray}
PYTHON=${PYTHON:-.venv/bin/python}
mkdir -p "$DIR"
PLATFORMS="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64"
# shellcheck disable=SC2086
"$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp $PLATFORMS -d "$DIR" \
    ray==2.60.0 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 \
    fastapi==0.165.0 starlette==1.10.0 pydantic==2.14.4 pydantic-core==2.50.5 typing-inspection==0.4.5 \
    annotated-types==0.8.0 annotated-doc==0.0.7 opentelemetry-api==1.45.2 importlib-metadata==10.2.0 \
    uvicorn==0.54.0 grpcio-reflection==1.84.0 sniffio==1.3.1 python-multipart==0.0.34 python-pptx==1.0.2 \
    xlsxwriter==3.3.1 psd-tools==1.26.0 diffusers==0.42.1 transformers==5.24.0 platformdirs==4.14.8
"$PYTHON" - "$DIR" <<'PY'
import subprocess, sys, tempfile, zipfile
from pathlib import Path

DROP = ("ray/jars/", "ray/rllib/", "ray/data/", "ray/tune/", "ray/train/", "ray/llm/", "ray/dashboard/client/")
STRIP = ("ray/_raylet.so", "ray/core/src/ray/gcs/gcs_server", "ray/core/src/ray/raylet/raylet")


def stripped(data: bytes) -> bytes:
    with tempfile.NamedTemporaryFile() as handle:
        handle.write(data)
        handle.flush()
        subprocess.run(["strip", "--strip-unneeded", handle.name], check=True)
        return Path(handle.name).read_bytes()


for wheel in Path(sys.argv[1]).glob("ray-*.whl"):
    slim = wheel.with_suffix(".slim")
    with zipfile.ZipFile(wheel) as source, \
            zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as target:
        for item in source.infolist():
            if item.filename.startswith(DROP):
                continue
            data = source.read(item.filename)
            if item.filename in STRIP:
                data = stripped(data)
            if item.filename.endswith(".dist-info/RECORD"):
                data = b"".join(line for line in data.splitlines(True) if not line.decode().startswith(DROP))
            target.writestr(item, data)
    slim.replace(wheel)
PY
du -ch "$DIR"/*.whl | tail -1
