# SPDX-License-Identifier: GPL-3.0-or-later
"""Step 4, line art: the dark outlines of a drawing (a cartoon figure inked over flat colours) are one element,
above the colours they outline, instead of texture that makes the drawing look like a photograph."""

from __future__ import annotations

import numpy as np

from .cancel import checkpoint
from .elements import Element, ElementKind, owner_map, set_hull, set_mask
from .masks import disc, luminance
from .tuning import BAND_PX, DRAWING_INK, INK_CONTRAST, INK_DARK, INK_NETWORK, INK_SHARE, SAME_COLOR


def ink_pixels(rgb: np.ndarray) -> np.ndarray:
    """Dark strokes: pixels darker than INK_DARK (luminance) and darker than what lies around them (a black-hat
    of the luminance over about three soft-edge bands) by INK_CONTRAST; a big dark area is no stroke."""
    import cv2

    gray = luminance(rgb)
    kernel = disc(3 * BAND_PX // 2)
    contrast = cv2.morphologyEx(gray, cv2.MORPH_CLOSE, kernel) - gray
    return (gray < INK_DARK) & (contrast > INK_CONTRAST)


def find_line_art(rgb: np.ndarray, background: Element, elements: list[Element]) -> list[Element]:
    """The elements with the drawing's ink as one element of its own, when there is a drawing: on a flat ground,
    dark strokes (``ink_pixels``) whose largest connected piece covers INK_SHARE of the canvas and INK_NETWORK of
    all the strokes (one network of outlines; words and a photo's dark details are many small pieces), lying
    between the drawing's colours rather than on the ground (around the strokes, at least two elements and more
    element than ground). Text keeps its letters; a flat shape of the ink's colour that is mostly ink is the
    strokes' thick parts and joins them; the images (the drawing read as a photograph: strokes are texture) and
    shapes give up the ink. The line art's own mask is its hull (outlines, not a shape: its hull would claim all
    they enclose), and it lies above every element it touches (``order.inked_elements``), so the colours are
    completed under it inside their own hulls."""
    import cv2

    if not background.regions or not elements:
        return elements
    height_px, width_px = rgb.shape[:2]
    total = height_px * width_px
    checkpoint()
    ink = ink_pixels(rgb) & ~background.mask
    for element in elements:
        if element.kind is ElementKind.TEXT:
            ink &= ~element.mask
    # One network of strokes: the outlines of a drawing hang together (words and a photo's dark details are
    # many small pieces). Specks apart from it stay where they are.
    count, pieces, stats, _ = cv2.connectedComponentsWithStats(ink.astype(np.uint8), connectivity=8)
    if count < 2:
        return elements
    areas = stats[1:, cv2.CC_STAT_AREA]
    largest = int(areas.max())
    if largest < INK_SHARE * total or largest < INK_NETWORK * areas.sum():
        return elements
    keep = np.zeros(count, bool)
    keep[1:] = areas >= 0.02 * largest
    ink = keep[pieces]
    # Between the drawing's colours, not on the ground: what lies around the strokes.
    ring_kernel = disc(BAND_PX)
    ring = cv2.dilate(ink.astype(np.uint8), ring_kernel).astype(bool) & ~ink
    owners = owner_map(elements, rgb.shape)[ring]
    owned_px = int((owners > 0).sum())
    ground_px = int(background.mask[ring].sum())
    if owned_px < ground_px:
        return elements
    votes = np.bincount(owners, minlength=len(elements) + 1)[1:]
    if int((votes >= 0.05 * max(owned_px, 1)).sum()) < 2:
        return elements
    checkpoint()
    ink_rgb = np.median(rgb[ink], axis=0)
    kept = []
    for element in elements:
        if element.kind is ElementKind.TEXT:
            kept.append(element)
            continue
        overlap = element.mask & ink
        if element.kind is ElementKind.SHAPE and np.linalg.norm(element.color_rgb - ink_rgb) < SAME_COLOR and (
                overlap.sum() >= 0.5 * element.area):
            ink |= element.mask  # the thick parts of a stroke
            continue
        if overlap.any():
            set_mask(element, element.mask & ~ink)
            if element.area == 0:
                continue
        kept.append(element)
    background.mask &= ~ink
    line_art = Element(ElementKind.SHAPE, ink, ink_rgb, "Line art")
    set_hull(line_art)
    line_art.hull = line_art.mask  # outlines, not a shape: its hull would claim everything they enclose
    line_art.glyph_like = True
    line_art.outlines = True
    kept.append(line_art)
    return kept


def inked_drawing(rgb: np.ndarray, background: Element, elements: list[Element]) -> bool:
    """Whether the elements are the pieces of an inked drawing (a cartoon figure): flat shapes only (no words, no
    photographs) and dark strokes (``ink_pixels``, on them or in the soft-edge band round them: outlines are drawn
    along their edges) covering DRAWING_INK of their area or more. A designer keeps such a figure one layer, with
    perhaps a few small parts apart; a layout's flat shapes (panels, badges, icons) come with words, and a flat
    drawing with little ink (pixel art, a flat logo) has its colour pieces as parts. Not a drawing whose ink is
    line art already (``find_line_art``): a colourist's ink layer over flats, which stays a layer of its own."""
    if not elements or any(element.kind is not ElementKind.SHAPE or element.outlines for element in elements):
        return False
    import cv2

    checkpoint()
    figure = np.logical_or.reduce([element.mask for element in elements])
    area = int(np.count_nonzero(figure))
    kernel = disc(BAND_PX)
    # A photograph's dark details round a few shapes on it are not their ink.
    near = cv2.dilate(figure.astype(np.uint8), kernel).astype(bool) & ~background.mask
    return bool(np.count_nonzero(ink_pixels(rgb) & near) >= DRAWING_INK * area)
