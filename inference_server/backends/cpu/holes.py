# SPDX-License-Identifier: GPL-3.0-or-later
"""Step 4, what fills a shape's holes: pieces of another element that lie in a solid shape's hole and fill it (a
glyph on an icon's disc, the buttons drawn on a gamepad) are marks on that shape, not parts of a same-coloured
element under it that the shape would have to leave glyph-shaped holes for."""

from __future__ import annotations

import numpy as np

from .cancel import checkpoint
from .elements import Element, ElementKind, owner_map, set_mask
from .masks import bbox_slices, disc, filled, hull_area_px, luminance, thickness_px
from .tuning import (
    BAND_PX,
    HOLE_MARKS_SHARE,
    INK_CONTRAST,
    INK_DARK,
    MIN_REGION_FRACTION,
    OUTLINE_THICKNESS,
    OUTLINED_SHARE,
    SAME_COLOR,
    SOLID_HOST,
)


def lift_hole_marks(rgb: np.ndarray, background: Element, elements: list[Element]) -> bool:
    """Whether anything moved. In the elements (back to front, changed in place), what fills a solid shape's
    holes is made part of that shape (one element: an icon's disc with its glyph), cut out of an element under
    the shape that it was grouped with by colour (the panel in the same ink) or, where no element took it (small
    glyphs, all soft edge), out of the background layer.

    A designer draws the solid shape whole (a disc, a badge, a button) and the glyph on it; the simpler story
    is the one whose lower layer, with its holes filled, is a solid shape. A hole qualifies when the pieces
    lying wholly inside it (of other elements that lie mostly elsewhere, or pixels no element owns that stand
    out from the shape's colour) fill HOLE_MARKS_SHARE of it and more of it than the ground does; the rest of a
    hole is the soft edge no element owns. A window showing the ground behind, or a pattern cut by the window's
    edge, does not qualify. Words go to the front anyway, and a drawing's outlines stay one element."""
    import cv2
    from scipy import ndimage

    height_px, width_px = background.mask.shape
    min_mark_px = max(4, round(MIN_REGION_FRACTION * height_px * width_px))
    owner = owner_map(elements, background.mask.shape)
    # (host index, element cut: its index, or −1 for pixels no element owns) → the mark's pixels
    marks: dict[tuple[int, int], np.ndarray] = {}
    for s, shape in enumerate(elements):
        if shape.kind is not ElementKind.SHAPE or shape.opacity < 1.0 or shape.outlines:
            continue
        checkpoint()
        box = bbox_slices(shape.mask, 1)
        mask = shape.mask[box]
        holes = filled(mask) & ~mask
        if not holes.any():
            continue
        count, hole_labels = cv2.connectedComponents(holes.astype(np.uint8), connectivity=4)
        hole_labels = solid_holes(mask, hole_labels, count)
        holes = hole_labels > 0
        if not holes.any():
            continue
        owners = owner[box]
        ground = background.mask[box]
        # Pixels no element owns that stand out from the shape: more than halfway from its colour to the
        # farthest colour in the hole (the rest is the soft edge between them).
        distance = np.linalg.norm(rgb[box] - shape.color_rgb.astype(np.float32), axis=2)
        loose = holes & (owners == 0) & ~ground & (distance > SAME_COLOR)
        if loose.any():
            # Each hole's farthest colour in one pass over the box (not a pass per hole: a panel has a hole per
            # word on it). Halving a float32 is exact, so the comparison is the one made hole by hole.
            farthest = np.asarray(ndimage.maximum(distance, hole_labels, np.arange(count)), np.float64)
            loose &= distance > (0.5 * farthest).astype(np.float32)[hole_labels]
        owner_boxes = ndimage.find_objects(owners)  # each element's pixels in the box lie in its box here
        found = []  # (element index or −1, hole, (rows, cols) within the box, the piece's pixels there)
        for o in np.unique(owners[holes]):
            # Only ink that lies under the shape (earlier in the back-to-front order: the panel under a disc)
            # leaves holes in it; what lies over it shows through nothing.
            if o and (o - 1 >= s or elements[o - 1].kind is not ElementKind.SHAPE or elements[o - 1].outlines
                      or elements[o - 1].opacity < 1.0):
                continue
            # The pieces of o, found inside the box its pixels span (the same pieces, at the cost of that box).
            sub = (slice(None), slice(None)) if o == 0 else owner_boxes[o - 1]
            ink_sub = loose[sub] if o == 0 else owners[sub] == o
            holes_sub, labels_sub = holes[sub], hole_labels[sub]
            pieces_count, pieces = cv2.connectedComponents(ink_sub.astype(np.uint8), connectivity=8)
            # Wholly in one hole: all of the piece's pixels lie in holes, and its hole labels do not vary.
            areas = np.bincount(pieces.ravel(), minlength=pieces_count)
            in_holes = np.bincount(pieces[holes_sub], minlength=pieces_count)
            labels = labels_sub[holes_sub].astype(np.float64)
            mean = np.bincount(pieces[holes_sub], labels, minlength=pieces_count) / np.maximum(in_holes, 1)
            square = np.bincount(pieces[holes_sub], labels * labels, minlength=pieces_count) / np.maximum(in_holes, 1)
            whole = (in_holes == areas) & (areas >= min_mark_px) & (square - mean * mean < 1e-6)
            whole[0] = False
            for piece in np.flatnonzero(whole):
                found.append((int(o) - 1, round(float(mean[piece])), sub, pieces == piece))
        # The holes the marks fill: a good share of mark, and more mark than ground.
        if found:
            hole_px = np.bincount(hole_labels.ravel(), minlength=count)
            ground_px = np.bincount(hole_labels[ground], minlength=count)
        for hole in {h for _, h, _, _ in found}:
            marks_px = sum(int(at.sum()) for _, h, _, at in found if h == hole)
            if marks_px < HOLE_MARKS_SHARE * float(hole_px[hole]) or marks_px <= int(ground_px[hole]):
                continue
            for o, h, sub, at in found:
                if h == hole:
                    pixels = marks.setdefault((s, o), np.zeros((height_px, width_px), bool))
                    pixels[box][sub] |= at
    moved = False
    # The marks join the shape itself (one layer: an icon with its glyph, a gamepad with its buttons), so the
    # shape's layer is whole under them and no budget separates them.
    for (s, o), pixels in marks.items():
        if o >= 0:
            other = elements[o]
            if np.count_nonzero(other.mask & ~pixels) < np.count_nonzero(pixels):
                # Mostly in the shape's holes (a chip and a number on a card): things placed on the shape, which
                # the order puts above it already; only ink that lies mostly elsewhere (the panel) gives up marks.
                continue
            set_mask(other, other.mask & ~pixels)
        else:
            background.mask &= ~pixels
        set_mask(elements[s], elements[s].mask | pixels)
        moved = True
    elements[:] = [e for e in elements if e.area > 0]
    return moved


