# SPDX-License-Identifier: GPL-3.0-or-later
"""Steps 5 and 6: depth order of the elements, and merging neighbours to the requested layer count."""

from __future__ import annotations

import numpy as np

from .cancel import checkpoint
from .elements import Element, ElementKind, owner_map, row_span
from .masks import bbox_slices, disc, filled, joint_hull
from .translucent import veiled_pairs
from .tuning import BAND_PX, FLANKED_SHARE, LABEL_BOX, MIN_ELEMENT_FRACTION, SURROUND_SHARE


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
        rows = row_span(ea.hull)
        inside[a] = np.bincount(owner[rows][ea.hull[rows]], minlength=count + 1)[1:]
        inside[a, a] = 0.0
    # A few pixels of hull overlap are anti-aliasing noise, not occlusion (more on bigger images).
    tolerance = max(4.0, 1e-5 * elements[0].mask.size)
    above = (inside - inside.T) > tolerance  # above[a, b]: b is above a
    for pattern, shape in cut_patterns(elements):
        above[pattern, shape], above[shape, pattern] = True, False
    for lower, ink in inked_elements(elements):
        above[lower, ink], above[ink, lower] = True, False
    for lower, sheet in veiled_pairs(elements):
        above[lower, sheet], above[sheet, lower] = True, False
    for band, box, at, part in go_under(elements, owner, tolerance):
        if above[band, box] or above[box, band]:
            continue  # their order is known already
        above[band, box] = True
        # Completed under the box (peel completes inside the hull); the occlusion counts above stay as they were.
        hull = elements[band].hull.copy()
        hull[at] |= part
        elements[band].hull = hull
    find_labels(elements, above, inside)
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
        for a in sorted(level, key=lambda a: (rank[elements[a].kind], -footprint(elements[a]))):
            elements[a].level = level_index
            ordered.append(elements[a])
    # Marks drawn on a shape lie inside it only: right above their shape, so that a tight layer budget can fold
    # them back into it.
    for mark in [e for e in ordered if e.host is not None]:
        if not any(e is mark.host for e in ordered):
            continue
        ordered.remove(mark)  # first: a mark sorted before its host would shift the host's index
        host = next(i for i, e in enumerate(ordered) if e is mark.host)
        ordered.insert(host + 1, mark)
    return ordered


def footprint(element: Element) -> int:
    """The area an element takes in the layout: a ring or frame (a stroke, its hull its own mask) counts the area
    it encloses, so that within a level it lies behind what it frames, as a designer draws it."""
    if element.hull is element.mask and not element.glyph_like and not element.outlines:
        return int(np.count_nonzero(filled(element.mask)))
    return element.area


def find_labels(elements: list[Element], above: np.ndarray, inside: np.ndarray) -> None:
    """A word set on one shape and nothing else (a box's caption, a button's label) is marked on that shape: it
    goes right above it and, when the layer budget is short, into its layer before unrelated neighbours are
    merged (a designer keeps a label with its box; it also keeps the box and its label one level)."""
    for t, text in enumerate(elements):
        if text.kind is not ElementKind.TEXT or text.host is not None:
            continue
        below = np.flatnonzero(above[:, t])
        if len(below) != 1 or above[t].any():
            continue
        box = elements[below[0]]
        # A box, not a panel or a band the page is laid out on (its words are the page's).
        if (box.kind is not ElementKind.SHAPE or box.glyph_like or box.opacity < 1.0 or box.area < text.area
                or box.area > LABEL_BOX * box.mask.size or inside[below[0], t] < 0.9 * text.area):
            continue
        text.host = box


