# SPDX-License-Identifier: GPL-3.0-or-later
"""What every backend offers: one ``decompose`` call, progress reports and cooperative cancellation."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from PIL import Image

from ..errors import JobCanceled
from ..layers import LayerStack
from ..params import DecomposeParams

# progress(stage, step, total): stage is a short word ("caption", "encode", "denoise", "decode", "peel", ...)
ProgressCallback = Callable[[str, int, int], None]


class CancelToken:
    """Set by whoever wants the job stopped; checked by the backend at every step."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def canceled(self) -> bool:
        return self._event.is_set()

    def raise_if_canceled(self) -> None:
        if self._event.is_set():
            raise JobCanceled("canceled by request")


def no_progress(stage: str, step: int, total: int) -> None:
    pass


class Backend(Protocol):
    name: str

    def decompose(
        self,
        image: Image.Image,
        params: DecomposeParams,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
    ) -> LayerStack:
        """Split ``image`` (RGBA, already validated) into ``params.layers`` layers, back to front.

        Raises JobCanceled when ``cancel`` is set, InvalidInput for bad parameters, ModelUnavailable or
        OutOfMemory for environment problems.
        """
        ...

    def describe(self) -> dict:
        """For /v1/health: backend name, device, whether the model is loaded."""
        ...