def solid_holes(mask: np.ndarray, hole_labels: np.ndarray, count: int) -> np.ndarray:
    """The hole labels with only the holes of solid pieces of the mask kept (0 elsewhere): pieces that fill
    SOLID_HOST of their convex hull, holes and all (a disc, a badge, a button with a glyph cut out of it). The
    counters of letters are holes of thin, hollow pieces: what shows through them lies under the letters."""
    import cv2

    pieces_count, pieces, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    # Each hole's piece: the piece its one-pixel rim lies on (a hole's labels grown by a pixel, over the mask).
    grown = cv2.dilate(np.minimum(hole_labels, 65535).astype(np.uint16), np.ones((3, 3), np.uint8))
    rim = (grown > 0) & mask
    enclosing = np.zeros(count, np.int64)
    pairs = np.unique(np.stack([grown[rim].astype(np.int64), pieces[rim].astype(np.int64)]), axis=1)
    for hole, piece in pairs.T:
        enclosing[hole] = piece
    solid = np.zeros(pieces_count, bool)
    for piece in np.unique(enclosing[1:]):
        if piece == 0:
            continue
        x, y, w, h, area = stats[piece]
        solid[piece] = area >= SOLID_HOST * max(hull_area_px(pieces[y:y + h, x:x + w] == piece), 1.0)
    keep = solid[enclosing]
    keep[0] = False
    return np.where(keep[hole_labels], hole_labels, 0)