def fit_count(elements: list[Element], wanted: int, max_depth: int | None = None, drawing: bool = False,
              see_through: np.ndarray | None = None) -> list[list[Element]]:
    """``wanted`` layers of the elements (merge_to_count). ``max_depth`` (layers "auto"): besides, no more than that
    many layers stacked on one another (fit_depth); the layers those merges take are given back to the count
    (a looser count before them, up to three tries, never more than ``wanted`` in the end), so a deep stack
    folding does not also fold the small elements that the count alone kept apart. ``see_through``: an RGBA input's
    (nearly) transparent pixels; with a short count, the elements that lie there go into the background first
    (surround_pieces): no group holds them."""
    if len(elements) <= max(wanted, 0) and (max_depth is None or len(elements) <= max_depth):
        return [[element] for element in elements]
    if wanted <= 0:
        return []
    touching = footprints_touch(elements)  # once for every try: the elements' footprints do not change
    if see_through is not None:
        grounded = surround_pieces(elements, touching, see_through, len(elements) - wanted)
        if grounded:
            kept = [a for a in range(len(elements)) if a not in grounded]
            elements, touching = [elements[a] for a in kept], touching[np.ix_(kept, kept)]
            if len(elements) <= wanted:
                return [[element] for element in elements]
    groups = merge_to_count(elements, touching, wanted, max_depth, drawing)
    if max_depth is None:
        return groups
    looser = wanted
    for _ in range(3):
        if len(groups) >= wanted or looser >= len(elements):
            break
        looser += wanted - len(groups)
        trial = merge_to_count(elements, touching, looser, max_depth, drawing)
        if len(trial) > wanted:
            break
        groups = trial
    return groups


def surround_pieces(elements: list[Element], touching: np.ndarray, see_through: np.ndarray,
                    excess: int) -> list[int]:
    """The indices of up to ``excess`` elements (the merges a short count needs) that go into the background instead of
    taking a layer: the transparent surround of an RGBA input (its core SURROUND_SHARE see-through) where the background
    is the picture's own ground (a card whose colour runs along more of the edge than its transparent margin). Seen in
    the key colour, the margin is a shape framing the whole canvas; but the surround is no thing of the design and takes
    no place in the layer budget (step 1), so the layers go to what the picture holds. The biggest first; nothing kept
    below one may touch it, so that what lies on it stays above it."""
    candidates = sorted((a for a, element in enumerate(elements)
                         if element.host is None and not element.outlines
                         and np.count_nonzero(see_through[element.mask]) >= SURROUND_SHARE * element.area),
                        key=lambda a: -elements[a].area)
    grounded: list[int] = []
    changed = True
    while changed and len(grounded) < excess:
        changed = False
        for a in candidates:
            if a in grounded or any(touching[a, b] for b in range(a) if b not in grounded):
                continue
            grounded.append(a)
            changed = True
            break
    return grounded


def merge_to_count(elements: list[Element], touching: np.ndarray, wanted: int, max_depth: int | None = None,
                   drawing: bool = False) -> list[list[Element]]:
    """Merge groups until there are ``wanted``: marks into their shapes first, then disjoint pairs of one level, pairs
    whose layers would touch before pairs far apart (lines of one paragraph, a label and its box: merged, they leave no
    sliver of one layer's soft edge over the other's), pairs of one kind before mixed ones (not two texts: a designer
    sets each text as a layer of its own, so two texts merge no sooner than a text and a shape), small pairs first. Two
    groups merge into one layer only where every group between them in depth order can step aside: it touches neither of
    them (then its order relative to them does not show). The pieces of an inked drawing (``drawing``, see
    ``lineart.inked_drawing``) merge the other way round, touching pairs first and the biggest first: the figure grows
    piece by piece and what stays apart are its small parts, not two interleaved halves of it (its base colour and
    everything drawn on that, which the one-level rule would give). ``max_depth``: then go on merging while more than
    that many layers lie stacked on one another (fit_depth). ``touching``: footprints_touch of the elements (merge_pair
    keeps a copy in step with the groups as they merge)."""
    groups = [[element] for element in elements]
    # Labels fold into their boxes only when the budget folds them all: where it is too loose for that, the
    # design keeps its words apart from their boxes, and folding a few would split a row of alike boxes.
    labels = [e for e in elements if e.kind is ElementKind.TEXT and e.host is not None]
    fold_labels = len(groups) - wanted >= len(labels)
    while len(groups) > wanted:
        checkpoint()
        levels = [{e.level for e in group} for group in groups]
        kinds = [{e.kind for e in group} for group in groups]
        areas = [sum(e.area for e in group) for group in groups]
        members = [{id(e) for e in group} for group in groups]
        # The shapes a group's elements are all marks on (None: some element is no mark).
        hosts = [{id(e.host) for e in group}
                 if all(e.host is not None and (fold_labels or e.kind is not ElementKind.TEXT) for e in group)
                 else None for group in groups]
        best, best_cost = (0, 1), None
        for i in range(len(groups) - 1):
            # Whether each group above i touches it (then i cannot step up past that group).
            blocks_up = np.cumsum(touching[i, i + 1:]) > 0
            for j in range(i + 1, len(groups)):
                # Some group between touches i and some touches j: neither can step past to meet the other.
                if not can_merge(touching, i, j, blocks_up):
                    continue
                area = areas[i] + areas[j]
                hosted = hosts[j]
                if hosted is not None and hosted <= members[i]:
                    cost = (-1, 0, 0, area)  # marks on a shape go back into it before anything else is merged
                elif drawing:
                    cost = (0, 0 if touching[i, j] else 1, 0, -area)
                else:
                    cost = (0 if len(levels[i] | levels[j]) == 1 else 1, 0 if touching[i, j] else 1,
                            0 if kinds[i] == kinds[j] != {ElementKind.TEXT} else 1, area)
                if best_cost is None or cost < best_cost:
                    best, best_cost = (i, j), cost
        groups, touching = merge_pair(groups, touching, *best)
    if max_depth is not None:
        groups = fit_depth(groups, touching, max_depth)
    return groups


