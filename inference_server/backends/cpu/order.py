# SPDX-License-Identifier: GPL-3.0-or-later
"""Steps 5 and 6: depth order of the elements, and merging neighbours to the requested layer count."""

from __future__ import annotations

import numpy as np

from .cancel import checkpoint
from .elements import Element, ElementKind, owner_map
from .masks import bbox_slices
from .tuning import BAND_PX


def order_elements(elements: list[Element]) -> list[Element]:
    """Back-to-front order. above[a, b] > 0: b lies inside a's hulls more than a inside b's, so b is above a."""
    count = len(elements)
    if count <= 1:
        return elements
    # Element masks are disjoint: one label image, then one bincount per hull.
    owner = owner_map(elements, elements[0].mask.shape)
    inside = np.zeros((count, count))
    for a, ea in enumerate(elements):
        checkpoint()
        inside[a] = np.bincount(owner[ea.hull], minlength=count + 1)[1:]
        inside[a, a] = 0.0
    # A few pixels of hull overlap are anti-aliasing noise, not occlusion (more on bigger images).
    tolerance = max(4.0, 1e-5 * elements[0].mask.size)
    above = (inside - inside.T) > tolerance  # above[a, b]: b is above a
    for pattern, shape in cut_patterns(elements):
        above[pattern, shape], above[shape, pattern] = True, False
    for lower, ink in inked_elements(elements):
        above[lower, ink], above[ink, lower] = True, False
    remaining = list(range(count))
    levels_front_to_back = []
    while remaining:
        # Unoccluded: nothing remaining is above it.
        top = [a for a in remaining if not any(above[a, b] for b in remaining if b != a)]
        if not top:  # a cycle: take the least occluded
            top = [min(remaining, key=lambda a: sum((inside[a, b] - inside[b, a]) for b in remaining if b != a))]
        levels_front_to_back.append(top)
        remaining = [a for a in remaining if a not in top]
    ordered = []
    for level_index, level in enumerate(reversed(levels_front_to_back)):
        # Within a level (disjoint elements): images to the back, text to the front, bigger ones further back.
        rank = {ElementKind.IMAGE: 0, ElementKind.SHAPE: 1, ElementKind.TEXT: 2}
        for a in sorted(level, key=lambda a: (rank[elements[a].kind], -elements[a].area)):
            elements[a].level = level_index
            ordered.append(elements[a])
    # Marks drawn on a shape lie inside it only: right above their shape, so that a tight layer budget can fold
    # them back into it.
    for mark in [e for e in ordered if e.host is not None]:
        host = next((i for i, e in enumerate(ordered) if e is mark.host), None)
        if host is not None:
            ordered.remove(mark)
            ordered.insert(host + 1, mark)
    return ordered


def fit_count(elements: list[Element], wanted: int) -> list[list[Element]]:
    """Merge neighbours in depth order until there are ``wanted`` groups; disjoint, small pairs go first."""
    groups = [[element] for element in elements]
    while len(groups) > max(wanted, 0):
        if wanted <= 0:
            return []
        best, best_cost = 0, None
        for index in range(len(groups) - 1):
            lower, upper = groups[index], groups[index + 1]
            same_level = lower[-1].level == upper[0].level
            same_kind = {e.kind for e in lower} == {e.kind for e in upper}
            area = sum(e.area for e in lower) + sum(e.area for e in upper)
            cost = (0 if same_level else 1, 0 if same_kind else 1, area)
            if all(e.host is not None and any(e.host is h for h in lower) for e in upper):
                cost = (-1, 0, area)  # marks on a shape go back into it before anything else is merged
            if best_cost is None or cost < best_cost:
                best, best_cost = index, cost
        groups[best:best + 2] = [groups[best] + groups[best + 1]]
    return groups


def group_name(group: list[Element]) -> str:
    if len(group) == 1:
        return group[0].name
    kinds = {e.kind for e in group}
    if kinds == {ElementKind.TEXT}:
        texts = [e.text for e in group if e.text]
        return "Text '" + " ".join(texts) + "'" if texts else "Text"
    if kinds == {ElementKind.SHAPE}:
        return "Shapes"
    if kinds == {ElementKind.IMAGE}:
        return "Images"
    names = list(dict.fromkeys(e.name for e in group))
    return "Group: " + ", ".join(names[:3]) + (f" +{len(names) - 3} more" if len(names) > 3 else "")


def inked_elements(elements: list[Element]) -> list[tuple[int, int]]:
    """(element, line art) index pairs: a drawing's outlines lie above the colours they outline (the colours
    they touch across the soft-edge band), wherever those colours' hulls reach. Text stays in front."""
    import cv2

    found = []
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (4 * BAND_PX + 1,) * 2)
    for i, ink in enumerate(elements):
        if not ink.outlines:
            continue
        checkpoint()
        box = bbox_slices(ink.mask, 2 * BAND_PX + 1)
        near = cv2.dilate(ink.mask[box].astype(np.uint8), kernel).astype(bool)
        found += [(j, i) for j, other in enumerate(elements)
                  if j != i and other.kind is not ElementKind.TEXT and (other.mask[box] & near).any()]
    return found


def cut_patterns(elements: list[Element]) -> list[tuple[int, int]]:
    """(pattern, shape) index pairs where a solid shape's outline cuts a pattern's pieces short: the tiles of a
    lattice that touch a disc laid over it are slivers of the others, so the disc is above the pattern, even
    where a few pattern-coloured strokes drawn over the disc (a joystick's cable) put pattern pixels inside its
    hull. Words are not patterns: letters that touch a shape keep their size."""
    import cv2

    found = []
    for p, pattern in enumerate(elements):
        if pattern.kind is not ElementKind.SHAPE or not pattern.glyph_like or pattern.pieces < 8:
            continue
        checkpoint()
        box = bbox_slices(pattern.mask, BAND_PX + 1)
        crop = pattern.mask[box]
        count, pieces, stats, _ = cv2.connectedComponentsWithStats(crop.astype(np.uint8), connectivity=8)
        areas = stats[1:, cv2.CC_STAT_AREA]
        tiles = areas >= max(4.0, 2e-5 * pattern.mask.size)  # anti-aliasing specks are no tiles
        for s, shape in enumerate(elements):
            if s == p or shape.glyph_like or shape.kind is ElementKind.TEXT or shape.area < pattern.area:
                continue
            # Element cores leave the anti-aliased edge between them out: touching is across that band.
            near = cv2.dilate(shape.mask[box].astype(np.uint8), np.ones((2 * BAND_PX + 1,) * 2, np.uint8))
            touching = np.zeros(count, bool)
            touching[np.unique(pieces[near.astype(bool) & crop])] = True
            touching = touching[1:] & tiles
            others = ~touching & tiles
            if touching.sum() < 8 or others.sum() < 8:
                continue
            if np.median(areas[touching]) < 0.6 * np.median(areas[others]):
                found.append((p, s))
    return found
