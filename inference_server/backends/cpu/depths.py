# SPDX-License-Identifier: GPL-3.0-or-later
"""Step 4, depth and phrases: same-coloured pieces at different depths split, words joined to phrases."""

from __future__ import annotations

import logging

import numpy as np

from .cancel import checkpoint
from .elements import Element, ElementKind, set_hull, set_mask, veiled_part
from .masks import bbox_slices, disc, filled, hull_mask, is_long, is_stroke, joint_hull, thickness_px, union_box
from .tuning import (
    BACKGROUND_GAP,
    LONG_ELEMENT,
    MIN_ELEMENT_FRACTION,
    MIN_IMAGE_FRACTION,
    OCCLUDER_INSIDE,
    PIECE_GAP,
    SAME_COLOR,
    SOLID_PIECES,
    STROKE_SOLID,
)

logger = logging.getLogger(__name__)


def split_depths(background: Element, elements: list[Element]) -> list[Element]:
    """Split a flat element whose same-coloured pieces lie at different depths into one element per depth.

    Regions are grouped by colour, so two red shapes with a blue one between them (one under it, one over it)
    arrive as one element, and one layer would hold both. Pieces stay together when they can be one shape seen
    around an occluder: no other element is above one piece and below the other, and little of the gap their
    joint hull spans (beyond their own hulls) is background (the rest is other elements and their soft edges).
    Glyph-like elements (a word's letters) are split by the depth test only.
    """
    if len(elements) < 2:
        return elements
    import cv2

    size = elements[0].mask.size
    tolerance = max(4.0, 1e-5 * size)  # as in order_elements: a few pixels of hull overlap are anti-aliasing
    result: list[Element] = []
    for element in elements:
        checkpoint()
        if element.kind is not ElementKind.SHAPE or element.opacity < 1.0 or element.pieces < 2:
            result.append(element)
            continue
        count, labels, stats, _ = cv2.connectedComponentsWithStats(element.mask.astype(np.uint8), connectivity=8)
        big = [k for k in range(1, count) if stats[k, cv2.CC_STAT_AREA] >= MIN_ELEMENT_FRACTION * size]
        if len(big) < 2:
            result.append(element)
            continue
        others = [e for e in elements if e is not element]
        pieces: list[np.ndarray] = []
        hulls: list[np.ndarray] = []
        for k in sorted(big, key=lambda k: -stats[k, cv2.CC_STAT_AREA]):
            left, top, width, height = stats[k, :4]
            at = (slice(top, top + height), slice(left, left + width))  # the piece's box: overlaps are counted there
            piece = np.zeros(labels.shape, bool)
            piece[at] = labels[at] == k
            # A piece inside a bigger one's hull (the white between a bicycle's spokes on a white disc) is
            # part of it: it is never joined to, or split from, anything on its own.
            host = next((h for h, hull in enumerate(hulls)
                         if np.count_nonzero(piece[at] & hull[at]) > 0.5 * stats[k, cv2.CC_STAT_AREA]), None)
            if host is None:
                pieces.append(piece)
                hulls.append(hull_mask(piece))
            else:
                pieces[host] |= piece
        if len(pieces) < 2:
            result.append(element)
            continue
        # Many pieces read as letters (a word the detector missed) only when they are not solid: a white disc
        # and white icebergs are shapes, whatever their number.
        solid_px = sum(float(np.count_nonzero(filled(piece))) for piece in pieces)
        letters = element.glyph_like and solid_px < SOLID_PIECES * sum(float(np.count_nonzero(hull)) for hull in hulls)
        # relation[i][o]: +1 element o is above piece i, −1 piece i is above o, 0 they do not overlap.
        # The overlaps are counted inside each piece's hull box (a piece lies in its hull): the same sums, at
        # the cost of the box instead of the canvas (tens of pieces × tens of elements on a busy poster).
        boxes = [bbox_slices(hull, 0) for hull in hulls]
        relation = []
        for piece, hull, box in zip(pieces, hulls, boxes, strict=False):
            row = []
            for other in others:
                other_in_piece = float(np.count_nonzero(hull[box] & other.mask[box]))
                piece_in_other = float(np.count_nonzero(other.hull[box] & piece[box]))
                row.append(1 if other_in_piece - piece_in_other > tolerance
                           else -1 if piece_in_other - other_in_piece > tolerance else 0)
            relation.append(row)
        parent = list(range(len(pieces)))

        def root(i: int, parent: list[int] = parent) -> int:
            while parent[i] != i:
                i = parent[i]
            return i

        # Candidate joins, least background in the gap first; a join must keep the whole group consistent
        # (pieces joined through a third one must not lie on both sides of some element either).
        joins = []
        for i in range(len(pieces)):
            for j in range(i + 1, len(pieces)):
                checkpoint()
                box = union_box(boxes[i], boxes[j])  # where the joint hull lies
                gap = joint_hull(pieces[i][box] | pieces[j][box]) & ~hulls[i][box] & ~hulls[j][box]
                gap_px = float(np.count_nonzero(gap))
                share = float(np.count_nonzero(gap & background.mask[box])) / gap_px if gap_px > tolerance else 0.0
                # Background between them: two shapes, not one cut apart. (Glyph-like elements, letters of a
                # word the detector missed, have background between every letter: only depth splits them.)
                if share <= BACKGROUND_GAP or letters:
                    joins.append((share, i, j))
        group_relation = {i: np.asarray(relation[i]) for i in range(len(pieces))}
        for _, i, j in sorted(joins):
            ri, rj = root(i), root(j)
            if ri == rj or (group_relation[ri] * group_relation[rj] < 0).any():
                continue  # something lies between them in depth
            parent[rj] = ri
            group_relation[ri] = np.where(group_relation[ri] != 0, group_relation[ri], group_relation[rj])
        roots = sorted({root(i) for i in range(len(pieces))})
        if len(roots) == 1:
            result.append(element)
            continue
        # Crumbs too small to be pieces of their own go with the biggest piece.
        masks = {r: np.zeros(element.mask.shape, bool) for r in roots}
        for i, piece in enumerate(pieces):
            masks[root(i)] |= piece
        biggest = max(roots, key=lambda r: np.count_nonzero(masks[r]))
        masks[biggest] |= element.mask & ~np.logical_or.reduce([masks[r] for r in roots])
        for r in roots:
            part = Element(ElementKind.SHAPE, masks[r], element.color_rgb)
            part.veiled = veiled_part(element.veiled, masks[r])
            set_hull(part)
            result.append(part)
    return result


