# SPDX-License-Identifier: GPL-3.0-or-later
"""What the decomposer finds on the canvas: elements (kind, core mask, hull, colour) and their names."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from .masks import bbox_slices, count_pieces, hull_mask, is_stroke

COLOR_NAMES = {
    "Red": (220, 50, 50), "Orange": (245, 150, 60), "Yellow": (235, 205, 80), "Green": (60, 170, 80),
    "Teal": (40, 160, 150), "Mint": (140, 200, 190), "Blue": (50, 110, 200), "Navy": (30, 50, 90),
    "Purple": (110, 75, 150), "Pink": (235, 130, 170), "Brown": (130, 85, 50), "White": (250, 250, 250),
    "Grey": (128, 128, 128), "Black": (15, 15, 15),
}


def color_name(rgb) -> str:
    rgb = np.asarray(rgb, np.float64)
    return min(COLOR_NAMES, key=lambda name: float(np.sum((np.asarray(COLOR_NAMES[name]) - rgb) ** 2)))


class ElementKind(Enum):
    BACKGROUND = "background"
    SHAPE = "shape"  # flat colour (or a gradient), possibly translucent
    TEXT = "text"  # the letters of a word or phrase the text detector read
    IMAGE = "image"  # a photograph placed on the canvas, or a photo's subject


@dataclass(eq=False)  # identity, not field equality: elements are compared with `is` and held in lists
class Element:
    """One thing on the canvas: a set of regions (or a texture mask), its kind and name."""

    kind: ElementKind
    mask: np.ndarray  # bool H×W, the pixels that certainly belong to it (its core)
    color_rgb: np.ndarray
    text: str = ""  # what a text element reads ("Subject" for a photo's subject)
    hull: np.ndarray = field(init=False)  # bool H×W, union of its regions' convex hulls (occlusion, completion)
    area: int = field(init=False)
    level: int = 0
    pieces: int = 1
    glyph_like: bool = False
    opacity: float = 1.0  # < 1: a translucent flat shape (its colour is color_rgb, its alpha this)
    regions: list[int] = field(default_factory=list)  # background only: its flat regions ([] = a photo's texture)
    host: Element | None = None  # marks drawn on a shape: that shape (they fold back into it first)
    parts: list[Element] = field(default_factory=list)  # a phrase: the two texts it joined (split back on demand)
    outlines: bool = False  # a drawing's line art: above every element it touches
    # Pixels under a translucent sheet where the element goes on (un-veiled, they show its colour): its hull
    # and pieces count them, so it is completed under the sheet, one shape, and the sheet lies above it.
    veiled: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.color_rgb = np.asarray(self.color_rgb, np.float64)
        self.hull = self.mask
        self.area = int(np.count_nonzero(self.mask))  # (a bool sum costs 40 times more)

    @property
    def name(self) -> str:
        if self.kind is ElementKind.BACKGROUND:
            return "Background"
        if self.kind is ElementKind.TEXT:
            return f"Text '{self.text}'" if self.text else "Text"
        if self.kind is ElementKind.IMAGE:
            return self.text or "Image"
        if self.text:
            return self.text  # a shape named for what it is ("Line art")
        if self.opacity < 1.0:
            return f"Translucent {color_name(self.color_rgb).lower()} shape ({self.opacity:.0%})"
        return f"{color_name(self.color_rgb)} shape" + ("s" if self.glyph_like else "")


def set_hull(element: Element) -> None:
    """The element's pieces, whether it looks like glyphs, and the hull its occlusion and completion use."""
    # Glyphs are not convex: their hulls would claim their own counters (and whatever shows through them)
    # as occluded parts. Text and many-piece elements (words the detector missed) keep their own mask.
    # (A shape cut up by letters above it has one dominant piece; a word has many similar ones.)
    outline = element.mask if element.veiled is None else element.mask | element.veiled
    element.pieces, largest_share = count_pieces(outline)
    glyph_like = element.kind is ElementKind.TEXT or (element.pieces >= 3 and largest_share < 0.6)
    element.glyph_like = glyph_like
    # Rings, outlines and arcs are thin all along: their hull would claim the whole inside (and everything
    # drawn there) as occluded parts of them, and completion would fill it in. They keep their own mask too.
    if glyph_like:
        element.hull = element.mask
    else:
        hull = hull_mask(outline)
        element.hull = element.mask if is_stroke(outline, hull) else hull


def veiled_part(veiled: np.ndarray | None, piece: np.ndarray) -> np.ndarray | None:
    """Of a shape's pixels under a translucent sheet, those that join this piece of it (None: none do)."""
    import cv2

    if veiled is None:
        return None
    joined = veiled | piece
    box = bbox_slices(joined, 1)
    _, labels = cv2.connectedComponents(joined[box].astype(np.uint8), connectivity=8)
    touching = np.unique(labels[piece[box]])
    part = np.zeros(veiled.shape, bool)
    part[box] = veiled[box] & np.isin(labels, touching[touching > 0])
    return part if part.any() else None


def set_mask(element: Element, mask: np.ndarray) -> None:
    """Give the element a new mask (grown or cut back): its area and, unless it is empty, its hull follow."""
    element.mask = mask
    element.area = int(np.count_nonzero(mask))
    if element.area:
        set_hull(element)


def owner_map(elements: list[Element], shape: tuple[int, ...]) -> np.ndarray:
    """Each pixel's element as its 1-based index in ``elements`` (0: none); element masks are disjoint."""
    owner = np.zeros(shape[:2], np.int32)
    for index, element in enumerate(elements, start=1):
        rows = row_span(element.mask)
        owner[rows][element.mask[rows]] = index
    return owner


def covered(elements: list[Element], shape: tuple[int, ...]) -> np.ndarray:
    """The pixels some element holds."""
    taken = np.zeros(shape[:2], bool)
    for element in elements:
        taken |= element.mask
    return taken


def row_span(mask: np.ndarray) -> slice:
    """The rows from the mask's first pixel to its last (empty for none): a word's masked writes and counts cost
    its line, not the page."""
    rows = np.flatnonzero(mask.any(axis=1))
    return slice(rows[0], rows[-1] + 1) if rows.size else slice(0, 0)
