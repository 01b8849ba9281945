# SPDX-License-Identifier: GPL-3.0-or-later
"""Step 4, elements: the background, the words' letters, flat shapes grouped by colour, photographs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .cancel import checkpoint
from .elements import Element, ElementKind, set_hull
from .ground import Ground, enclosed_ground, find_ground
from .masks import bbox_slices, disc, filled, is_long, nearest_pixel, open_mask, union_box
from .regions import Regions, channel_max
from .text import Word
from .tuning import (
    BAND_PX,
    EDGE_STEP,
    ELEMENT_RESIDUAL,
    INK_LETTERS_NEAR,
    INK_LETTERS_OUTLINE,
    INK_LETTERS_SHARE,
    INK_LETTERS_SPREAD,
    LETTER_CONTRAST,
    LONG_ELEMENT,
    MAX_ELEMENTS,
    MIN_ELEMENT_FRACTION,
    MIN_ELEMENT_FRACTION_ON_PHOTO,
    MIN_IMAGE_FRACTION,
    PHOTO_ELEMENT_RESIDUAL,
    PHOTO_GRAIN,
    SAME_COLOR,
    WORD_GROUND_RING,
    WORD_INK_SHARE,
    WORD_RING,
    WORD_RING_CLEAR,
)

logger = logging.getLogger(__name__)
RegionBoxes = list  # scipy.ndimage.find_objects: region k's (rows, cols) slices at k − 1 (None: no pixels)


@dataclass
class Letters:
    """The words' letters: which regions are a word's letters, and each word's letter pixels."""

    of_region: dict[int, int] = field(default_factory=dict)  # region → index of the word in the word list
    pixels: dict[int, np.ndarray] = field(default_factory=dict)  # word index → bool H×W, its letters' pixels
    # word index → letter colour, for words whose letters are no regions (small text: all edge pixels)
    loose: dict[int, np.ndarray] = field(default_factory=dict)
    # word index → the (rows, cols) box its letter pixels lie in (the word box's): masks are ORed there only
    boxes: dict[int, tuple[slice, slice]] = field(default_factory=dict)

    def all_pixels(self, shape: tuple[int, int]) -> np.ndarray:
        union = np.zeros(shape, bool)
        for index, pixels in self.pixels.items():
            box = self.boxes.get(index, (slice(None), slice(None)))
            union[box] |= pixels[box]
        return union


@dataclass
class RegionGroup:
    """Flat regions that become one element: one colour (or one gradient's colour model), one word or none."""

    word: int | None  # index in the word list: these regions are that word's letters
    color: np.ndarray  # the first (biggest) region's mean colour
    regions: list[int]


def build_elements(rgb: np.ndarray, regions: Regions, words: list[Word]) -> tuple[Element, list[Element]]:
    """The background element and the elements above it (biggest first, at most MAX_ELEMENTS, hulls set)."""
    from scipy import ndimage

    candidates = [k for k in range(1, regions.count) if regions.flat[k]]
    ground = find_ground(regions, candidates)
    # On a photo, smooth patches of the photo itself (sky, shadows, highlights) are nearly flat too; graphics
    # placed on it are flat to the noise level.
    element_residual = ELEMENT_RESIDUAL if ground.region is not None else PHOTO_ELEMENT_RESIDUAL
    region_boxes = ndimage.find_objects(regions.labels)
    letters = find_letters(rgb, regions, words, candidates, ground, region_boxes, element_residual)
    groups = group_regions(regions, candidates, ground, letters, region_boxes, element_residual)
    elements, assigned = group_elements(regions, groups, ground, letters, words, region_boxes)
    if ground.region is not None:
        background, images = photo_elements(rgb, regions, ground, letters, elements, assigned)
        elements += images
    else:
        # No flat background: it is a photo (or texture); everything that is not a flat element is background.
        # A flat-looking patch of the photo itself (a sparkle, a shadow) carries its grain; graphics placed on it
        # are exact colour: the grained ones stay in the photo.
        elements = [e for e in elements if e.kind is not ElementKind.SHAPE or not grained(rgb, e.mask)]
        mask = np.ones(regions.labels.shape, bool)
        for element in elements:
            mask &= ~element.mask
        background = Element(ElementKind.BACKGROUND, mask,
                             rgb[mask].mean(axis=0) if mask.any() else rgb.mean(axis=(0, 1)))
        background.regions = []

    elements.sort(key=lambda e: -e.area)
    if len(elements) > MAX_ELEMENTS:
        elements = elements[:MAX_ELEMENTS]
    for element in elements:
        checkpoint()
        set_hull(element)
    if ground.region is not None:
        elements += enclosed_ground(rgb, background, elements)
    return background, elements


