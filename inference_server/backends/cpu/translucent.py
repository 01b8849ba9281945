# SPDX-License-Identifier: GPL-3.0-or-later
"""Step 4, translucent sheets: two flat elements that are one translucent shape over two things."""

from __future__ import annotations

from typing import cast

import numpy as np

from .cancel import checkpoint
from .elements import Element, ElementKind, set_hull, veiled_part
from .masks import bbox_slices, disc, hull_mask
from .regions import channel_max
from .tuning import BAND_PX, VEIL_MATCH


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
    kernel = disc(4)
    neighbours: dict[int, dict[int, np.ndarray]] = {}  # element id → {owner label: mean colour next to it}
    for element in shapes:
        checkpoint()
        box = bbox_slices(element.mask, 6)
        ring = cv2.dilate(element.mask[box].astype(np.uint8), kernel).astype(bool) & ~element.mask[box]
        labels_in_ring = owner[box][ring]
        colours = rgb[box][ring]
        counts = np.bincount(labels_in_ring, minlength=len(elements) + 2)
        found = {}
        # The ring's own pixels mostly fall on the anti-aliased seam that nothing owns: what lies next to the
        # element is the owners met beyond it, each a twentieth of them at least (a plane half under water meets
        # the plane along the waterline only).
        owned_px = int(counts[1:].sum())
        for label in np.flatnonzero(counts[1:] >= max(8, 0.05 * owned_px)) + 1:
            found[int(label)] = colours[labels_in_ring == label].mean(axis=0)
        neighbours[id(element)] = found
    label_of = {id(e): index for index, e in enumerate(elements, start=2)}
    merged: set[int] = set()
    result = list(elements)
    sheets: list[Element] = []
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
            # A band across a page, a card and a photo's frame is seen over more than two things: with its colour
            # and opacity known, each further piece next to it is the sheet over one of that piece's neighbours.
            pieces = [first, second]
            seen = opacity * color
            grown = True
            while grown:
                grown = False
                for other in shapes:
                    if id(other) in merged or any(other is piece for piece in pieces):
                        continue
                    sheet_labels = {label_of[id(piece)] for piece in pieces}
                    if not sheet_labels & set(neighbours[id(other)]):
                        continue
                    if any(label not in sheet_labels and np.linalg.norm(other.color_rgb - u) >= 8.0
                           and np.abs(other.color_rgb - (seen + (1.0 - opacity) * u)).max() < VEIL_MATCH
                           for label, u in neighbours[id(other)].items()):
                        pieces.append(other)
                        grown = True
            sheet = Element(ElementKind.SHAPE, np.logical_or.reduce([piece.mask for piece in pieces]), color)
            sheet.opacity = cast(float, opacity)  # a numpy float64: its alpha math stays in float64
            sheet.hull = hull_mask(sheet_mask(sheet))
            sheet.pieces = 1
            result = [e for e in result if not any(e is piece for piece in pieces)] + [sheet]
            sheets.append(sheet)
            merged.update(id(piece) for piece in pieces)
    for sheet in sheets:
        veil_under(rgb, sheet, [e for e in result if e.kind is ElementKind.SHAPE and e.opacity >= 1.0])
    return result


def veil_under(rgb: np.ndarray, sheet: Element, shapes: list[Element]) -> None:
    """Mark where flat shapes next to a translucent sheet go on under it (``Element.veiled``): the sheet's pixels
    that show the sheet over the shape's colour, a·F + (1 − a)·X, joined to the shape across the seam between
    them (a card with a band across it is one card; a plane half under water is one plane)."""
    import cv2

    band = disc(BAND_PX)
    box = bbox_slices(sheet.hull, 2 * BAND_PX + 2)
    footprint = cv2.dilate(sheet_mask(sheet)[box].astype(np.uint8), band).astype(bool)
    crop_rgb = rgb[box]
    for shape in shapes:
        checkpoint()
        near = cv2.dilate(shape.mask[box].astype(np.uint8), band).astype(bool)
        if not (near & footprint).any():
            continue
        seen = sheet.opacity * sheet.color_rgb + (1.0 - sheet.opacity) * shape.color_rgb
        match = footprint & (channel_max(np.abs(crop_rgb - seen)) < VEIL_MATCH)
        if match.sum() < 0.05 * shape.area:
            continue
        # The seam between the shape and its veiled part (anti-aliased, neither colour) bridged by a closing.
        joined = cv2.morphologyEx((match | shape.mask[box]).astype(np.uint8), cv2.MORPH_CLOSE, band).astype(bool)
        candidates = np.zeros(shape.mask.shape, bool)
        candidates[box] = joined & footprint & ~shape.mask[box]
        veiled = veiled_part(candidates, shape.mask)
        if veiled is None or veiled.sum() < 0.05 * shape.area:
            continue  # a few pixels of its soft edge that happen to match
        shape.veiled = veiled
        set_hull(shape)


def sheet_mask(sheet: Element) -> np.ndarray:
    """The sheet's pixels with the seams between its pieces closed (as peel closes them)."""
    import cv2

    closing = disc(3)
    return cv2.morphologyEx(sheet.mask.astype(np.uint8), cv2.MORPH_CLOSE, closing).astype(bool)


def veiled_pairs(elements: list[Element]) -> list[tuple[int, int]]:
    """(shape, sheet) index pairs: a translucent sheet lies above the shapes that go on under it."""
    found = []
    for i, shape in enumerate(elements):
        if shape.veiled is None:
            continue
        for j, sheet in enumerate(elements):
            if sheet.opacity < 1.0 and (sheet.mask & shape.veiled).any():
                found.append((i, j))
    return found
