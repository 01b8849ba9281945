# SPDX-License-Identifier: GPL-3.0-or-later
"""Step 1, a translucent shadow: a cut-out (an RGBA input) whose visible pixels are in good part see-through away
from its solid body (a drop shadow, a glow, a motion blur, a tinted backdrop) has the translucent part as its bottom
layer, continuing under the solid body at its typical opacity, and the solid body, decomposed, above it."""

from __future__ import annotations

import numpy as np

from .tuning import FLAT_RESIDUAL, SAME_COLOR, SHADOW_AWAY_PX, SHADOW_PLATEAU, SHADOW_RAMP_PX, SHADOW_SHARE


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
    distance = cv2.distanceTransform((~solid).astype(np.uint8), cv2.DIST_L2, 5)
    away = distance > SHADOW_AWAY_PX
    spread = visible & ~solid & away
    if spread.sum() < SHADOW_SHARE * visible.sum() or solid.sum() < SHADOW_SHARE * visible.sum():
        return feathered_shadow(target, alpha, solid, distance)
    opacity = float(np.median(alpha[spread]))
    if (np.abs(alpha[spread] - opacity) < 0.1).mean() < SHADOW_PLATEAU:
        return feathered_shadow(target, alpha, solid, distance)  # or the body's own feathered rim
    # The shadow takes up to its opacity everywhere the input shows (under the body too).
    shadow_alpha = np.minimum(alpha, opacity)
    # Its colour is the input's, under the body too: a faded copy of the body (a motion blur, a glow) shows it
    # where it reaches out.
    rgb = target[..., :3]
    shadow_rgb = rgb
    seen = rgb[spread].astype(np.float32)
    if float(np.sqrt(seen.var(axis=0).mean())) < FLAT_RESIDUAL:
        # A flat shadow (one colour where it shows): that colour under the body too, not the body's own.
        shadow_rgb = np.broadcast_to(np.rint(seen.mean(axis=0)).astype(np.uint8), rgb.shape)
    return shadow_and_body(target, shadow_rgb, shadow_alpha)


def feathered_shadow(target: np.ndarray, alpha: np.ndarray, solid: np.ndarray,
                     distance: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(shadow, body) of a cut-out over a feathered shadow of one flat colour (a blurred drop shadow: its alpha
    ramps down to nothing, mostly too faint to count as see-through), or None.

    A feathered body keeps its own colours out to its faint edge; a shadow is one colour, not the body's: the
    soft margin past the anti-aliased rim is flat and differs from the solid pixels it borders."""
    import cv2

    if solid.sum() < SHADOW_SHARE * (alpha > 0).sum():
        return None
    margin = (alpha > 0.02) & ~solid & (distance > SHADOW_AWAY_PX)
    rim = solid & (cv2.distanceTransform(solid.astype(np.uint8), cv2.DIST_L2, 5) <= 2.0)
    # The margin's mean width beyond the rim, in pixels: its area over the body's outline.
    if margin.sum() < SHADOW_RAMP_PX * max(int(rim.sum()), 1):
        return None
    rgb = target[..., :3].astype(np.float32)
    seen = rgb[margin]
    color = seen.mean(axis=0)
    if float(np.sqrt(seen.var(axis=0).mean())) >= FLAT_RESIDUAL:
        return None
    if float(np.linalg.norm(rgb[rim].mean(axis=0) - color)) < SAME_COLOR:
        return None  # the body's own colour fading out
    # It goes on under the body as strong as it shows right at the body's edge.
    edge = (alpha > 0) & ~solid & (distance <= 2.0)
    if not edge.any():
        return None
    opacity = float(np.median(alpha[edge]))
    if float(np.median(alpha[margin])) >= 0.5 * opacity:
        return None  # not a blur fading out from the body: a hard-edged shadow, drawn with the body it is cast by
    shadow_alpha = np.where(solid, opacity, np.minimum(alpha, opacity))
    shadow_rgb = np.broadcast_to(np.rint(color).astype(np.uint8), target[..., :3].shape)
    return shadow_and_body(target, shadow_rgb, shadow_alpha)


def shadow_and_body(target: np.ndarray, shadow_rgb: np.ndarray,
                    shadow_alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(shadow, body) RGBA: the shadow in its colour at ``shadow_alpha`` (0–1), the body in the input's colour
    taking the rest of the input's alpha: body + shadow · (1 − body) = input."""
    alpha = target[..., 3].astype(np.float32) / 255.0
    body_alpha = np.where(alpha > shadow_alpha, (alpha - shadow_alpha) / np.maximum(1.0 - shadow_alpha, 1e-6), 0.0)
    shadow = np.dstack([shadow_rgb, np.rint(shadow_alpha * 255.0)]).astype(np.uint8)
    body = np.dstack([target[..., :3], np.rint(body_alpha * 255.0)]).astype(np.uint8)
    return shadow, body
