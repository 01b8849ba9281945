# SPDX-License-Identifier: GPL-3.0-or-later
"""Step 1, a translucent shadow: a cut-out (an RGBA input) whose visible pixels are in good part see-through away
from its solid body (a drop shadow, a glow, a motion blur, a tinted backdrop) has the translucent part as its bottom
layer, continuing under the solid body at its typical opacity, and the solid body, decomposed, above it."""

from __future__ import annotations

import numpy as np

from .tuning import FLAT_RESIDUAL, SHADOW_AWAY_PX, SHADOW_PLATEAU, SHADOW_SHARE


def split_shadow(target: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(shadow, body) RGBA arrays of an RGBA input (straight colour), body over shadow giving the input, or None
    when its see-through pixels are only the soft rim of a solid body (anti-aliasing, feathering)."""
    import cv2

    alpha = target[..., 3].astype(np.float32) / 255.0
    solid = alpha > 0.9
    visible = alpha >= 0.1
    if not solid.any() or not visible.any():
        return None
    # See-through pixels away from the solid body: a rim of soft edge lies next to it.
    away = cv2.distanceTransform((~solid).astype(np.uint8), cv2.DIST_L2, 5) > SHADOW_AWAY_PX
    spread = visible & ~solid & away
    if spread.sum() < SHADOW_SHARE * visible.sum() or solid.sum() < SHADOW_SHARE * visible.sum():
        return None
    opacity = float(np.median(alpha[spread]))
    if (np.abs(alpha[spread] - opacity) < 0.1).mean() < SHADOW_PLATEAU:
        return None  # a feathered edge ramps down to nothing: it is the body's own soft rim
    # The shadow takes up to its opacity everywhere the input shows (under the body too); the body takes the
    # rest: body + shadow·(1 − body) = input.
    shadow_alpha = np.minimum(alpha, opacity)
    body_alpha = np.where(alpha > shadow_alpha, (alpha - shadow_alpha) / np.maximum(1.0 - shadow_alpha, 1e-6), 0.0)
    # Its colour is the input's, under the body too: a faded copy of the body (a motion blur, a glow) shows it
    # where it reaches out.
    rgb = target[..., :3]
    shadow_rgb = rgb
    seen = rgb[spread].astype(np.float32)
    if float(np.sqrt(seen.var(axis=0).mean())) < FLAT_RESIDUAL:
        # A flat shadow (one colour where it shows): that colour under the body too, not the body's own.
        shadow_rgb = np.broadcast_to(np.rint(seen.mean(axis=0)).astype(np.uint8), rgb.shape)
    shadow = np.dstack([shadow_rgb, np.rint(shadow_alpha * 255.0)]).astype(np.uint8)
    body = np.dstack([rgb, np.rint(body_alpha * 255.0)]).astype(np.uint8)
    return shadow, body
