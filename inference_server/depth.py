# SPDX-License-Identifier: GPL-3.0-or-later
"""Depth per layer: a monocular depth model on the composite, completed inside each layer where it was hidden.

The model (``DepthAnythingForDepthEstimation`` through transformers; default Depth Anything V2 Small, a Hub id or a
local folder from ``$STRATA_DEPTH_MODEL``) sees the whole picture once per job. Its output is relative inverse depth
("nearness": larger = closer). Each layer then gets its own full-frame map: the model's value where that layer is what
the camera sees (its alpha, not covered by the layers in front), and elsewhere — the parts the decomposition filled
behind the front layers, and its transparent area — a smooth continuation from those visible pixels (push-pull
diffusion), so a filled background does not inherit the shape of the object that hid it.

Files: ``depth_XX.png`` beside ``layer_XX.png``, 16-bit greyscale, 0 = the farthest and 65535 = the nearest value of the
whole job (one scale for all layers, so layers compare), and a ``depth`` entry in the manifest.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelUnavailable

logger = logging.getLogger(__name__)

DEPTH_MODEL_ENV = "STRATA_DEPTH_MODEL"
DEFAULT_DEPTH_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"
DEPTH_ENCODING = "uint16 nearness: 0 = farthest, 65535 = nearest of the job (relative inverse depth, one scale)"
# A pixel counts as "seen" in a layer when at least this much of the final colour comes from it.
VISIBLE_WEIGHT = 0.5

_estimators: dict[str, DepthEstimator] = {}


def depth_file_name(index: int) -> str:
    return f"depth_{index:02d}.png"


def depth_model_id() -> str:
    return os.environ.get(DEPTH_MODEL_ENV) or DEFAULT_DEPTH_MODEL


class DepthEstimator:
    """A loaded depth model and its image processor: ``estimator(rgb) → H×W float32 nearness``."""

    def __init__(self, model_id: str, device: str | None = None) -> None:
        try:
            import torch
            from transformers import AutoImageProcessor, DepthAnythingForDepthEstimation
        except ImportError as exc:
            raise ModelUnavailable(f"depth needs torch and transformers in the server env ({exc}); install the "
                                   f"server's 'qwen' extra") from None
        self.model_id = model_id
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.processor = AutoImageProcessor.from_pretrained(model_id)
            # Typed as the plain torch Module: transformers' own ``to`` is wrapped in a way type checkers misread.
            model: torch.nn.Module = DepthAnythingForDepthEstimation.from_pretrained(model_id)
            self.model = model.to(self.device).eval()
        except (OSError, ValueError) as exc:
            raise ModelUnavailable(
                f"cannot load the depth model {model_id!r} ({str(exc).splitlines()[0]}); download "
                f"{DEFAULT_DEPTH_MODEL} (huggingface-cli download {DEFAULT_DEPTH_MODEL} --local-dir DIR) and set "
                f"${DEPTH_MODEL_ENV}=DIR, or ask for no depth") from None

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        import torch
        from PIL import Image

        height, width = rgb.shape[:2]
        inputs = self.processor(images=Image.fromarray(rgb, "RGB"), return_tensors="pt")
        with torch.inference_mode():
            predicted = self.model(pixel_values=inputs["pixel_values"].to(self.device)).predicted_depth
            predicted = torch.nn.functional.interpolate(predicted[:, None].float(), size=(height, width),
                                                        mode="bicubic", align_corners=False)
        return predicted[0, 0].cpu().numpy().astype(np.float32)


def get_estimator(model_id: str | None = None) -> DepthEstimator:
    """The depth model, loaded once per process (the worker keeps it between jobs)."""
    model_id = model_id or depth_model_id()
    if model_id not in _estimators:
        logger.info("loading depth model %s", model_id)
        _estimators[model_id] = DepthEstimator(model_id)
    return _estimators[model_id]


def visible_weights(alphas: list[np.ndarray]) -> list[np.ndarray]:
    """How much of each pixel's final colour each layer gives (alpha × the transparency of everything in front)."""
    weights = []
    in_front = np.ones_like(alphas[0], dtype=np.float32)
    for alpha in reversed(alphas):
        weights.append(alpha * in_front)
        in_front = in_front * (1.0 - alpha)
    return weights[::-1]