def can_merge(touching: np.ndarray, i: int, j: int, blocks_up: np.ndarray) -> bool:
    """Groups i < j can meet unless some group between touches i and some touches j (neither can step past).
    ``blocks_up``: whether each group above i touches it, cumulated (np.cumsum(touching[i, i + 1:]) > 0)."""
    return not (j > i + 1 and blocks_up[j - i - 2] and touching[j, i + 1:j].any())


def merge_pair(groups: list[list[Element]], touching: np.ndarray, i: int,
               j: int) -> tuple[list[list[Element]], np.ndarray]:
    """Groups i < j as one (fit_count's step-aside order), and the touching matrix in step with them."""
    between = list(range(i + 1, j))
    # The upper one steps down to the lower one, or (when a group between touches it) the lower one steps up.
    seq = list(range(i)) + (between + [i] if touching[j, i + 1:j].any() else [i] + between)
    seq += list(range(j + 1, len(groups)))
    touching = touching.copy()
    touching[i] |= touching[j]
    touching[:, i] |= touching[:, j]
    touching[i, i] = False
    return [groups[k] + (groups[j] if k == i else []) for k in seq], touching[np.ix_(seq, seq)]


def stack_depth(touching: np.ndarray) -> int:
    """How many layers lie on one another at most: the longest back-to-front chain of groups, each touching the
    next (layers that touch nothing between them could be one layer; a chain cannot)."""
    depth = np.ones(len(touching), int)
    for j in range(1, len(touching)):
        below = depth[:j][touching[:j, j]]
        if below.size:
            depth[j] = 1 + int(below.max())
    return int(depth.max()) if len(depth) else 0


def fit_depth(groups: list[list[Element]], touching: np.ndarray, max_depth: int) -> list[list[Element]]:
    """Merge groups until at most ``max_depth`` lie stacked on one another (layers "auto"): each step the merge
    that leaves the shallowest stack, the smaller pair of those. A designer keeps a thing and what is set on it
    (a card and its words, a badge and its label, the pieces of one drawing) as one layer rather than stack
    many on one another; stacked this deep, the upper ones are mostly parts of such a thing."""
    depth = stack_depth(touching)
    while depth > max(max_depth, 1) and len(groups) > 1:
        checkpoint()
        areas = [sum(e.area for e in group) for group in groups]
        best = None
        for i in range(len(groups) - 1):
            blocks_up = np.cumsum(touching[i, i + 1:]) > 0
            for j in range(i + 1, len(groups)):
                if not touching[i, j] or not can_merge(touching, i, j, blocks_up):
                    continue
                merged = merge_pair(groups, touching, i, j)
                cost = (stack_depth(merged[1]), areas[i] + areas[j])
                if best is None or cost < best[0]:
                    best = (cost, merged)
        if best is None:
            break
        (depth, _), (groups, touching) = best
    return groups


