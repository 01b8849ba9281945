# SPDX-License-Identifier: GPL-3.0-or-later
"""Step 4, the ground: the flat background (or none: a photo), the photographs placed on it, and ground-coloured
marks enclosed by shapes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .cancel import checkpoint
from .elements import Element, ElementKind, owner_map, set_hull, set_mask
from .masks import bbox_slices, hull_area_px
from .regions import Regions
from .tuning import (
    FRINGE_EDGE_SHARE,
    FRINGE_MAX_PX,
    GROUND_FRAME_RATIO,
    GROUND_HULL_SHARE,
    MIN_ELEMENT_FRACTION,
    MIN_IMAGE_FRACTION,
    PHOTO_BLEED_SHARE,
    PHOTO_GRAIN,
    PHOTO_TEXTURE_SHARE,
    SAME_COLOR,
)


@dataclass
class Ground:
    """The flat background: its main region and every region of its colour model, and the photographs placed on
    it. ``region`` None: no flat ground, the image is a photo (or texture)."""

    region: int | None = None
    regions: set[int] = field(default_factory=set)
    photos: list[np.ndarray] = field(default_factory=list)  # bool H×W masks, holes filled


def find_ground(regions: Regions, candidates: list[int]) -> Ground:
    """The flat colour that runs along most of the canvas's edge (with the other border regions its colour model
    explains: the four corners around a round icon are one ground), if it is big enough to be one, plus the flat
    regions its model explains. Border contact, not area, decides figure against ground: a disc filling an icon
    is the figure, and so is a shape whose hull leaves part of the canvas out where another border colour's hull
    spans it (a white disc bleeding off a thumbnail's top and bottom). A photograph running off the canvas along a
    good part of its edge makes the whole image a photo (a sky whose smooth part looked like a flat background),
    unless the ground runs along well more of the edge than the photographs (it frames them)."""
    labels = regions.labels
    height_px, width_px = labels.shape
    total = height_px * width_px
    perimeter = border_ring(labels)
    contact = np.bincount(perimeter, minlength=regions.count)
    border_flat = [k for k in candidates if contact[k] > 0 and regions.areas[k] >= 0.01 * total]
    if not border_flat:
        return Ground()

    def ground_family(k: int) -> list[int]:
        predicted = np.einsum("ki,ic->kc", regions.features_mean[border_flat], regions.coefs[k])
        close = ((np.linalg.norm(predicted - regions.means[border_flat], axis=1) < SAME_COLOR * 0.5)
                 | (np.linalg.norm(regions.means[border_flat] - regions.means[k], axis=1) < SAME_COLOR * 0.5))
        return [j for j, near in zip(border_flat, close, strict=False) if near or j == k]

    families = {k: ground_family(k) for k in border_flat}
    ranked = sorted(border_flat, key=lambda k: (contact[families[k]].sum(), regions.areas[k]), reverse=True)
    # A ground lies behind everything, so its hull spans (nearly) the canvas; a disc bleeding off the top and
    # bottom edges can touch more of the border than the ground cut into pieces around it, but its hull leaves
    # the corners out. When no family spans the canvas, border contact alone decides.
    bg_region = next((k for k in ranked if hull_share(labels, families[k]) >= GROUND_HULL_SHARE), ranked[0])
    if regions.areas[families[bg_region]].sum() < 0.1 * total:
        return Ground()
    bg_regions = set(families[bg_region])
    bg_coef = regions.coefs[bg_region]
    for k in candidates:
        if k in bg_regions:
            continue
        # The background's colour model, averaged over region k, against k's own mean: a gradient cut apart
        # by a shape continues on the other side, and the counters of letters show the background.
        predicted = regions.features_mean[k] @ bg_coef
        if np.linalg.norm(predicted - regions.means[k]) < SAME_COLOR * 0.5:
            bg_regions.add(k)

    family = list(bg_regions)
    family_area = regions.areas[family]
    # A ground is what the design sits on: it shows around it, over most of the canvas. A grained one (its
    # colour model misses by PHOTO_GRAIN or more, as a photo's smooth shadows do) showing on less than half the
    # canvas is the dark or pale part of a photograph filling the canvas (a desk photo under a dark veil).
    grain = float((regions.residuals[family] * family_area).sum() / family_area.sum())
    if grain >= PHOTO_GRAIN and family_area.sum() < 0.5 * total:
        return Ground()
    bg_lookup = np.zeros(regions.count, bool)
    bg_lookup[family] = True
    photos = photo_objects(regions, bg_lookup[labels])
    edge = np.zeros((height_px, width_px), bool)
    edge[[0, -1], :] = edge[:, [0, -1]] = True
    # Photographs bleeding off the edge make the image a photo unless the flat ground runs along well more of the
    # edge than they do: then it frames them (a trading card's grey back, its photo band bleeding off the top). A
    # photo's sky runs along about as much of the edge as the grass and house under it.
    if photos:
        photo_edge = (np.logical_or.reduce(photos) & edge).sum()
        ground_edge = (bg_lookup[labels] & edge).sum()
        if photo_edge > PHOTO_BLEED_SHARE * edge.sum() and GROUND_FRAME_RATIO * photo_edge >= ground_edge:
            return Ground()
    return Ground(bg_region, bg_regions, photos)


def border_ring(labels: np.ndarray) -> np.ndarray:
    """The region labels along the canvas's edge, where figure and ground are told apart. A hairline fringe
    round the canvas (a resampling seam, a thin keyline: a ring that is mostly edge pixels) hides what runs off
    the edge; then the first ring further in that is no fringe (a navy ground under a one-pixel lighter seam is
    still the ground)."""
    height_px, width_px = labels.shape
    rings = []
    for inset in range(min(FRINGE_MAX_PX, (min(height_px, width_px) - 1) // 2) + 1):
        inner = labels[inset:height_px - inset, inset:width_px - inset]
        ring = np.concatenate([inner[0], inner[-1], inner[1:-1, 0], inner[1:-1, -1]])
        if (ring == 0).mean() <= FRINGE_EDGE_SHARE:
            return ring
        rings.append(ring)
    return rings[0]


def hull_share(labels: np.ndarray, family: list[int]) -> float:
    """The share of the canvas that the convex hull of the given regions covers."""
    return hull_area_px(np.isin(labels, family)) / labels.size


def enclosed_ground(rgb: np.ndarray, background: Element, elements: list[Element]) -> list[Element]:
    """Background-coloured marks enclosed by a solid shape (white letters in a blue box, the glyph on a round
    icon) are drawn on the shape, not holes through it to the background: they become elements of their own,
    above the shape, which is completed under them. A mark is the pixels inside the shape's hull, outside every
    element, nearer the background's colour than the shape's, in pieces that do not reach out of the hull (a
    bay of background in a concave shape does). Glyphs and strokes keep their own mask as hull: the counters
    of letters and the inside of a ring stay background."""
    import cv2

    height_px, width_px = rgb.shape[:2]
    owner = owner_map(elements, rgb.shape)
    found: list[Element] = []
    for shape in elements:
        if shape.kind is not ElementKind.SHAPE or shape.glyph_like or shape.opacity < 1.0 or shape.hull is shape.mask:
            continue
        checkpoint()
        box = bbox_slices(shape.hull, 1)
        hull = shape.hull[box]
        crop = rgb[box]
        to_ground = np.linalg.norm(crop - background.color_rgb.astype(np.float32), axis=2)
        to_shape = np.linalg.norm(crop - shape.color_rgb.astype(np.float32), axis=2)
        marks = hull & (owner[box] == 0) & (to_ground < to_shape)
        if marks.sum() < MIN_ELEMENT_FRACTION * height_px * width_px or marks.sum() > 0.3 * hull.sum():
            continue
        count, pieces = cv2.connectedComponents(marks.astype(np.uint8), connectivity=8)
        outside = cv2.dilate((~hull).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        open_pieces = np.unique(pieces[outside & marks])
        marks &= ~np.isin(pieces, open_pieces)
        if marks.sum() < MIN_ELEMENT_FRACTION * height_px * width_px:
            continue
        mask = np.zeros((height_px, width_px), bool)
        mask[box] = marks
        background.mask &= ~mask
        color = rgb[mask].mean(axis=0)
        # An element of their colour there already (a word read there, a glyph's core) takes the marks around
        # it: they are its soft edge and the letters it missed.
        near = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        words = [e for e in elements + found if e is not shape and e.kind in (ElementKind.TEXT, ElementKind.SHAPE)
                 and np.linalg.norm(e.color_rgb - color) < np.linalg.norm(shape.color_rgb - color)
                 and (e.mask & near).any()]
        if words:
            set_mask(words[0], words[0].mask | mask)
            continue
        element = Element(ElementKind.SHAPE, mask, color)
        element.host = shape
        set_hull(element)
        found.append(element)
    return found


def photo_objects(regions: Regions, background: np.ndarray) -> list[np.ndarray]:
    """Masks of the photographs on a flat background: connected blobs of non-background pixels, holes filled,
    whose inside (a few pixels in from their outline) is mostly texture (edge pixels or regions the colour
    model does not explain). Flat graphics, even with text in them, are texture only along their edges."""
    import cv2

    height_px, width_px = background.shape
    texture = regions.texture
    count, blobs, stats, _ = cv2.connectedComponentsWithStats((~background).astype(np.uint8), connectivity=8)
    photos = []
    erode = np.ones((5, 5), np.uint8)
    for k in range(1, count):
        checkpoint()
        if stats[k, cv2.CC_STAT_AREA] < MIN_IMAGE_FRACTION * height_px * width_px:
            continue
        box = bbox_slices(blobs == k, 2)
        blob = (blobs[box] == k).astype(np.uint8)
        inside = cv2.erode(blob, erode).astype(bool)
        # Thin things (letters, strokes, small icons) are mostly outline: a photograph is solid.
        if inside.sum() < max(50, 0.5 * blob.sum()) or texture[box][inside].mean() < PHOTO_TEXTURE_SHARE:
            continue
        contours, _ = cv2.findContours(blob, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(blob, contours, -1, 1, thickness=cv2.FILLED)
        mask = np.zeros(background.shape, bool)
        mask[box] = blob.astype(bool)
        photos.append(mask)
    return photos
