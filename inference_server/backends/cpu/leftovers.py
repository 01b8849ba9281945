# SPDX-License-Identifier: GPL-3.0-or-later
"""Step 4, leftovers: pieces of an element that no region caught (thin, anti-aliased strokes of line art or
letters, all edge pixels) join the element whose colour over the ground they show, instead of staying painted
into the background layer."""

from __future__ import annotations

import numpy as np

from .cancel import checkpoint
from .elements import Element, ElementKind, set_hull
from .peel import nearest_colors
from .tuning import BAND_PX, LEFTOVER_REACH, MIN_LEFTOVER_ALPHA, SAME_COLOR


def join_leftovers(rgb: np.ndarray, background: Element, elements: list[Element]) -> None:
    """Leftover pixels, outside every element and its soft-edge band and unlike the ground next to them, are
    explained as one opaque element's colour F over that ground colour B: I = B + α(F − B). Where the nearest
    such element (in reach, its colour at least SAME_COLOR from the ground's) explains a leftover piece to within
    half of SAME_COLOR, the piece's pixels with α ≥ MIN_LEFTOVER_ALPHA join its core (the peel's band then
    gives them their soft edge). Only on a flat ground: on a photo, what no element took is the photo."""
    import cv2

    if not background.regions or not background.mask.any() or not elements:
        return
    height_px, width_px = rgb.shape[:2]
    hosts = [e for e in elements if e.kind in (ElementKind.SHAPE, ElementKind.TEXT) and e.opacity >= 1.0]
    if not hosts:
        return
    taken = np.zeros((height_px, width_px), bool)
    for element in elements:
        taken |= element.mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * BAND_PX + 1, 2 * BAND_PX + 1))
    banded = cv2.dilate(taken.astype(np.uint8), kernel).astype(bool)
    checkpoint()
    ground_rgb, _ = nearest_colors(rgb, background.mask)
    checkpoint()
    unlike = np.linalg.norm(rgb - ground_rgb, axis=2) > SAME_COLOR
    leftover = unlike & ~banded & ~background.mask
    if not leftover.any():
        return
    # Which host is nearest to each pixel (index into hosts), and how far.
    owner = np.zeros((height_px, width_px), np.int32)
    for index, host in enumerate(hosts, start=1):
        owner[host.mask] = index
    distance, label = cv2.distanceTransformWithLabels((owner == 0).astype(np.uint8), cv2.DIST_L2, 5,
                                                      labelType=cv2.DIST_LABEL_PIXEL)
    positions = np.flatnonzero(owner.ravel())
    nearest_host = owner.ravel()[positions[np.maximum(label.ravel() - 1, 0)]].reshape(height_px, width_px)
    reach_px = LEFTOVER_REACH * float(np.hypot(height_px, width_px))
    count, pieces, stats, _ = cv2.connectedComponentsWithStats(leftover.astype(np.uint8), connectivity=8)
    grown = set()
    for piece in range(1, count):
        if piece % 64 == 0:
            checkpoint()
        x, y, w, h = stats[piece, :4]
        box = (slice(y, y + h), slice(x, x + w))
        mask = pieces[box] == piece
        if float(distance[box][mask].min()) > reach_px:
            continue
        values, votes = np.unique(nearest_host[box][mask], return_counts=True)
        host = hosts[int(values[np.argmax(votes)]) - 1]
        f = host.color_rgb.astype(np.float32)
        b = ground_rgb[box][mask].astype(np.float32)
        i = rgb[box][mask].astype(np.float32)
        fb = f - b
        denom = (fb * fb).sum(axis=1)
        if float(np.sqrt(denom.min())) < SAME_COLOR:
            continue
        alpha = np.clip(((i - b) * fb).sum(axis=1) / denom, 0.0, 1.0)
        residual = np.linalg.norm(i - (b + alpha[:, None] * fb), axis=1)
        if float(np.median(residual)) > 0.5 * SAME_COLOR:
            continue
        joined = np.zeros(mask.shape, bool)
        joined[mask] = alpha >= MIN_LEFTOVER_ALPHA
        if not joined.any():
            continue
        host.mask[box] |= joined
        background.mask[box] &= ~joined
        grown.add(id(host))
    for host in hosts:
        if id(host) in grown:
            host.area = int(host.mask.sum())
            set_hull(host)
