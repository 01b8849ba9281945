# SPDX-License-Identifier: GPL-3.0-or-later
"""A debug setting, not a feature: injected faults, so tests can drive failure paths a healthy CPU machine never
produces. ``STRATA_FAULT_INJECT`` (read once when a worker process or a Ray replica starts) holds comma-separated
faults; it is unset in normal use, and a worker that finds it set says so in the log.

  ``oom_once``          the first progress report of the first job raises ``torch.cuda.OutOfMemoryError``, so the
                        error comes out of the backend's own call stack, as a real GPU OOM would
  ``slow_steps:S``      sleep S seconds in every progress report, so a job lasts long enough to cancel or kill
  ``crash_on_start``    the process exits (code 7) before reporting ready, as a broken install would

Used by tests/test_faults.py, tests/test_ray.py and the add-on's cancel test (tests/blender/test_decompose.py).
"""

from __future__ import annotations

import logging
import os
import time

logger = logging.getLogger(__name__)

FAULT_ENV = "STRATA_FAULT_INJECT"
CRASH_EXIT_CODE = 7


class DebugFaults:
    def __init__(self, spec: str) -> None:
        self.oom_once = False
        self.slow_step_s = 0.0
        self.crash_on_start = False
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, _, value = item.partition(":")
            if name == "oom_once":
                self.oom_once = True
            elif name == "slow_steps":
                self.slow_step_s = float(value or 0.5)
            elif name == "crash_on_start":
                self.crash_on_start = True
            else:
                raise ValueError(f"{FAULT_ENV}: unknown fault {name!r} (known: oom_once, slow_steps:S, crash_on_start)")

    @classmethod
    def from_environment(cls) -> DebugFaults:
        """The faults ``STRATA_FAULT_INJECT`` asks for (none when it is unset); exits at once for crash_on_start."""
        spec = os.environ.get(FAULT_ENV, "")
        faults = cls(spec)
        if spec.strip():
            logger.warning("debug setting %s=%r: injecting faults into this process's jobs", FAULT_ENV, spec)
        if faults.crash_on_start:
            os._exit(CRASH_EXIT_CODE)
        return faults

    def on_progress(self) -> None:
        if self.slow_step_s:
            time.sleep(self.slow_step_s)
        if self.oom_once:
            self.oom_once = False
            import torch

            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected by test hook)")
