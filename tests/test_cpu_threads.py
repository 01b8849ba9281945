# SPDX-License-Identifier: GPL-3.0-or-later
"""The CPU decomposer keeps its thread pools to ``OMP_NUM_THREADS``: what Ray sets for a replica that reserves one CPU,
so that two replicas sharing two cores run one thread each instead of oversubscribing them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO

PROBE = """
import json, cv2
import numpy as np
from PIL import Image
from inference_server.backends.cpu import CpuDecomposer
from inference_server.params import DecomposeParams
default = cv2.getNumThreads()
rgb = np.full((192, 256, 3), (240, 230, 200), np.uint8)
rgb[40:120, 30:140] = (200, 40, 40)
backend = CpuDecomposer()
backend.decompose(Image.fromarray(rgb).convert("RGBA"), DecomposeParams(layers=2))
engine = backend.text_detector._engine
session = engine.text_det.infer.session.get_session_options() if engine else None
print(json.dumps({"default": default, "cv2": cv2.getNumThreads(), "budget": backend.threads,
                  "ocr": session.intra_op_num_threads if session else None}))
"""


def _threads(omp: str | None) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    if omp is not None:
        env["OMP_NUM_THREADS"] = omp
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_one_thread_each_when_omp_num_threads_is_1():
    threads = _threads("1")
    assert threads["budget"] == 1 and threads["cv2"] == 1
    assert threads["ocr"] == 1  # the text detector (rapidocr is a dependency)


def test_library_defaults_without_it():
    threads = _threads(None)
    assert threads["budget"] is None and threads["cv2"] == threads["default"]