def fill_from_known(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Push-pull fill: pixels where ``known`` is False get a smooth continuation of the known ones around them.

    Pull: halve the resolution, averaging known values weighted by how known they are, until one pixel is left.
    Push: going back up, each unknown pixel takes the coarser level's value, so holes close from their borders.
    """
    values = values.astype(np.float64)
    weight = known.astype(np.float64)
    if weight.sum() == 0:
        return np.zeros_like(values, dtype=np.float32)
    levels = [(values * weight, weight)]
    while max(levels[-1][1].shape) > 1:
        premul, w = levels[-1]
        height, width = w.shape
        pad = ((0, height % 2), (0, width % 2))
        premul, w = np.pad(premul, pad), np.pad(w, pad)
        premul = premul[0::2, 0::2] + premul[1::2, 0::2] + premul[0::2, 1::2] + premul[1::2, 1::2]
        w = w[0::2, 0::2] + w[1::2, 0::2] + w[0::2, 1::2] + w[1::2, 1::2]
        levels.append((premul, w))
    coarse = levels[-1][0] / np.maximum(levels[-1][1], 1e-12)
    for premul, w in reversed(levels[:-1]):
        height, width = w.shape
        up = np.repeat(np.repeat(coarse, 2, axis=0), 2, axis=1)[:height, :width]
        # Smooth the upsampled level a little so the fill has no blocky steps.
        up = _box3(up)
        own = premul / np.maximum(w, 1e-12)
        mix = np.clip(w, 0.0, 1.0)
        coarse = own * mix + up * (1.0 - mix)
    return np.where(known, values, coarse).astype(np.float32)


def _box3(image: np.ndarray) -> np.ndarray:
    padded = np.pad(image, 1, mode="edge")
    total = np.zeros_like(image)
    for dy in range(3):
        for dx in range(3):
            total += padded[dy:dy + image.shape[0], dx:dx + image.shape[1]]
    return total / 9.0


def layer_depths(nearness: np.ndarray, alphas: list[np.ndarray]) -> list[np.ndarray]:
    """One full-frame nearness map per layer (back → front): the model's where the layer is seen, filled elsewhere.

    A layer never seen at all (entirely hidden) takes the model's value under its own alpha, then fills around it;
    an empty layer takes the background's map."""
    maps: list[np.ndarray] = []
    for alpha, weight in zip(alphas, visible_weights(alphas), strict=False):
        known = weight >= VISIBLE_WEIGHT
        if not known.any():
            known = alpha >= VISIBLE_WEIGHT
        if not known.any():
            maps.append(maps[0] if maps else nearness.astype(np.float32))
            continue
        maps.append(fill_from_known(nearness, known))
    return maps


def encode_depth_maps(maps: list[np.ndarray]) -> list[np.ndarray]:
    """Float nearness maps → uint16 on one scale for the whole job (0 = farthest value, 65535 = nearest)."""
    low = min(float(m.min()) for m in maps)
    high = max(float(m.max()) for m in maps)
    span = high - low if high > low else 1.0
    return [np.clip(np.rint((m - low) / span * 65535.0), 0, 65535).astype(np.uint16) for m in maps]


def estimate_layer_depths(composite_rgba: np.ndarray, layers_rgba: list[np.ndarray],
                          progress: Callable[[str, int, int], None] | None = None,
                          model_id: str | None = None) -> tuple[list[np.ndarray], dict[str, Any]]:
    """(uint16 depth map per layer, the manifest's ``depth`` entry) for a decomposed stack."""
    count = len(layers_rgba)
    if progress:
        progress("depth", 0, count + 1)
    estimator = get_estimator(model_id)
    rgba = composite_rgba.astype(np.float32) / 255.0
    # The model wants RGB: a transparent input is shown over mid grey rather than black.
    rgb = rgba[..., :3] * rgba[..., 3:] + 0.5 * (1.0 - rgba[..., 3:])
    nearness = estimator(np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8))
    if progress:
        progress("depth", 1, count + 1)
    alphas = [layer[..., 3].astype(np.float32) / 255.0 for layer in layers_rgba]
    maps = layer_depths(nearness, alphas)
    if progress:
        progress("depth", count + 1, count + 1)
    entry = {"model": estimator.model_id, "encoding": DEPTH_ENCODING,
             "files": [depth_file_name(index) for index in range(count)]}
    return encode_depth_maps(maps), entry


def write_depth_maps(folder: str | os.PathLike, maps: list[np.ndarray]) -> None:
    """``depth_XX.png`` (16-bit greyscale) per layer, each written atomically."""
    import io

    from PIL import Image

    from .layers import write_bytes_atomic

    for index, depth in enumerate(maps):
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(depth, np.uint16)).save(buffer, format="PNG")
        write_bytes_atomic(Path(folder) / depth_file_name(index), buffer.getvalue())


def read_depth_map(path: str | os.PathLike) -> np.ndarray:
    """A ``depth_XX.png`` back as H×W uint16."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image, dtype=np.uint16) if image.mode in ("I;16", "I;16B") else np.asarray(
            image.convert("I"), dtype=np.int64).clip(0, 65535).astype(np.uint16)
