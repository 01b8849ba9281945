# SPDX-License-Identifier: GPL-3.0-or-later
"""Step 7, peel: an element's straight RGBA layer (alpha in a soft-edge band, completion, colour)."""

from __future__ import annotations

import numpy as np

from .cancel import checkpoint
from .elements import Element
from .masks import bbox_slices
from .tuning import BAND_PX


def nearest_colors(rgb: np.ndarray, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every pixel: the colour of the nearest ``source`` pixel and the distance to it (px)."""
    import cv2

    if not source.any():
        return np.zeros_like(rgb), np.full(source.shape, np.inf, np.float32)
    distance, label = cv2.distanceTransformWithLabels((~source).astype(np.uint8), cv2.DIST_L2, 5,
                                                      labelType=cv2.DIST_LABEL_PIXEL)
    positions = np.flatnonzero(source.ravel())
    nearest = positions[np.maximum(label.ravel() - 1, 0)]
    return rgb.reshape(-1, 3)[nearest].reshape(rgb.shape), distance


def peel(rgb: np.ndarray, rgb_u8: np.ndarray, element: Element, covering: np.ndarray,
          alpha_in: np.ndarray) -> np.ndarray:
    """The element's straight RGBA layer (full size); ``rgb_u8`` is ``rgb`` as it shows (uint8)."""
    import cv2

    height_px, width_px = rgb.shape[:2]
    rgba = np.zeros((height_px, width_px, 4), np.uint8)
    # Colour under zero alpha away from the element: the input's own colour. It is never seen in the composite,
    # but it is what a viewer or an editor that ignores alpha shows, what a merge with the layer below keeps
    # (Pillow's alpha_composite keeps the lower colour under alpha 0), and it does not bleed black when resampled.
    rgba[..., :3] = rgb_u8
    core = element.mask
    # Work inside the element's bounding box plus a margin; the colour outside it is the nearest colour anyway.
    box = bbox_slices(element.hull, BAND_PX + 2)
    crop_rgb, crop_core = rgb[box], core[box]
    translucent = element.opacity < 1.0
    if translucent:
        # Its pieces (over different things) are one sheet: close the seams between them, one colour throughout.
        closing = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
        crop_core = cv2.morphologyEx(crop_core.astype(np.uint8), cv2.MORPH_CLOSE, closing).astype(bool)
        near_f = np.broadcast_to(element.color_rgb.astype(np.float32), crop_rgb.shape)
    else:
        near_f, _ = nearest_colors(crop_rgb, crop_core)
    checkpoint()
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * BAND_PX + 1, 2 * BAND_PX + 1))
    grown = cv2.dilate(crop_core.astype(np.uint8), kernel).astype(bool)
    band = grown & ~crop_core
    outside = ~grown
    alpha = crop_core.astype(np.float32)
    if band.any() and outside.any():
        near_b, _ = nearest_colors(crop_rgb, outside)
        checkpoint()
        f = near_f[band].astype(np.float32)
        b = near_b[band].astype(np.float32)
        i = crop_rgb[band].astype(np.float32)
        fb = f - b
        denom = (fb * fb).sum(axis=1)
        projected = ((i - b) * fb).sum(axis=1) / np.maximum(denom, 1e-6)
        # Where F and B are nearly the same colour the projection is noise: decide by distance instead.
        fallback = (np.linalg.norm(i - f, axis=1) < np.linalg.norm(i - b, axis=1)).astype(np.float32)
        alpha[band] = np.where(denom > 15.0 ** 2, np.clip(projected, 0.0, 1.0), fallback)
    elif band.any():
        alpha[band] = 1.0
    if translucent:
        # Over B the observed colour is B + a·(F − B): the projection already is the alpha, up to the opacity.
        alpha = np.minimum(alpha, element.opacity)
    # Complete the element under what covers it, inside its own hulls.
    completion = element.hull[box] & covering[box] & ~crop_core
    alpha[completion] = element.opacity
    # A layer is never more opaque than the input there (RGBA inputs).
    alpha = np.minimum(alpha, alpha_in[box])
    out = np.zeros(crop_rgb.shape[:2] + (4,), np.uint8)
    # Near its edge (the soft band and a little beyond) the element's own colour, so a soft edge resampled in
    # straight alpha does not pick up the colour of what lies behind it; so too under the elements above it, where
    # it may go on hidden (a soft rim wider than the band, a part the hull completion misses); elsewhere the
    # input's colour.
    near = cv2.dilate(grown.astype(np.uint8), kernel).astype(bool) | (alpha > 0) | covering[box]
    out[..., :3] = np.where(near[..., None], np.clip(np.rint(near_f), 0, 255), crop_rgb).astype(np.uint8)
    out[..., 3] = np.clip(np.rint(alpha * 255.0), 0, 255).astype(np.uint8)
    rgba[box] = out
    return rgba
