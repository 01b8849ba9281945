# SPDX-License-Identifier: GPL-3.0-or-later
"""Steps 8 and 9: the over-composite's shares, the bottom layer's solve and the residual correction."""

from __future__ import annotations

import numpy as np

from ...layers import Layer, alpha_bbox_px
from .cancel import checkpoint
from .regions import channel_max


def alpha_boxes(layers_rgba: list[np.ndarray]) -> list[tuple[slice, slice] | None]:
    """Each layer's alpha box as row and column slices (None: fully transparent). The shares and the composite are
    worked out inside the boxes only, so a line of text costs its line, not the page; the numbers are the same, as
    outside its box a layer's share is 0 and what shows through it is unchanged."""
    boxes: list[tuple[slice, slice] | None] = []
    for rgba in layers_rgba:
        box = alpha_bbox_px(rgba[..., 3])
        boxes.append(None if box is None else (slice(box[1], box[1] + box[3]), slice(box[0], box[0] + box[2])))
    return boxes


def over_shares(layers_rgba: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(L, H, W) float32: how much of each layer shows in the straight-alpha "over" composite,
    q_k = α_k · Π_{j>k} (1 − α_j); and (H, W, 3) float32: the composite's premultiplied colour (0–255), Σ q_k ·
    colour_k (its alpha is Σ q_k). (The pixel-exact composite lives in layers.composite_over; these shares are
    what the solves need.)"""
    boxes = alpha_boxes(layers_rgba)
    height_px, width_px = layers_rgba[0].shape[:2]
    shares = np.zeros((len(layers_rgba), height_px, width_px), np.float32)
    transmit = np.ones((height_px, width_px), np.float32)
    for index in reversed(range(len(layers_rgba))):
        checkpoint()
        box = boxes[index]
        if box is None:
            continue
        alpha = layers_rgba[index][box][..., 3].astype(np.float32) / 255.0
        shares[index][box] = alpha * transmit[box]
        transmit[box] *= 1.0 - alpha
    premul = np.zeros((height_px, width_px, 3), np.float32)
    for share, rgba, box in zip(shares, layers_rgba, boxes, strict=True):
        checkpoint()
        if box is not None:
            premul[box] += share[box][..., None] * rgba[box][..., :3]
    return shares, premul


def over_premul(layers_rgba: list[np.ndarray], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Premultiplied colour (0–255) and alpha (0–1) of the layers' composite, float32; zeros for no layers."""
    if not layers_rgba:
        return np.zeros(shape + (3,), np.float32), np.zeros(shape, np.float32)
    shares, premul = over_shares(layers_rgba)
    return premul, shares.sum(axis=0)


def solve_bottom(target: np.ndarray, top_premul: np.ndarray, top_alpha: np.ndarray, fill_rgb: np.ndarray,
                  opaque: bool, complete_under: bool = False) -> np.ndarray:
    """Bottom layer such that it, under the layers above (``top_*``), equals the target where they leave it
    visible; elsewhere it keeps ``fill_rgb``. Where they hide it, its alpha is 0, or with ``complete_under``
    the input's alpha there (a background that is the picture's ground, not a transparent surround)."""
    out_alpha = target[..., 3].astype(np.float32) / 255.0
    out_premul = target[..., :3].astype(np.float32) * out_alpha[..., None]
    visible = 1.0 - top_alpha
    if opaque:
        bottom_alpha = np.ones_like(out_alpha)
    else:
        bottom_alpha = np.clip((out_alpha - top_alpha) / np.maximum(visible, 1e-6), 0.0, 1.0)
        hidden = visible < 1e-6
        bottom_alpha[hidden] = out_alpha[hidden] if complete_under else 0.0
    weight = visible * bottom_alpha
    checkpoint()
    solved = (out_premul - top_premul) / np.maximum(weight, 1e-6)[..., None]
    checkpoint()
    # Solve only where the bottom shows enough for the division to be stable; elsewhere keep the fill.
    use_solved = weight > 0.1
    color = np.where(use_solved[..., None], solved, fill_rgb)
    checkpoint()
    bottom = np.zeros(target.shape, np.uint8)
    bottom[..., :3] = np.clip(np.rint(color), 0, 255).astype(np.uint8)
    bottom[..., 3] = np.clip(np.rint(bottom_alpha * 255.0), 0, 255).astype(np.uint8)
    return bottom


def correct_alpha(layers: list[Layer], target: np.ndarray, tolerance: float = 1.5 / 255.0) -> None:
    """Where soft layers overlap on an RGBA input's see-through rim (a fill under the outline of a drawing, both
    capped by the input's alpha), their "over" composite is more opaque than the input: lower the alpha of the
    topmost layer there so that the composite's alpha is the input's, α_top = (α_in − α_below) / (1 − α_below)
    (and the next one down where that is not enough). The colour is left to ``correct_residual``."""
    alpha_in = target[..., 3].astype(np.float32) / 255.0
    for _ in range(len(layers)):
        checkpoint()
        alphas = [layer.rgba[..., 3].astype(np.float32) / 255.0 for layer in layers]
        below = np.zeros_like(alpha_in)
        belows = []
        for alpha in alphas:
            belows.append(below)
            below = alpha + (1.0 - alpha) * below
        over = below > alpha_in + tolerance
        if not over.any():
            return
        top = np.full(alpha_in.shape, -1)
        for index, alpha in enumerate(alphas):
            top[alpha > 0] = index
        for index, layer in enumerate(layers):
            pixels = over & (top == index)
            if not pixels.any():
                continue
            under = belows[index][pixels]
            fixed = np.clip((alpha_in[pixels] - under) / np.maximum(1.0 - under, 1e-6), 0.0, 1.0)
            # Round down: a level too opaque is what this step removes.
            layer.rgba[..., 3][pixels] = np.floor(fixed * 255.0 + 1e-3).astype(np.uint8)


def correct_residual(layers: list[Layer], target: np.ndarray, tolerance: float = 0.5) -> None:
    """Put what the composite still misses into the colour of the layer that contributes most at each pixel, and
    what that leaves (its colour clipped at 0 or 255: light hair under a dark stroke's soft edge) into the
    layer that contributes most after it.

    With straight-alpha "over", the composite's premultiplied colour is Σ_k colour_k · q_k where
    q_k = α_k · Π_{j>k} (1 − α_j); changing colour_k by err · out_α / q_k fixes the pixel exactly (until clipping).
    """
    shares, composite_premul = over_shares([layer.rgba for layer in layers])
    error_premul = (target[..., :3].astype(np.float32) * (target[..., 3:4].astype(np.float32) / 255.0)
                    - composite_premul)
    checkpoint()
    bad = channel_max(np.abs(error_premul)) > tolerance
    if not bad.any():
        return
    # Worked out at the pixels that miss only (row-major order, as a boolean mask picks them).
    at = np.flatnonzero(bad.ravel())
    shares_at = shares.reshape(len(layers), -1)[:, at]
    error_at = error_premul.reshape(-1, 3)[at]
    best = np.argmax(shares_at, axis=0)
    for index, layer in enumerate(layers):
        checkpoint()
        pick = (best == index) & (shares_at[index] > 0.02)
        if not pick.any():
            continue
        ys, xs = np.unravel_index(at[pick], bad.shape)
        color = layer.rgba[ys, xs, :3].astype(np.float32)
        share = shares_at[index][pick][:, None]
        fixed = np.clip(np.rint(color + error_at[pick] / share), 0, 255)
        layer.rgba[ys, xs, :3] = fixed.astype(np.uint8)
        error_at[pick] -= share * (fixed - color)
    # What clipping left, at those pixels only: into the runner-up's colour.
    off = np.abs(error_at).max(axis=1) > tolerance
    if not off.any() or len(layers) < 2:
        return
    at, error_at, best = at[off], error_at[off], best[off]
    shares_at = shares_at[:, off]
    shares_at[best, np.arange(at.size)] = -1.0
    runner_up = np.argmax(shares_at, axis=0)
    for index, layer in enumerate(layers):
        pick = (runner_up == index) & (shares_at[index] > 0.02)
        if not pick.any():
            continue
        ys, xs = np.unravel_index(at[pick], bad.shape)
        color = layer.rgba[ys, xs, :3].astype(np.float32)
        fixed = np.clip(np.rint(color + error_at[pick] / shares_at[index][pick][:, None]), 0, 255)
        layer.rgba[ys, xs, :3] = fixed.astype(np.uint8)
