# SPDX-License-Identifier: GPL-3.0-or-later
"""How many threads the decomposer's libraries may use."""

from __future__ import annotations

import os


def thread_budget() -> int | None:
    """Threads the decomposer's pools may use (OpenCV's, ONNX Runtime's), from ``OMP_NUM_THREADS`` as numpy's BLAS
    reads it; None (each library's default: one thread per core) when unset. Ray sets it to a replica's CPU
    reservation, so two 1-CPU replicas on two cores run one thread each instead of four competing."""
    try:
        threads = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        return None
    return threads if threads > 0 else None
