#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Runs the whole test suite: plain-Python tests in the server env, then the Blender tests in the bpy env
# (they start real server subprocesses from .venv). Extra arguments go to both pytest runs.
set -uo pipefail
cd "$(dirname "$0")/.."
export STRATA_SERVER_PYTHON=${STRATA_SERVER_PYTHON:-$PWD/.venv/bin/python}
export HF_HUB_OFFLINE=1

run_pytest() {
    "$@"
    local rc=$?
    # pytest exits 5 when it collected no tests: not a failure for a suite section that is empty.
    if [ $rc -eq 5 ]; then rc=0; fi
    return $rc
}

status=0
# --durations: the slowest tests end the log, so a CI run shows which ones come near their time limits.
run_pytest .venv/bin/python -m pytest tests --ignore=tests/blender -q -p no:cacheprovider --durations=15 "$@" || status=1
# --confcutdir keeps tests/conftest.py (server env imports) out of the bpy env.
run_pytest .venv-blender/bin/python -m pytest tests/blender --confcutdir=tests/blender -q -p no:cacheprovider "$@" || status=1
exit $status