def merge_phrases(elements: list[Element]) -> list[Element]:
    """Words of one colour next to each other are one text element (a phrase), as a designer would set it.

    The detector boxes words and lines, not phrases: a line it split in two (a rotated line, a line crossing
    another text) would otherwise come back as one layer per word, and a word it missed (crossed by another
    text) as glyph-like shapes of the same colour next to it.
    """

    def wordlike(element: Element) -> bool:
        return element.kind is ElementKind.TEXT or (element.kind is ElementKind.SHAPE and element.glyph_like)

    texts = [e for e in elements if wordlike(e)]
    if len(texts) < 2 or not any(e.kind is ElementKind.TEXT for e in texts):
        return elements
    boxes = {}
    for element in texts:
        rows, cols = bbox_slices(element.mask, 0)
        boxes[id(element)] = (cols.start, rows.start, cols.stop, rows.stop)
    merged = list(elements)
    changed = True
    while changed:
        changed = False
        texts = [e for e in merged if wordlike(e)]
        for first in texts:
            for second in texts:
                if first is second or ElementKind.TEXT not in (first.kind, second.kind):
                    continue
                if np.linalg.norm(first.color_rgb - second.color_rgb) >= SAME_COLOR:
                    continue
                a, b = boxes[id(first)], boxes[id(second)]
                reach_px = 0.6 * min(a[3] - a[1], b[3] - b[1])  # about a word space at that size
                if (a[0] - reach_px > b[2] or b[0] - reach_px > a[2]
                        or a[1] - reach_px > b[3] or b[1] - reach_px > a[3]):
                    continue
                left, right = (first, second) if a[0] <= b[0] else (second, first)
                phrase = Element(ElementKind.TEXT, first.mask | second.mask,
                                  (first.color_rgb * first.area + second.color_rgb * second.area)
                                  / max(first.area + second.area, 1),
                                  " ".join(t for t in (left.text, right.text) if t))
                set_hull(phrase)
                phrase.parts = [first, second]
                boxes[id(phrase)] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                merged = [e for e in merged if e is not first and e is not second] + [phrase]
                changed = True
                break
            if changed:
                break
    return merged


