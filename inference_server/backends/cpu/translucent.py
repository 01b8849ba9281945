# SPDX-License-Identifier: GPL-3.0-or-later
"""Step 4, translucent sheets: two flat elements that are one translucent shape over two things."""

from __future__ import annotations

from typing import cast

import numpy as np

from .cancel import checkpoint
from .elements import Element, ElementKind
from .masks import bbox_slices, hull_mask


def find_translucent(rgb: np.ndarray, background: Element, elements: list[Element]) -> list[Element]:
    """Merge pairs of flat elements that are one translucent shape seen over two different things.

    A sheet of colour F at opacity a shows c1 = a·F + (1 − a)·u1 over u1 and c2 = a·F + (1 − a)·u2 over u2,
    so c1 − c2 = (1 − a)·(u1 − u2): the two visible colours differ along the line between what is under them,
    by a ratio in (0, 1). Two unrelated opaque shapes almost never line up like that.
    """
    import cv2

    shapes = [e for e in elements if e.kind is ElementKind.SHAPE and not e.glyph_like]
    if len(shapes) < 2:
        return elements
    owner = np.zeros(background.mask.shape, np.int32)
    owner[background.mask] = 1
    for index, element in enumerate(elements, start=2):
        owner[element.mask] = index
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
    neighbours: dict[int, dict[int, np.ndarray]] = {}  # element id → {owner label: mean colour next to it}
    for element in shapes:
        checkpoint()
        box = bbox_slices(element.mask, 6)
        ring = cv2.dilate(element.mask[box].astype(np.uint8), kernel).astype(bool) & ~element.mask[box]
        labels_in_ring = owner[box][ring]
        colours = rgb[box][ring]
        counts = np.bincount(labels_in_ring, minlength=len(elements) + 2)
        found = {}
        for label in np.flatnonzero(counts[1:] >= max(8, 0.05 * ring.sum())) + 1:
            found[int(label)] = colours[labels_in_ring == label].mean(axis=0)
        neighbours[id(element)] = found
    label_of = {id(e): index for index, e in enumerate(elements, start=2)}
    merged: set[int] = set()
    result = list(elements)
    for first in shapes:
        for second in shapes:
            if first is second or id(first) in merged or id(second) in merged:
                continue
            if label_of[id(second)] not in neighbours[id(first)]:
                continue
            best = None
            for under_1, u1 in neighbours[id(first)].items():
                for under_2, u2 in neighbours[id(second)].items():
                    if under_1 == under_2 or under_1 == label_of[id(second)] or under_2 == label_of[id(first)]:
                        continue
                    du = u1 - u2
                    dc = first.color_rgb - second.color_rgb
                    norm_u, norm_c = np.linalg.norm(du), np.linalg.norm(dc)
                    if norm_u < 40.0 or norm_c < 8.0:
                        continue
                    ratio = float(dc @ du) / norm_u ** 2
                    cosine = float(dc @ du) / (norm_u * norm_c)
                    if cosine < 0.985 or not 0.1 < ratio < 0.9:
                        continue
                    opacity = 1.0 - ratio
                    color_1 = (first.color_rgb - ratio * u1) / opacity
                    color_2 = (second.color_rgb - ratio * u2) / opacity
                    if np.linalg.norm(color_1 - color_2) > 20.0 or not (-12 < color_1).all() or (color_1 > 267).any():
                        continue
                    if best is None or cosine > best[0]:
                        best = (cosine, opacity, np.clip((color_1 + color_2) / 2, 0, 255))
            if best is None:
                continue
            _, opacity, color = best
            sheet = Element(ElementKind.SHAPE, first.mask | second.mask, color)
            sheet.opacity = cast(float, opacity)  # a numpy float64: its alpha math stays in float64
            closing = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
            closed = cv2.morphologyEx(sheet.mask.astype(np.uint8), cv2.MORPH_CLOSE, closing).astype(bool)
            sheet.hull = hull_mask(closed)
            sheet.pieces = 1
            result = [e for e in result if e is not first and e is not second] + [sheet]
            merged.update({id(first), id(second)})
    return result