def footprints_touch(elements: list[Element]) -> np.ndarray:
    """touching[a, b]: the layers of a and b would share pixels: their hulls come within two soft-edge bands."""
    import cv2

    count = len(elements)
    kernel = disc(BAND_PX)
    touching = np.zeros((count, count), bool)
    grown = []
    for element in elements:
        checkpoint()
        box = bbox_slices(element.hull, BAND_PX + 1)
        grown.append((box, cv2.dilate(element.hull[box].astype(np.uint8), kernel).astype(bool)))
    for a in range(count):
        box_a, grown_a = grown[a]
        for b in range(a + 1, count):
            box_b, grown_b = grown[b]
            rows = slice(max(box_a[0].start, box_b[0].start), min(box_a[0].stop, box_b[0].stop))
            cols = slice(max(box_a[1].start, box_b[1].start), min(box_a[1].stop, box_b[1].stop))
            if rows.start >= rows.stop or cols.start >= cols.stop:
                continue
            part_a = grown_a[rows.start - box_a[0].start:rows.stop - box_a[0].start,
                             cols.start - box_a[1].start:cols.stop - box_a[1].start]
            part_b = grown_b[rows.start - box_b[0].start:rows.stop - box_b[0].start,
                             cols.start - box_b[1].start:cols.stop - box_b[1].start]
            touching[a, b] = touching[b, a] = bool((part_a & part_b).any())
    return touching


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
    kernel = disc(2 * BAND_PX)
    for i, ink in enumerate(elements):
        if not ink.outlines:
            continue
        checkpoint()
        box = bbox_slices(ink.mask, 2 * BAND_PX + 1)
        near = cv2.dilate(ink.mask[box].astype(np.uint8), kernel).astype(bool)
        found += [(j, i) for j, other in enumerate(elements)
                  if j != i and other.kind is not ElementKind.TEXT and (other.mask[box] & near).any()]
    return found


def go_under(elements: list[Element], owner: np.ndarray,
             tolerance: float) -> list[tuple[int, int, tuple[slice, slice], np.ndarray]]:
    """(shape, element, box, part of the box) where a solid shape's pieces lie on both sides of the element: a band
    seen left and right of a box set on it goes on under the box. The shape's hull (the union of its pieces'
    hulls) leaves the gap between them out, so nothing else says the box occludes it; the part is the element's
    hull in that gap, where the shape is completed under it. The element touches two of the pieces and fills the
    gap between them (or lies in it). (The pieces stayed one shape because little background lies between them.)
    Letters and strokes are many pieces of their own and are left alone. ``tolerance``: order_elements' pixels of
    overlap that are anti-aliasing, not occlusion."""
    import cv2

    found = []
    kernel = np.ones((4 * BAND_PX + 1,) * 2, np.uint8)  # cores are a soft-edge band apart on each side
    for a, shape in enumerate(elements):
        if (shape.kind is not ElementKind.SHAPE or shape.glyph_like or shape.pieces < 2 or shape.hull is shape.mask
                or shape.opacity < 1.0):
            continue
        checkpoint()
        box = bbox_slices(shape.mask, 1)
        crop = shape.mask[box]
        _, labels, stats, _ = cv2.connectedComponentsWithStats(crop.astype(np.uint8), connectivity=8)
        big = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] >= MIN_ELEMENT_FRACTION * shape.mask.size) + 1
        if len(big) < 2:
            continue
        between = joint_hull(np.isin(labels, big)) & ~shape.hull[box]
        gap_px = np.count_nonzero(between)
        for b in np.unique(owner[box][between]):
            if b == 0 or b == a + 1:
                continue
            other = elements[b - 1]
            # Its hull (a box with a disc on it fills the gap) is mostly in the gap, or fills most of it (a box
            # taller than the band it sits on).
            part = other.hull[box] & between
            if np.count_nonzero(part) < FLANKED_SHARE * min(np.count_nonzero(other.hull), gap_px):
                continue
            if np.count_nonzero(other.hull[box] & crop) > tolerance:
                continue  # the shape lies on it (a letter's legs on the box around them): it is not set on the shape
            # Seen on both sides: it touches two of the pieces (across the soft-edge band between cores).
            near = cv2.dilate(other.hull[box].astype(np.uint8), kernel).astype(bool)
            if np.count_nonzero(np.isin(big, labels[near])) >= 2:
                found.append((a, int(b) - 1, box, part))
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
