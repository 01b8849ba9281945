# SPDX-License-Identifier: GPL-3.0-or-later
"""Mask geometry the steps share: pieces, hulls, openings, filled holes, bounding boxes."""

from __future__ import annotations

import numpy as np

from .tuning import STROKE_THICKNESS

# ITU-R BT.601 luma weights, the ones INK_DARK and the other brightness thresholds were tuned with.
LUMA_BT601 = (0.299, 0.587, 0.114)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Luma of RGB pixels (or one colour) on the input's 0–255 scale, float32."""
    return (rgb @ np.array(LUMA_BT601, np.float32)).astype(np.float32)


def count_pieces(mask: np.ndarray) -> tuple[int, float]:
    """(number of connected pieces, the largest piece's share of the area, with the pieces in its holes: the
    white modules of a QR code on a white card are the card's)."""
    import cv2

    if not mask.any():
        return 0, 0.0
    crop = mask[bbox_slices(mask, 1)]  # the same pieces, at the cost of the mask's box, not the whole image
    count, labels, stats, _ = cv2.connectedComponentsWithStats(crop.astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    if not areas.size:
        return 0, 0.0
    largest = labels == 1 + int(np.argmax(areas))
    return int(count - 1), float((filled(largest) & crop).sum() / max(areas.sum(), 1))


def hull_mask(mask: np.ndarray) -> np.ndarray:
    """Union of the convex hulls of the mask's connected parts."""
    import cv2

    if not mask.any():
        return mask.copy()
    # Inside the mask's box with a blank pixel round it (the same contours, shifted; each hull lies in its
    # contour's box): the cost of the box, not of the canvas, for each of many small shapes.
    box = bbox_slices(mask, 1)
    contours, _ = cv2.findContours(mask[box].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE,
                                   offset=(box[1].start, box[0].start))
    hull = np.zeros(mask.shape, bool)
    crop = np.zeros(mask[box].shape, np.uint8)
    for contour in contours:
        cv2.fillPoly(crop, [cv2.convexHull(contour) - (box[1].start, box[0].start)], 1)
    hull[box] = crop.astype(bool)
    return hull | mask


def disc(radius_px: int) -> np.ndarray:
    """A round structuring element reaching ``radius_px`` from its centre (side 2 · radius + 1), for cv2's
    dilate, erode and morphologyEx."""
    import cv2

    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius_px + 1,) * 2)