def find_letters(rgb: np.ndarray, regions: Regions, words: list[Word], candidates: list[int], ground: Ground,
                 region_boxes: RegionBoxes, element_residual: float) -> Letters:
    """A word's letters: among the regions lying wholly inside its box, the colour most confined to the box: not
    the colour of a ring just outside the box (that is the word's ground, which runs on past the box; see
    is_word_ground), and of the rest the least common in the ring for its share of the box (a pill or disc snug
    round the word, or a picture behind it, also shows round the box), colours under WORD_INK_SHARE of the box (an
    icon by the word) last. Where there is no ring (a box over the whole canvas), the colour with the most area.
    Letter regions leave ``ground.regions``."""
    height_px, width_px = rgb.shape[:2]
    letters = Letters()
    # The candidates' boxes as arrays, tested against each word box at once (words × regions on a busy page).
    # Letters of the background's colour (white words in a blue box on a white page) are candidates too; the
    # background's own main region never lies inside a word box.
    pool = np.asarray([k for k in candidates if k != ground.region and region_boxes[k - 1] is not None
                       and not regions.residuals[k] > element_residual], np.int64)
    spans = np.asarray([(region_boxes[k - 1][1].start, region_boxes[k - 1][1].stop, region_boxes[k - 1][0].start,
                         region_boxes[k - 1][0].stop) for k in pool.tolist()], np.int64).reshape(-1, 4)
    free = np.ones(len(pool), bool)  # not yet some word's letters
    for index, word in enumerate(words):
        checkpoint()
        box = word.box_px
        x0, y0 = box.min(axis=0)
        x1, y1 = box.max(axis=0)
        margin = 0.15 * (y1 - y0)
        within = (free & (spans[:, 0] >= x0 - margin) & (spans[:, 1] <= x1 + margin)
                  & (spans[:, 2] >= y0 - margin) & (spans[:, 3] <= y1 + margin))
        inside = pool[within].tolist()
        # Letters never have the colour of the word's own ground (the box's rim): regions of that colour
        # inside the box are counters and gaps between thin letters, which can outweigh the letters themselves.
        rim = word_rim_rgb(rgb, box)
        inside = [k for k in inside if rim is None or np.linalg.norm(regions.means[k] - rim) >= SAME_COLOR]
        clusters: list[list[int]] = []
        for k in sorted(inside, key=lambda k: -regions.areas[k]):
            for cluster in clusters:
                if np.linalg.norm(regions.means[cluster[0]] - regions.means[k]) < SAME_COLOR:
                    cluster.append(k)
                    break
            else:
                clusters.append([k])
        # The ground runs on outside the box, the letters do not: the ring's own colour is the ground (the page
        # between the lines of a paragraph, where the ring is not one colour for word_rim_rgb; a film strip behind a
        # title; not white rules crossing the ring over and under a white title). Of the others, the letters are the
        # colour most confined to the box (least common in the ring for its share of the box): a shape or picture
        # showing behind the letters also shows round them. Colours hardly showing in the ring (WORD_RING_CLEAR) are
        # all the letters' to be (a translucent word over a gradient shows two), and the one with most area wins. A
        # colour covering less than WORD_INK_SHARE of the box is a mark or an icon set by the word, tried only after
        # the rest.
        shares = ring_shares(rgb, box, [regions.means[c[0]] for c in clusters])
        if shares is None:
            clusters = sorted(clusters, key=lambda cluster: -regions.areas[cluster].sum())
        else:
            ring_most = max((ring_share for _, ring_share in shares), default=0.0)
            ranked = sorted((in_share < WORD_INK_SHARE, max(ring_share / in_share, WORD_RING_CLEAR),
                             -regions.areas[clusters[i]].sum(), i)
                            for i, (in_share, ring_share) in enumerate(shares)
                            if in_share > 0 and not is_word_ground(ring_share, ring_most))
            if len(ranked) < len(clusters) or (ranked and ranked[0][-1] != 0):
                logger.debug("word %r: %d of %d colours run on round the box; letters' colour: %s", word.text,
                             len(clusters) - len(ranked), len(clusters),
                             regions.means[clusters[ranked[0][-1]][0]].round() if ranked else None)
            clusters = [clusters[i] for *_, i in ranked]
        if not clusters:
            # Small text is all anti-aliased edge: no region of it is big enough to count. Its letters are
            # the pixels of the box that stand out from the box's own ground.
            found = contrast_letters(rgb, box)
            if found is None:
                found = ink_letters(rgb, box)
            if found is not None:
                letters.pixels[index], letters.loose[index] = found
                letters.boxes[index] = word_box(rgb, box)[:2]  # type: ignore[index]  # (found: it covers pixels)
            continue
        letter_regions = clusters[0]
        ground.regions -= set(letter_regions)
        for k in letter_regions:
            letters.of_region[k] = index
        free[np.isin(pool, letter_regions)] = False
        # Letters touching something of their own colour (a white suit in a photo) were joined to it:
        # inside the box, every pixel of the letters' colour is the word's.
        letter_rgb = (regions.means[letter_regions] * regions.areas[letter_regions][:, None]).sum(axis=0)
        letter_rgb /= regions.areas[letter_regions].sum()
        placed = word_box(rgb, box)
        assert placed is not None  # (regions lie inside the box: it covers pixels)
        rows, cols, inside_box, crop = placed
        pixels = np.zeros((height_px, width_px), bool)
        pixels[rows, cols] = inside_box & (channel_max(np.abs(crop - letter_rgb)) < 24.0)
        letters.pixels[index] = pixels
        letters.boxes[index] = (rows, cols)
    return letters