def split_phrases(elements: list[Element], wanted: int) -> list[Element]:
    """Phrases back into the words they joined, biggest phrase first, while there are fewer than ``wanted``
    elements: a user who asks for more layers than the image has elements gets its words one a layer (a word
    cloud, a menu) rather than fewer layers than asked."""
    elements = list(elements)
    split = False
    while len(elements) < wanted:
        phrases = [e for e in elements if e.parts]
        if not phrases:
            break
        phrase = max(phrases, key=lambda e: e.area)
        elements = [e for e in elements if e is not phrase] + phrase.parts
        split = True
    if split:
        # Word boxes can overlap (a tight word cloud), and so can the letters read in them: each pixel goes to
        # one word, or the two layers would both hold it.
        taken = np.zeros(elements[0].mask.shape, bool)
        for element in elements:
            if element.kind is not ElementKind.TEXT:
                continue
            if (element.mask & taken).any():
                set_mask(element, element.mask & ~taken)
            taken |= element.mask
        elements = [e for e in elements if e.area > 0]
    return elements


def split_pieces(elements: list[Element], wanted: int) -> list[Element]:
    """Shapes and images made of separate pieces (a row of same-coloured tabs, two cut-outs) split into one element
    per piece, the element with the biggest second piece first, while there are fewer than ``wanted`` elements:
    a user who asks for more layers than the image has elements gets its parts rather than fewer layers. Words
    the detector missed (glyph-like shapes whose pieces are not solid, as letters are not) stay whole, and so do
    pieces a thin gap apart (one shape cut by a rule or a line over it)."""
    import cv2

    if len(elements) >= wanted or not elements:
        return elements
    elements = list(elements)
    size = elements[0].mask.size
    gap_px = max(3, round(PIECE_GAP * max(elements[0].mask.shape)))
    bridge = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (gap_px + 1, gap_px + 1))
    pieces_of: dict[int, list[np.ndarray]] = {}
    for element in elements:
        if element.opacity < 1.0 or element.kind not in (ElementKind.SHAPE, ElementKind.IMAGE):
            continue
        checkpoint()
        # Pieces closer than the gap are one piece here: the dilated mask's components, cut back to the mask;
        # so are pieces joined where the shape goes on under a translucent sheet (a card with a band across it).
        outline = element.mask if element.veiled is None else element.mask | element.veiled
        box, count, labels, stats = pieces_apart(outline, gap_px, bridge)
        if count > 2:
            # Pieces cut apart by something lying over the shape (a square set on a banner, a photo on a frame) are
            # one shape going on under it: what lies inside the shape's convex hull joins them. (Not a panel that
            # buttons sit on: it reaches out past their hull.)
            hull = joint_hull(element.mask)
            over = [other.mask for other in elements
                    if other is not element and np.count_nonzero(other.mask & hull) >= OCCLUDER_INSIDE * other.area > 0]
            if over:
                box, count, labels, stats = pieces_apart(np.logical_or.reduce([outline, *over]), gap_px, bridge)
        crop = element.mask[box].astype(np.uint8)
        labels = np.where(crop > 0, labels, 0)
        stats[:, cv2.CC_STAT_AREA] = np.bincount(labels.ravel(), minlength=count)
        least = (MIN_IMAGE_FRACTION if element.kind is ElementKind.IMAGE else MIN_ELEMENT_FRACTION) * size
        big = sorted((k for k in range(1, count) if stats[k, cv2.CC_STAT_AREA] >= least),
                     key=lambda k: -stats[k, cv2.CC_STAT_AREA])
        if len(big) >= 2:
            pieces = []
            for k in big:
                piece = np.zeros(element.mask.shape, bool)
                piece[box] = labels == k
                pieces.append(piece)
            solidity = np.mean([piece.sum() / max(hull_mask(piece).sum(), 1) for piece in pieces])
            if not element.glyph_like or solidity >= SOLID_PIECES:
                pieces_of[id(element)] = pieces
            else:
                # Letters stay together, but a rule running across the page or a frame round it (long: LONG_ELEMENT
                # of the canvas, and no thicker than a thin line) is no letter of a missed word: it leaves the marks
                # of its colour as a layer of its own.
                rules = [piece for piece in pieces
                         if is_long(piece, LONG_ELEMENT * max(piece.shape)) and thickness_px(piece) <= gap_px]
                if rules and len(rules) < len(pieces):
                    rest = element.mask & ~np.logical_or.reduce(rules)
                    pieces_of[id(element)] = [rest] + rules
    while len(elements) < wanted and pieces_of:
        checkpoint()
        element = max((e for e in elements if id(e) in pieces_of), key=lambda e: int(pieces_of[id(e)][1].sum()))
        pieces = pieces_of.pop(id(element))[:1 + wanted - len(elements)]
        # The biggest piece keeps the crumbs too small to be pieces (and the pieces beyond the budget).
        pieces[0] = element.mask & ~np.logical_or.reduce(pieces[1:])
        elements.remove(element)
        for piece in pieces:
            part = Element(element.kind, piece, element.color_rgb, element.text)
            part.host = element.host
            part.veiled = veiled_part(element.veiled, piece)
            set_hull(part)
            elements.append(part)
    return elements


