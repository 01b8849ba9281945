# SPDX-License-Identifier: GPL-3.0-or-later
"""Step 8, fill: the background's colour under the layers above (colour model, Telea, pull-push)."""

from __future__ import annotations

import numpy as np

from .cancel import checkpoint
from .elements import Element
from .regions import features_at
from .tuning import FILL_RELAX_STEPS, INPAINT_MAX_SIDE_PX, TELEA_BAND_PX


def fill_background(rgb: np.ndarray, background: Element, hole: np.ndarray,
                     smooth_within: np.ndarray | None = None) -> np.ndarray:
    """The background's colour everywhere, including in ``hole`` (under the layers above); float RGB.
    A photo's hole gets a smooth fill away from its edge inside ``smooth_within`` (the subject's layer)."""
    import cv2

    height_px, width_px = rgb.shape[:2]
    if not hole.any():
        return rgb.astype(np.float64)
    known = ~hole
    if not known.any():
        return np.broadcast_to(background.color_rgb, rgb.shape).astype(np.float64).copy()
    if background.regions:
        # Flat or gradient: fit one quadratic model over the background's own pixels, evaluate everywhere.
        sample = background.mask & known
        if sample.sum() < 12:
            sample = known
        picks = np.flatnonzero(sample.ravel())
        picks = picks[:: max(1, picks.size // 50_000)]  # 50k pixels pin a 6-term model down
        design = features_at(picks // width_px, picks % width_px, height_px, width_px)
        coef, *_ = np.linalg.lstsq(design, rgb.reshape(-1, 3)[picks].astype(np.float64), rcond=None)
        checkpoint()
        out = rgb.astype(np.float64)
        ys, xs = np.nonzero(hole)
        out[ys, xs] = features_at(ys, xs, height_px, width_px) @ coef
        return np.clip(out, 0, 255)
    # Texture (a photo): Telea inpainting, which continues the surrounding texture across a shape or a word laid
    # over the photo (and scores better there against the true background: bench_decompose's photo set). Deep
    # inside a subject's big hole it smears the rim inward into radial streaks: there a smooth pull-push fill
    # takes over, which reads as the out-of-focus background a subject usually hides. Both run at reduced size
    # when the image is big.
    hole_u8 = cv2.dilate(hole.astype(np.uint8), np.ones((3, 3), np.uint8))
    scale = min(1.0, INPAINT_MAX_SIDE_PX / max(height_px, width_px))
    src = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    if scale < 1.0:
        size = (max(1, round(width_px * scale)), max(1, round(height_px * scale)))
        small = cv2.resize(src, size, interpolation=cv2.INTER_AREA)
        small_hole = cv2.resize(hole_u8, size, interpolation=cv2.INTER_NEAREST)
        small_hole = cv2.dilate(small_hole, np.ones((3, 3), np.uint8))
        filled = cv2.inpaint(small, small_hole, 3, cv2.INPAINT_TELEA)
        filled = cv2.resize(filled, (width_px, height_px), interpolation=cv2.INTER_LINEAR)
    else:
        filled = cv2.inpaint(src, hole_u8, 3, cv2.INPAINT_TELEA)
    checkpoint()
    depth_px = cv2.distanceTransform(hole_u8, cv2.DIST_L2, 3)
    band_px = TELEA_BAND_PX / scale
    smooth_share = np.clip(depth_px / band_px - 1.0, 0.0, 1.0)  # 0 within one band of the edge, 1 past two
    out = rgb.astype(np.float64)
    inside = hole_u8 > 0
    out[inside] = filled[inside]
    if smooth_within is None:
        smooth_within = np.zeros_like(hole)
    smooth_share[~smooth_within] = 0.0
    if smooth_share.any():
        checkpoint()
        deep = smooth_share > 0
        smooth = smooth_fill(rgb.astype(np.float64), hole)
        share = smooth_share[deep][:, None]
        out[deep] = (1.0 - share) * out[deep] + share * smooth[deep]
    return out


def smooth_fill(rgb: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """``rgb`` with ``hole`` filled by pull-push (normalised convolution over an image pyramid) at reduced size,
    upsampled, with grain of the surroundings' fine-detail strength added back (fixed seed: reproducible)."""
    import cv2

    height_px, width_px = rgb.shape[:2]
    # Everything a few pixels into the known side of the rim is anti-aliased subject edge: not a fill source.
    hole = cv2.dilate(hole.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    scale = min(1.0, INPAINT_MAX_SIDE_PX / max(height_px, width_px))
    size = (max(1, round(width_px * scale)), max(1, round(height_px * scale)))
    known = (~hole).astype(np.float32)
    small_known = cv2.resize(known, size, interpolation=cv2.INTER_AREA)
    small_premul = cv2.resize(rgb.astype(np.float32) * known[..., None], size, interpolation=cv2.INTER_AREA)
    # Pull: halve while any level still has unknown pixels; push: fill each level's gaps from the coarser one.
    pyramid = [(small_premul, small_known)]
    while min(pyramid[-1][1].shape) > 2 and (pyramid[-1][1] < 0.999).any():
        premul, weight = pyramid[-1]
        pyramid.append((cv2.pyrDown(premul), cv2.pyrDown(weight)))
    premul, weight = pyramid[-1]
    fallback = premul.reshape(-1, 3).sum(axis=0) / max(float(weight.sum()), 1e-6)
    estimate = np.where(weight[..., None] > 1e-3, premul / np.maximum(weight, 1e-3)[..., None], fallback)
    for premul, weight in reversed(pyramid[:-1]):
        checkpoint()
        coarse = cv2.resize(estimate.astype(np.float32), (weight.shape[1], weight.shape[0]),
                            interpolation=cv2.INTER_LINEAR)
        coarse = cv2.GaussianBlur(coarse, (0, 0), 1.0)
        trust = np.clip(weight * 2.0, 0.0, 1.0)[..., None]
        estimate = trust * premul / np.maximum(weight, 1e-3)[..., None] + (1.0 - trust) * coarse
        # Relax towards the membrane (harmonic) fill: smooth inside, meeting the rim's colours without a seam.
        fixed = weight > 0.999
        for _ in range(FILL_RELAX_STEPS):
            estimate = np.where(fixed[..., None], estimate, cv2.blur(estimate.astype(np.float32), (3, 3)))
    smooth = cv2.resize(estimate.astype(np.float32), (width_px, height_px), interpolation=cv2.INTER_LINEAR)
    checkpoint()
    # Grain: the surroundings' fine detail (image minus its blur) has some strength; the fill gets as much noise.
    detail = rgb.astype(np.float32) - cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), 2.0)
    ring = cv2.dilate(hole.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool) & ~hole
    strength = float(np.sqrt(np.mean(detail[ring] ** 2))) if ring.any() else 0.0
    noise = np.random.default_rng(0).standard_normal((height_px, width_px)).astype(np.float32)
    grain = cv2.GaussianBlur(noise, (0, 0), 0.8)
    grain = grain * (0.3 * strength / max(float(grain.std()), 1e-6))
    out = rgb.copy()
    out[hole] = smooth[hole] + grain[hole][:, None]
    return np.clip(out, 0, 255)