def is_word_ground(ring_share: float, ring_most: float) -> bool:
    """Whether a colour is a word's ground: the ring's own colour, the one most common there and on
    WORD_GROUND_RING of it at least (it runs on round the box), whatever its share of the box. A colour only
    crossing the ring (rules over and under a title, the next line's letters) is no ground, however common there
    for its share of the box: of the rest, the letters are the colour most confined to the box."""
    return ring_share >= max(ring_most, WORD_GROUND_RING)


def ring_shares(rgb: np.ndarray, box_px: np.ndarray, colors_rgb: list[np.ndarray]
                ) -> list[tuple[float, float]] | None:
    """For each colour, the share of a word box's pixels and of the ring just outside it (ring_pixels) within
    SAME_COLOR of it; None where the box or the ring covers no pixel."""
    found = box_and_ring(rgb, box_px)
    if found is None or not all(len(part) for part in found):
        return None
    pixels, ring = found
    return [(float((np.linalg.norm(pixels - color, axis=1) < SAME_COLOR).mean()),
             float((np.linalg.norm(ring - color, axis=1) < SAME_COLOR).mean())) for color in colors_rgb]


def word_rim_rgb(rgb: np.ndarray, box_px: np.ndarray) -> np.ndarray | None:
    """The median colour of a thin ring just outside a word box (the word's own ground), None at the canvas's
    edge or where the ring is not one colour (a word on a photo, across a shape's edge)."""
    found = box_and_ring(rgb, box_px, ring_share=0.1, whole_ring=True)
    if found is None or len(found[1]) == 0:
        return None
    ring = found[1]
    rim = np.median(ring, axis=0)
    if (np.abs(ring - rim).max(axis=1) < 0.5 * LETTER_CONTRAST).mean() < 0.9:
        return None
    return rim


def word_box(rgb: np.ndarray, box_px: np.ndarray) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
    """The word box's bounding rows and columns, within them the pixels inside the (maybe slanted) box, and the
    image there; None where it covers no pixel."""
    import cv2

    height_px, width_px = rgb.shape[:2]
    corners = np.rint(box_px).astype(np.int32).reshape(-1, 1, 2)
    # Filled inside the corners' box only (clipped to the canvas): shifting integer corners shifts the raster.
    x0, y0 = np.maximum(corners.reshape(-1, 2).min(axis=0), 0)
    x1, y1 = np.minimum(corners.reshape(-1, 2).max(axis=0) + 1, (width_px, height_px))
    if x1 <= x0 or y1 <= y0:
        return None
    box_mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(box_mask, [corners - (x0, y0)], 1)
    if not box_mask.any():
        return None
    rows, cols = bbox_slices(box_mask.astype(bool), 0)
    inside = box_mask[rows, cols].astype(bool)
    rows, cols = slice(rows.start + y0, rows.stop + y0), slice(cols.start + x0, cols.stop + x0)
    return rows, cols, inside, rgb[rows, cols]