def join_outlines(rgb: np.ndarray, elements: list[Element]) -> list[Element]:
    """The elements, with each fill drawn inside a dark outline joined to the outline's pieces around it: one
    element (a cartoon's character, outlined lettering), not a layer of outlines and a layer of fills over it.

    An outline is a dark shape (luminance under INK_DARK) whose filled outline (its gaps closed by the soft-edge
    band) holds OUTLINED_SHARE of a lighter element (by INK_CONTRAST), whose holes that element fills
    (HOLE_MARKS_SHARE of them at least; the rest is the soft edge), and whose pieces touching that element are
    thinner than it (OUTLINE_THICKNESS) and smaller. Those pieces go with the fill; its other pieces (other figures'
    outlines) stay. A drawing's line art found as such (``Element.outlines``) stays one layer
    above every colour it touches."""
    import cv2

    result = list(elements)
    for outline in elements:
        if (outline.kind is not ElementKind.SHAPE or outline.outlines or outline.opacity < 1.0
                or float(luminance(outline.color_rgb)) >= INK_DARK or outline not in result):
            continue
        checkpoint()
        box = bbox_slices(outline.mask, BAND_PX + 1)
        mask = outline.mask[box]
        # Thin outlines' cores break where the stroke is all soft edge: closed by the soft-edge band first.
        closed = cv2.dilate(mask.astype(np.uint8), disc(BAND_PX)).astype(bool)
        within = filled(closed)
        holes = within & ~closed
        if not holes.any():
            continue
        count, hole_labels = cv2.connectedComponents(holes.astype(np.uint8), connectivity=4)
        hole_px = np.bincount(hole_labels.ravel(), minlength=count)
        _, pieces = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        for fill in [e for e in result if e is not outline and e.kind in (ElementKind.SHAPE, ElementKind.TEXT)
                     and e.opacity >= 1.0 and not e.outlines
                     and float(luminance(e.color_rgb)) >= float(luminance(outline.color_rgb)) + INK_CONTRAST]:
            if (fill.mask[box] & within).sum() < OUTLINED_SHARE * fill.area:
                continue
            inside = fill.mask[box] & holes
            fill_px = np.bincount(hole_labels[inside], minlength=count)
            used = np.flatnonzero(fill_px[1:]) + 1
            if fill_px[used].sum() < HOLE_MARKS_SHARE * hole_px[used].sum():
                continue
            # The outline's pieces around the fill: those it touches across the soft-edge band.
            near = cv2.dilate(fill.mask[box].astype(np.uint8), disc(BAND_PX + 1)).astype(bool) & mask
            joined = np.isin(pieces, np.unique(pieces[near])) & (pieces > 0)
            # An outline is thin beside what it outlines, and smaller (a panel around white discs is no outline).
            if (joined.sum() >= fill.area
                    or thickness_px(joined) >= OUTLINE_THICKNESS * thickness_px(fill.mask[box])):
                continue
            pixels = np.zeros(outline.mask.shape, bool)
            pixels[box] = joined
            set_mask(outline, outline.mask & ~pixels)
            set_mask(fill, fill.mask | pixels)
            if outline.area == 0:
                result.remove(outline)
                break
            mask = outline.mask[box]
            _, pieces = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return result

