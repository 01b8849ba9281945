"""PLACEHOLDER (being replaced by the real peel-and-fill CPU decomposer): one opaque background layer
plus empty layers, so the rest of the system has something that honours the interface."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..layers import Layer, LayerStack, Stopwatch
from ..params import DecomposeParams
from .base import CancelToken, ProgressCallback, no_progress


class CpuDecomposer:
    name = "cpu"

    def describe(self) -> dict:
        return {"backend": self.name, "device": "cpu", "model_loaded": True}

    def decompose(self, image: Image.Image, params: DecomposeParams,
                  progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> LayerStack:
        watch = Stopwatch()
        watch.start("decompose")
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint8).copy()
        layers = [Layer(rgba)]
        for step in range(1, params.layers):
            if cancel is not None:
                cancel.raise_if_canceled()
            layers.append(Layer(np.zeros_like(rgba)))
            progress("peel", step, params.layers - 1)
        watch.stop()
        return LayerStack(layers, backend=self.name, params=params.to_dict(), seed=params.seed,
                          timings_s=watch.timings_s)