def contrast_letters(rgb: np.ndarray, box_px: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(letter pixels, letter colour) inside a word box whose ground is one flat colour (the box's median colour;
    the pixels near it vary little): the pixels nearer the ink's colour than the ground's. None where the box
    is not ink on a flat ground (a word read on a photo, a box that is mostly ink)."""
    found = word_box(rgb, box_px)
    if found is None:
        return None
    rows, cols, inside, crop = found
    pixels = crop[inside]
    ground = np.median(pixels, axis=0)
    distance = np.abs(pixels - ground).max(axis=1)
    far = distance > LETTER_CONTRAST
    if not 0.03 <= far.mean() <= 0.6:
        return None
    near = distance < 0.5 * LETTER_CONTRAST
    if near.mean() < 0.3 or float(pixels[near].std(axis=0).max()) > 10.0:
        return None
    ink = np.median(pixels[far & (distance >= np.median(distance[far]))], axis=0)
    core = inside & (np.linalg.norm(crop - ink, axis=2) < np.linalg.norm(crop - ground, axis=2))
    if core.sum() < 12:
        return None
    mask = np.zeros(rgb.shape[:2], bool)
    mask[rows, cols] = core
    return mask, ink


def group_regions(regions: Regions, candidates: list[int], ground: Ground, letters: Letters,
                  region_boxes: RegionBoxes, element_residual: float) -> list[RegionGroup]:
    """The flat regions that are not ground, grouped by colour (and word), or by a gradient's colour model: a
    gradient-filled shape cut apart by a line over it continues on the other side in another colour, as the
    background does. Biggest region first."""
    height_px, width_px = regions.labels.shape

    def continues_gradient(lead: int, k: int) -> bool:
        (lead_rows, lead_cols), (rows, cols) = region_boxes[lead - 1], region_boxes[k - 1]
        reach_px = 0.05 * max(height_px, width_px)
        if (cols.start > lead_cols.stop + reach_px or lead_cols.start > cols.stop + reach_px
                or rows.start > lead_rows.stop + reach_px or lead_rows.start > rows.stop + reach_px):
            return False  # far away: a model extrapolated that far says nothing
        predicted = regions.features_mean[k] @ regions.coefs[lead]
        return bool(np.linalg.norm(predicted - regions.means[k]) < SAME_COLOR * 0.5)

    groups: list[RegionGroup] = []
    for k in sorted(candidates, key=lambda k: -regions.areas[k]):
        if k in ground.regions or regions.residuals[k] > element_residual:
            continue
        word = letters.of_region.get(k)
        for group in groups:
            if group.word == word and (np.linalg.norm(group.color - regions.means[k]) < SAME_COLOR
                                       or continues_gradient(group.regions[0], k)):
                group.regions.append(k)
                break
        else:
            groups.append(RegionGroup(word, regions.means[k].copy(), [k]))
    return groups


def group_elements(regions: Regions, groups: list[RegionGroup], ground: Ground, letters: Letters,
                   words: list[Word], region_boxes: RegionBoxes) -> tuple[list[Element], np.ndarray]:
    """One text or shape element per region group big enough to be one (or long: a rule on a flat page), and
    the pixels the ground and these elements take (bool H×W)."""
    labels = regions.labels
    height_px, width_px = labels.shape
    total = height_px * width_px
    all_letters = letters.all_pixels((height_px, width_px))
    bg_lookup = np.zeros(regions.count, bool)
    bg_lookup[list(ground.regions)] = True
    elements: list[Element] = []
    assigned = bg_lookup[labels] & ~all_letters
    checkpoint()
    # On a photo, flat-looking patches of the photo itself (highlights, shadows) must be bigger to count.
    min_fraction = MIN_ELEMENT_FRACTION if ground.region is not None else MIN_ELEMENT_FRACTION_ON_PHOTO
    for group in groups:
        checkpoint()
        lookup = np.zeros(regions.count, bool)
        lookup[group.regions] = True
        # Made inside the box its regions (and its word's letters) span: nothing of it lies outside, and a page
        # of many words has many groups.
        box = region_boxes[group.regions[0] - 1]
        for k in group.regions[1:]:
            box = union_box(box, region_boxes[k - 1])
        if group.word is not None:
            box = union_box(box, letters.boxes[group.word])
        mask = np.zeros((height_px, width_px), bool)
        if group.word is None:
            mask[box] = lookup[labels[box]] & ~all_letters[box]
        else:
            mask[box] = lookup[labels[box]] | letters.pixels[group.word][box]
        if np.count_nonzero(mask) < min_fraction * total and group.word is None and not (
                ground.region is not None and is_long(mask, LONG_ELEMENT * max(height_px, width_px))):
            continue
        areas = regions.areas[group.regions]
        color = (regions.means[group.regions] * areas[:, None]).sum(axis=0) / areas.sum()
        if group.word is not None:
            elements.append(Element(ElementKind.TEXT, mask, color, words[group.word].text))
        else:
            elements.append(Element(ElementKind.SHAPE, mask, color))
        assigned |= mask
    for word, color in letters.loose.items():
        mask = letters.pixels[word]
        elements.append(Element(ElementKind.TEXT, mask, color, words[word].text))
        assigned |= mask
    return elements, assigned


def photo_elements(rgb: np.ndarray, regions: Regions, ground: Ground, letters: Letters, elements: list[Element],
                   assigned: np.ndarray) -> tuple[Element, list[Element]]:
    """On a flat ground: the background element, and the photographs and textured blobs placed on it."""
    import cv2

    height_px, width_px = rgb.shape[:2]
    total = height_px * width_px
    bg_lookup = np.zeros(regions.count, bool)
    bg_lookup[list(ground.regions)] = True
    assert ground.region is not None
    background = Element(ElementKind.BACKGROUND, bg_lookup[regions.labels] & ~letters.all_pixels((height_px, width_px)),
                         regions.means[ground.region])
    background.regions = sorted(ground.regions)
    images: list[Element] = []
    # Photographs placed on the canvas (a product shot, a cut-out portrait) stay whole: a connected
    # non-background blob whose inside is mostly texture is one image, with the flat-looking patches in it
    # (a black watch face, a white reflection, its label's letters) and the holes it encloses.
    drawn = np.zeros((height_px, width_px), bool)
    for element in elements:
        drawn |= element.mask
    for blob in ground.photos:
        checkpoint()
        # The photograph is the texture in the blob with the holes it encloses (background-coloured
        # highlights in it are not background). Flat shapes and words on it stay elements of their own: a
        # badge placed on a photo looks like a flat patch of it.
        texture = blob & ~drawn
        # What is left of it besides the flat elements must still be solid: JPEG ringing around a shape is
        # texture too, but thin.
        solid = cv2.erode(texture.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        if np.count_nonzero(solid) < 0.5 * np.count_nonzero(texture):
            continue
        outline = filled(texture)
        photo = outline & ~drawn
        if np.count_nonzero(photo) < MIN_IMAGE_FRACTION * height_px * width_px or not shows_edge(rgb, photo):
            continue
        # Flat-looking parts of the picture itself (a watch's black screen and coloured strap in a product shot,
        # the backdrop of a portrait) lie inside its outline and carry its grain; graphics placed on it are exact
        # colour. The grained ones are the photo's.
        inside = [e for e in elements if e.kind in (ElementKind.SHAPE, ElementKind.TEXT)
                  and np.count_nonzero(e.mask & outline) >= 0.9 * e.area]
        for element in [e for e in inside if e.kind is ElementKind.SHAPE]:
            if grained(rgb, element.mask):
                photo |= element.mask
                elements.remove(element)
                inside.remove(element)
        # Text the reader finds inside a product shot (a watch's dial, a label on a bottle) is printed in the photo,
        # and so are small flat patches the photo surrounds (a white dial): the photo's own. Not where they lie on
        # a flat element of their own (the letters of an app icon placed over a textured backdrop).
        placed = np.zeros((height_px, width_px), bool)
        for element in inside:
            placed |= element.mask
        for element in inside:
            if element.area < 0.05 * np.count_nonzero(photo) and enclosed_by(element.mask, outline & ~placed):
                photo |= element.mask
                elements.remove(element)
        background.mask &= ~photo
        images.append(Element(ElementKind.IMAGE, photo, rgb[photo].mean(axis=0)))
        assigned |= photo
    # Textured blobs on a flat background: photos or cut-outs placed on the canvas.
    # Opening with a kernel ~3% of the short side drops the thin strips that anti-aliasing and JPEG ringing
    # leave along shape edges; a placed photo is much thicker than that.
    checkpoint()
    texture = open_mask(~assigned, max(5, int(0.03 * min(height_px, width_px)) | 1))
    checkpoint()
    count, blobs, stats, _ = cv2.connectedComponentsWithStats(texture.astype(np.uint8), connectivity=8)
    for k in range(1, count):
        if stats[k, cv2.CC_STAT_AREA] >= MIN_IMAGE_FRACTION * total:
            mask = blobs == k
            # A soft glow shading the ground (a blurred blob of colour) shows no edge anywhere around it: it is the
            # background's own shading, not a picture placed on it with an outline cut where none is seen.
            if not shows_edge(rgb, mask):
                continue
            images.append(Element(ElementKind.IMAGE, mask, rgb[mask].mean(axis=0)))
    return background, images


def ink_letters(rgb: np.ndarray, box_px: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(letter pixels, letter colour) of a word printed in one colour over a photo (white words over grass): a colour
    of the box (to 32 levels a channel) whose pixels are one tight colour, a good part of the box but not most of
    it, not running around the box's outline, and standing out from the rest of the box. None where no one colour
    does. Tried first: the colour most confined to the box (its share of the box less its share of the ring just
    outside: dark words over stripes of the photo's colours, which run on past the box); then the box's most common
    colour, or the next where that is as common in the ring (grass showing between big letters)."""
    import cv2

    found = word_box(rgb, box_px)
    if found is None:
        return None
    rows, cols, inside, crop = found
    pixels = crop[inside]
    codes = color_codes(pixels)
    counts = np.bincount(codes, minlength=512)
    common_code = int(counts.argmax())
    tries = []
    ring = ring_pixels(rgb, box_px)
    if ring is not None and len(ring):
        # The ground runs on outside the box, the letters do not: a colour as common in the ring just outside the
        # box as inside it is the ground (grass showing between big letters), and the next colour is the ink.
        outside = np.bincount(color_codes(ring), minlength=512) / len(ring)
        order = np.argsort(-counts)[:2]
        if outside[order[0]] >= counts[order[0]] / len(pixels) and counts[order[1]] > 0:
            common_code = int(order[1])
            logger.debug("ink letters: the most common colour is the ground's, the next is the ink")
        tries.append(int(np.argmax(counts / len(pixels) - outside)))
    if common_code not in tries:
        tries.append(common_code)
    # Letters lie inside their box: a colour running along most of the box's outline is the ground there.
    outline = inside & ~cv2.erode(inside.astype(np.uint8), np.ones((3, 3), np.uint8),
                                  borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
    for ink_code in tries:
        if counts[ink_code] == 0:
            continue
        ink = np.median(pixels[codes == ink_code], axis=0)
        near = np.abs(pixels - ink).max(axis=1) < INK_LETTERS_NEAR
        if (not INK_LETTERS_SHARE[0] <= near.mean() <= INK_LETTERS_SHARE[1]
                or float(pixels[near].std(axis=0).max()) > INK_LETTERS_SPREAD):
            continue
        if float(np.abs(np.median(pixels[~near], axis=0) - ink).max()) < LETTER_CONTRAST:
            continue
        core = inside & (channel_max(np.abs(crop - ink)) < INK_LETTERS_NEAR)
        if core[outline].mean() > INK_LETTERS_OUTLINE:
            continue
        mask = np.zeros(rgb.shape[:2], bool)
        mask[rows, cols] = core
        return mask, ink
    return None


def color_codes(pixels: np.ndarray) -> np.ndarray:
    """Each pixel's colour to 32 levels a channel, as one code 0–511."""
    bins = (np.clip(pixels, 0, 255) // 32).astype(np.int64)
    return (bins[:, 0] * 8 + bins[:, 1]) * 8 + bins[:, 2]


def ring_pixels(rgb: np.ndarray, box_px: np.ndarray) -> np.ndarray | None:
    """The pixels of a ring just outside a word box (WORD_RING of its height wide, two pixels at least), inside
    the canvas; None where the box covers no pixel."""
    found = box_and_ring(rgb, box_px)
    return None if found is None else found[1]


def box_and_ring(rgb: np.ndarray, box_px: np.ndarray, ring_share: float = WORD_RING, whole_ring: bool = False
                 ) -> tuple[np.ndarray, np.ndarray] | None:
    """The pixels inside a word box and those of the ring just outside it (``ring_share`` of the box's height
    wide, two pixels at least; cut off at the canvas's edge), from one crop round the box; None where the crop is
    empty, or, with ``whole_ring``, where the ring would leave the canvas."""
    import cv2

    height_px, width_px = rgb.shape[:2]
    x0, y0 = np.floor(box_px.min(axis=0)).astype(int)
    x1, y1 = np.ceil(box_px.max(axis=0)).astype(int)
    pad_px = max(2, round(ring_share * (y1 - y0)))
    if whole_ring and (x0 - pad_px < 0 or y0 - pad_px < 0 or x1 + pad_px >= width_px or y1 + pad_px >= height_px):
        return None
    left, top = max(0, x0 - pad_px), max(0, y0 - pad_px)
    right, bottom = min(width_px, x1 + pad_px + 1), min(height_px, y1 + pad_px + 1)
    if right <= left or bottom <= top:
        return None
    crop = rgb[top:bottom, left:right]
    box_mask = np.zeros(crop.shape[:2], np.uint8)
    cv2.fillPoly(box_mask, [np.rint(box_px - (left, top)).astype(np.int32).reshape(-1, 1, 2)], 1)
    grown = cv2.dilate(box_mask, np.ones((2 * pad_px + 1, 2 * pad_px + 1), np.uint8))
    return crop[box_mask > 0], crop[(grown > 0) & (box_mask == 0)]


def grained(rgb: np.ndarray, mask: np.ndarray) -> bool:
    """Whether the patch's core (5 px in from its outline) varies by PHOTO_GRAIN or more: a photo's grain, not a
    placed graphic's exact colour."""
    import cv2

    core = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    return bool(core.any() and float(rgb[core].std(axis=0).max()) >= PHOTO_GRAIN)


def shows_edge(rgb: np.ndarray, mask: np.ndarray) -> bool:
    """Whether the blob's outline can be seen somewhere: along it, a tenth of its rim pixels at least differ by
    EDGE_STEP or more from the nearest pixel a soft-edge band outside it."""
    import cv2

    box = bbox_slices(mask, 2 * BAND_PX + 2)
    crop = mask[box].astype(np.uint8)
    rim = crop.astype(bool) & ~cv2.erode(crop, np.ones((3, 3), np.uint8)).astype(bool)
    beyond = ~cv2.dilate(crop, disc(BAND_PX + 1)).astype(bool)
    if not rim.any() or not beyond.any():
        return True
    beyond_at, _ = nearest_pixel(beyond)
    crop_rgb = rgb[box].reshape(-1, 3)
    at = np.flatnonzero(rim.ravel())
    jump = np.abs(crop_rgb[at] - crop_rgb[beyond_at(at)]).max(axis=1)
    return bool(np.percentile(jump, 90) >= EDGE_STEP)


def enclosed_by(mask: np.ndarray, outline: np.ndarray) -> bool:
    """Whether the outline surrounds the mask: nearly all of a ring around the mask's box (a quarter of the box's
    height wide) lies inside it."""
    rows, cols = bbox_slices(mask, 0)
    pad_px = max(2, round(0.25 * (rows.stop - rows.start)))
    outer = bbox_slices(mask, pad_px)
    ring = np.ones(outline[outer].shape, bool)
    ring[rows.start - outer[0].start:rows.stop - outer[0].start,
         cols.start - outer[1].start:cols.stop - outer[1].start] = False
    return bool(ring.any() and outline[outer][ring].mean() >= 0.6)