def open_mask(mask: np.ndarray, kernel_px: int) -> np.ndarray:
    """Morphological opening with a disc of ``kernel_px``, as uint8. A big disc on a big image is slow (seconds
    at 12 MP), so big openings run at reduced size; the result never reaches outside ``mask``."""
    import cv2

    factor = max(1, kernel_px // 25)
    if factor == 1:
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel_px, kernel_px))
        return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, disc)
    height_px, width_px = mask.shape
    size = (max(1, width_px // factor), max(1, height_px // factor))
    small = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0.5
    small_px = max(3, (kernel_px // factor) | 1)  # 25 px or more: still round
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (small_px, small_px))
    opened = cv2.morphologyEx(small.astype(np.uint8), cv2.MORPH_OPEN, disc)
    return cv2.resize(opened, (width_px, height_px), interpolation=cv2.INTER_NEAREST) & mask.astype(np.uint8)


def filled(mask: np.ndarray) -> np.ndarray:
    """The mask with the holes its outer contours enclose filled."""
    import cv2

    if not mask.any():
        return mask
    box = bbox_slices(mask, 1)
    crop = mask[box].astype(np.uint8)
    contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(crop, contours, -1, 1, thickness=cv2.FILLED)
    out = np.zeros(mask.shape, bool)
    out[box] = crop.astype(bool)
    return out


def is_long(mask: np.ndarray, length_px: float) -> bool:
    """Whether the mask spans at least ``length_px`` along x or y (a thin rule is small in area, not in size)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return rows.size > 0 and max(rows[-1] - rows[0], cols[-1] - cols[0]) >= length_px


def is_stroke(mask: np.ndarray, hull: np.ndarray) -> bool:
    """Thin everywhere (thickness under STROKE_THICKNESS of the hull's size) and hollow (half its hull or less).
    ``hull`` is the mask's ``hull_mask``."""
    if not mask.any():
        return False
    hull_area = float(np.count_nonzero(hull))
    return bool(thickness_px(mask) < STROKE_THICKNESS * np.sqrt(hull_area)
                and np.count_nonzero(mask) < 0.5 * hull_area)


def thickness_px(mask: np.ndarray) -> float:
    """Twice the largest distance from a mask pixel to the mask's outside: the width of its thickest stroke."""
    import cv2

    if not mask.any():
        return 0.0
    crop = mask[bbox_slices(mask, 1)].astype(np.uint8)
    return 2.0 * float(cv2.distanceTransform(crop, cv2.DIST_L2, 3).max())


def side_strips(mask: np.ndarray, rim_px: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The strips ``rim_px`` wide along the top, bottom, left and right sides of a mask."""
    return mask[:rim_px], mask[-rim_px:], mask[:, :rim_px], mask[:, -rim_px:]


def hull_area_px(mask: np.ndarray) -> float:
    """The area of the convex hull of the mask's pixels (0 for none). Taken from the outer contours' points: each
    pixel lies inside an outer contour, so theirs is the pixels' hull, at the cost of the outlines, not of the area
    (most of a canvas for a page's ground)."""
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return 0.0
    return float(cv2.contourArea(cv2.convexHull(np.concatenate(contours))))


def joint_hull(mask: np.ndarray) -> np.ndarray:
    """The one convex hull around all of the mask's pixels."""
    import cv2

    out = mask.copy()
    if not mask.any():
        return out
    # Inside the mask's box (the hull lies there; shifting integer points shifts the hull and its raster exactly).
    box = bbox_slices(mask, 1)
    crop = out[box]
    # The hull's corners are each row's first or last pixel: those points alone, in the order findNonZero lists
    # the pixels (row by row, left to right), give cv2.convexHull the same hull, point for point, without
    # sorting every pixel of a big shape.
    rows = np.flatnonzero(crop.any(axis=1))
    ink = crop[rows]
    first = ink.argmax(axis=1)
    last = ink.shape[1] - 1 - ink[:, ::-1].argmax(axis=1)
    points = np.stack([np.stack([first, rows], 1), np.stack([last, rows], 1)], 1).reshape(-1, 2)
    single = np.ones((len(rows), 2), bool)
    single[:, 1] = last != first  # (a row of one pixel lists it once)
    points = points[single.ravel()]
    hull = np.zeros(crop.shape, np.uint8)
    cv2.fillPoly(hull, [cv2.convexHull(points.astype(np.int32).reshape(-1, 1, 2))], 1)
    out[box] |= hull.astype(bool)
    return out


def bbox_slices(mask: np.ndarray, margin_px: int):
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask[rows[0]:rows[-1] + 1].any(axis=0))  # (the columns of the rows that have any)
    height_px, width_px = mask.shape
    return (slice(max(rows[0] - margin_px, 0), min(rows[-1] + margin_px + 1, height_px)),
            slice(max(cols[0] - margin_px, 0), min(cols[-1] + margin_px + 1, width_px)))


def union_box(a: tuple[slice, slice], b: tuple[slice, slice]) -> tuple[slice, slice]:
    """The smallest box (row and column slices, as from ``bbox_slices``) holding both boxes."""
    return (slice(min(a[0].start, b[0].start), max(a[0].stop, b[0].stop)),
            slice(min(a[1].start, b[1].start), max(a[1].stop, b[1].stop)))


def nearest_pixel(source: np.ndarray):
    """(a function from flat pixel indices, or ``slice(None)`` for all, to the flat indices of the nearest
    ``source`` pixels; each pixel's distance to it in px); ``source`` is not empty. Only the pixels asked about
    are looked up."""
    import cv2

    distance, label = cv2.distanceTransformWithLabels((~source).astype(np.uint8), cv2.DIST_L2, 5,
                                                      labelType=cv2.DIST_LABEL_PIXEL)
    positions = np.flatnonzero(source.ravel())
    labels = label.ravel()
    return (lambda at: positions[np.maximum(labels[at] - 1, 0)]), distance