def pieces_apart(mask: np.ndarray, gap_px: int,
                 bridge: np.ndarray) -> tuple[tuple[slice, slice], int, np.ndarray, np.ndarray]:
    """The pieces of a mask when pieces closer than ``gap_px`` (``bridge``: the disc that far) are one: the box they
    were counted in and OpenCV's connected components of the dilated mask there (count with the 0 label, labels,
    stats)."""
    import cv2

    box = bbox_slices(mask, gap_px)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(cv2.dilate(mask[box].astype(np.uint8), bridge),
                                                               connectivity=8)
    return box, count, labels, stats


def split_strokes(elements: list[Element], wanted: int) -> list[Element]:
    """A shape that is an outline (a frame, a ring, an arc) with a solid shape of its colour drawn on or inside it (a
    bulb on a frame's edge, a bar across a ring) split into the two, biggest shape first, while there are fewer than
    ``wanted`` elements: a designer draws the outline and the figure as two things. The solid part is what is
    STROKE_SOLID times thicker than the outline's stroke (a morphological opening); what it leaves must be thin and
    hollow (``is_stroke``), so a shape with a thin tail or a tapering point stays whole."""
    import cv2

    if len(elements) >= wanted or not elements:
        return elements
    elements = list(elements)
    size = elements[0].mask.size
    least = MIN_ELEMENT_FRACTION * size
    for element in sorted(elements, key=lambda e: -e.area):
        if len(elements) >= wanted:
            break
        if (element.kind is not ElementKind.SHAPE or element.glyph_like or element.opacity < 1.0 or element.outlines
                or element.veiled is not None or element.area < 2 * least):
            continue
        checkpoint()
        box = bbox_slices(element.mask, 2)
        crop = element.mask[box].astype(np.uint8)
        dist = cv2.distanceTransform(crop, cv2.DIST_L2, 3)
        # The stroke's half width: the distance to the outside along the mask's ridge, where most of it runs (a
        # quarter of the ridge at least is outline: the thin part is the longer one).
        ridge = (crop > 0) & (dist >= cv2.dilate(dist, np.ones((3, 3), np.uint8)))
        if not ridge.any():
            continue
        radius_px = int(np.ceil(STROKE_SOLID * float(np.percentile(dist[ridge], 25)) + 1))
        disk = disc(radius_px)
        solid = cv2.dilate((dist > radius_px).astype(np.uint8), disk).astype(bool) & (crop > 0)
        thin = (crop > 0) & ~solid
        count, labels, stats, _ = cv2.connectedComponentsWithStats(thin.astype(np.uint8), connectivity=8)
        if count < 2:
            continue
        areas = stats[1:, cv2.CC_STAT_AREA]
        # The outline may be cut where the solid shape crosses it (two arcs); crumbs (a bulb's rays) go with the solid.
        stroke = np.isin(labels, 1 + np.flatnonzero(areas >= 0.1 * areas.max()))
        solid = (crop > 0) & ~stroke
        if stroke.sum() < least or solid.sum() < least or not is_stroke(stroke, hull_mask(stroke)):
            continue
        logger.debug("split strokes: a %d px outline and a %d px solid shape of one colour", stroke.sum(), solid.sum())
        elements.remove(element)
        parts = []
        for part_mask in (stroke, solid):
            mask = np.zeros(element.mask.shape, bool)
            mask[box] = part_mask
            part = Element(ElementKind.SHAPE, mask, element.color_rgb, element.text)
            part.host = element.host
            set_hull(part)
            parts.append(part)
        # The solid shape is drawn on the outline: right above it (the ring under the bar across it).
        parts[1].host = parts[0]
        elements += parts
    return elements
