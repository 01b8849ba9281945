# SPDX-License-Identifier: GPL-3.0-or-later
"""Step 9, soft glows: an image with no edges at all, a flat ground under blurred blobs of colour (a "mesh
gradient" wallpaper), is a few semi-transparent glow layers of one colour each over that ground."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cancel import checkpoint
from .tuning import (
    EDGE_STEP,
    GLOW_FIT_RMS,
    GLOW_GROUND_SHARE,
    GLOW_GROUND_TOLERANCE,
    GLOW_MAX_SIDE_PX,
    GLOW_MIN_DEVIATION,
)


@dataclass
class Glows:
    ground_rgb: np.ndarray  # (3,) float
    colors_rgb: list[np.ndarray]  # one (3,) colour per glow, back to front
    alphas: list[np.ndarray]  # one H×W float32 alpha (0–1) per glow, full size


def saturated_end(ground_rgb: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Where the line from the ground through ``direction`` leaves the RGB cube: a glow's colour. A glow of colour
    F at alpha a shows ground + a·(F − ground), so every pixel of it lies on that line; designers pick saturated
    colours (one channel at its end), so F is the line's far end."""
    limits = np.where(direction > 0, (255.0 - ground_rgb) / np.maximum(direction, 1e-9),
                      np.where(direction < 0, -ground_rgb / np.minimum(direction, -1e-9), np.inf))
    return np.clip(ground_rgb + float(limits.min()) * direction, 0.0, 255.0)


def find_glows(rgb: np.ndarray, max_glows: int) -> Glows | None:
    """The ground and its glows, if the image is one: no colour step between neighbours anywhere, one flat colour
    showing on a good part of the canvas (the most common border colour), and a few glow colours (each the
    saturated end of the line from the ground through the pixel that differs most from what the glows found so
    far explain) whose alphas, fitted per pixel, rebuild the image closely."""
    import cv2

    if max_glows < 1:
        return None
    height_px, width_px = rgb.shape[:2]
    scale = min(1.0, GLOW_MAX_SIDE_PX / max(height_px, width_px))
    small = cv2.resize(rgb, (max(1, round(width_px * scale)), max(1, round(height_px * scale))),
                       interpolation=cv2.INTER_AREA) if scale < 1.0 else rgb
    # No edges: every step between neighbours (at full size) is below a region boundary's.
    steps_x = np.abs(np.diff(rgb, axis=1)).max(axis=2)
    steps_y = np.abs(np.diff(rgb, axis=0)).max(axis=2)
    if max(float(steps_x.max(initial=0.0)), float(steps_y.max(initial=0.0))) >= EDGE_STEP:
        return None
    border = np.concatenate([small[0], small[-1], small[:, 0], small[:, -1]]).astype(np.int32)
    codes, counts = np.unique(border // 4, axis=0, return_counts=True)
    mode = codes[int(np.argmax(counts))]
    ground_rgb = border[(border // 4 == mode).all(axis=1)].mean(axis=0).astype(np.float64)
    pixels = small.reshape(-1, 3).astype(np.float64)
    deviation = pixels - ground_rgb
    if (np.abs(deviation).max(axis=1) <= GLOW_GROUND_TOLERANCE).mean() < GLOW_GROUND_SHARE:
        return None
    directions: list[np.ndarray] = []
    residual = deviation
    weights = np.zeros((len(pixels), 0))
    for _ in range(max_glows):
        checkpoint()
        strength = np.linalg.norm(residual, axis=1)
        strongest = int(np.argmax(strength))
        if strength[strongest] < GLOW_MIN_DEVIATION:
            break
        end = saturated_end(ground_rgb, deviation[strongest] / max(np.linalg.norm(deviation[strongest]), 1e-9))
        directions.append(end - ground_rgb)
        basis = np.stack(directions, axis=1)  # 3×k
        weights = np.clip(np.linalg.lstsq(basis, deviation.T, rcond=None)[0].T, 0.0, 1.0)
        residual = deviation - weights @ basis.T
    if not directions:
        return None
    if float(np.sqrt((residual ** 2).mean())) > GLOW_FIT_RMS:
        return None
    alphas: list[np.ndarray] = []
    for k in range(len(directions)):
        alpha = weights[:, k].reshape(small.shape[:2]).astype(np.float32)
        full = cv2.resize(alpha, (width_px, height_px), interpolation=cv2.INTER_LINEAR) if scale < 1.0 else alpha
        alphas.append(np.clip(full, 0.0, 1.0))
    colors = [ground_rgb + d for d in directions]
    # Bigger things lie behind smaller ones: the glow with the most alpha in all is the back one.
    order = np.argsort([-float(alpha.sum()) for alpha in alphas], kind="stable")
    return Glows(ground_rgb, [colors[k] for k in order], [alphas[k] for k in order])
