# SPDX-License-Identifier: GPL-3.0-or-later
"""Step 7, peel: an element's straight RGBA layer (alpha in a soft-edge band, completion, colour)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cancel import checkpoint
from .elements import Element, ElementKind, owner_map
from .masks import bbox_slices, disc, filled, nearest_pixel
from .regions import channel_max
from .tuning import BAND_PX, MIN_REGION_FRACTION, RIM_OFF_LINE, SAME_COLOR


def nearest_colors(rgb: np.ndarray, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every pixel: the colour of the nearest ``source`` pixel and the distance to it (px). ``rgb``: H×W×3,
    contiguous."""
    if not source.any():
        return np.zeros_like(rgb), np.full(source.shape, np.inf, np.float32)
    nearest_at, distance = nearest_pixel(source)
    return pixels_at(rgb, nearest_at(slice(None))).reshape(rgb.shape), distance


def pixels_at(rgb: np.ndarray, flat_indices: np.ndarray) -> np.ndarray:
    """The colours (N×3) of a contiguous H×W×3 image at flat pixel indices. (np.take: the same rows as indexing
    with the array, twice as fast.)"""
    return np.take(rgb.reshape(-1, 3), flat_indices, axis=0)


# Where F and B are nearly the same colour (squared distance under this) a pixel's place between them is noise.
DISTINCT_SQ = 15.0 ** 2


def on_line(i: np.ndarray, f: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colours ``i`` (N×3) seen as mixes of ``f`` (share 1) and ``b`` (share 0): each one's share of ``f`` along the
    line (unclipped), the steps f − b and their squared lengths."""
    fb = f - b
    denom = (fb * fb).sum(axis=1)
    return ((i - b) * fb).sum(axis=1) / np.maximum(denom, 1e-6), fb, denom


def counters(crop_rgb: np.ndarray, crop_core: np.ndarray, element: Element, loose: np.ndarray) -> np.ndarray:
    """The counters of small letters on a shape (the green inside an 'a' or an 'o' on a green button): too small
    to be regions, they belong to nothing and would show as letter-shaped holes in the shape. Small pieces of the
    shape's colour in the holes of its core that nothing owns. (Holes only: a gap between two pieces of one
    colour is no counter.)"""
    import cv2

    holes = filled(crop_core) & ~crop_core & loose
    if not holes.any():
        return holes
    holes &= channel_max(np.abs(crop_rgb - element.color_rgb.astype(np.float32))) < 0.5 * SAME_COLOR
    max_piece_px = 4 * max(6, int(MIN_REGION_FRACTION * element.mask.size))  # a region's least size, and its rim
    count, pieces = cv2.connectedComponents(holes.astype(np.uint8), connectivity=8)
    sizes = np.bincount(pieces.ravel(), minlength=count)
    sizes[0] = 0
    return holes & (sizes <= max_piece_px)[pieces]


@dataclass
class Claims:
    """Who owns which pixel: every element's core (its 1-based index in ``cores``, 0 = none), each core's colour,
    and the pixels that nothing owns (neither an element nor the background)."""

    cores: np.ndarray  # int32 H×W
    colors_rgb: np.ndarray  # (elements + 1)×3, row 0 unused
    loose: np.ndarray  # bool H×W
    photo: np.ndarray  # bool H×W: photographs' pixels (image elements, a photo background)

    @classmethod
    def of(cls, elements: list[Element], background: Element) -> Claims:
        cores = owner_map(elements, background.mask.shape)
        colors = np.zeros((len(elements) + 1, 3))
        for index, element in enumerate(elements, start=1):
            colors[index] = element.color_rgb
        photo = np.zeros_like(background.mask) if background.regions else background.mask.copy()
        for element in elements:
            if element.kind is ElementKind.IMAGE:
                photo |= element.mask
        return cls(cores, colors, (cores == 0) & ~background.mask, photo)


def own_color_at(shows: np.ndarray, covering: np.ndarray) -> np.ndarray:
    """Where a layer carries its element's own (nearest) colour under zero alpha: in a one-pixel rim around what
    shows (a soft edge resampled in straight alpha then does not pick up another colour), and under the elements
    in front of it, where it may go on hidden (a pattern under a disc laid on it, a shape's corner under another).
    Everywhere else, past the rim, it carries the input's colour: in the gaps between its pieces (the white modules
    of a QR code, the space between words) and around its outer edge. That is what a viewer that ignores alpha
    shows, and most often what a designer's layer holds there when it holds anything (LayerD's RGB L1 is taken
    over the truth's mask): the card or the page a shape's pieces sit on, the outline round a word, the margin of a
    code, exactly; a feathered edge fainter than the band's alpha is the one place the own colour would be nearer,
    and on the real sets it weighs less (main, held-out and fresh: L1 lower at both edit levels)."""
    import cv2

    rim = cv2.dilate(shows.astype(np.uint8), disc(1)).astype(bool)
    return rim | covering


def blank_layer(rgb_u8: np.ndarray) -> np.ndarray:
    """The layer every element's starts from: the input's colour (``rgb``, as it shows) under alpha 0. Colour under
    zero alpha away from the element: it is never seen in the composite, but it is what a viewer or an editor that
    ignores alpha shows, what a merge with the layer below keeps (Pillow's alpha_composite keeps the lower colour
    under alpha 0), and it does not bleed black when resampled. (Made once and copied per element: writing three of
    four channels costs twenty times a copy.)"""
    blank = np.zeros(rgb_u8.shape[:2] + (4,), np.uint8)
    blank[..., :3] = rgb_u8
    return blank


def peel(rgb: np.ndarray, blank: np.ndarray, element: Element, covering: np.ndarray,
          alpha_in: np.ndarray, claims: Claims, index: int) -> tuple[np.ndarray, tuple[slice, slice]]:
    """The element's straight RGBA layer (full size) and the box (row and column slices) outside which its alpha is
    0; ``blank`` is ``blank_layer`` of the input; ``claims``: what the other elements own (``index``: this element's
    number there), which its soft edge does not take."""
    import cv2

    rgba = blank.copy()
    core = element.mask
    # Work inside the element's bounding box plus a margin; the colour outside it is the nearest colour anyway.
    box = bbox_slices(element.hull, BAND_PX + 2)
    crop_rgb, crop_core = np.ascontiguousarray(rgb[box]), core[box]  # (its colours are looked up by flat index)
    translucent = element.opacity < 1.0
    if translucent:
        # Its pieces (over different things) are one sheet: close the seams between them, one colour throughout.
        closing = disc(3)
        crop_core = cv2.morphologyEx(crop_core.astype(np.uint8), cv2.MORPH_CLOSE, closing).astype(bool)
        near_f = np.broadcast_to(element.color_rgb.astype(np.float32), crop_rgb.shape)
        core_distance_px = np.zeros(crop_core.shape, np.float32)  # (unused: no edge split for translucent sheets)
    else:
        near_f, core_distance_px = nearest_colors(crop_rgb, crop_core)
    # The core's outermost pixels are often the anti-aliased edge itself (all of small text is): their colour
    # is the ink mixed with what lies under it. Where the core has an inside (past its rim), the soft edge and
    # the rim take the nearest inside colour, the ink's, with the alpha of the colour line below.
    rim = np.zeros(crop_core.shape, bool)
    thin = False
    inked = not translucent and element.kind in (ElementKind.SHAPE, ElementKind.TEXT)
    if inked:
        inside = cv2.erode(crop_core.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        rim = crop_core & ~inside
        thin = bool(np.count_nonzero(inside) < np.count_nonzero(rim))
        if thin:
            rim = crop_core.copy()  # (small text, hairlines): all of it is edge, its inside no purer than its rim
        else:
            near_f = nearest_colors(crop_rgb, inside)[0]
    checkpoint()
    kernel = disc(BAND_PX)
    grown = cv2.dilate(crop_core.astype(np.uint8), kernel).astype(bool)
    band = grown & ~crop_core
    outside = ~grown
    alpha = crop_core.astype(np.float32)
    if band.any() and outside.any():
        nearest_outside, _ = nearest_pixel(outside)
        checkpoint()
        if rim.any():
            rim_b = pixels_at(crop_rgb, nearest_outside(np.flatnonzero(rim.ravel())))  # the ground next to the rim
            if thin:
                # A thin element's ink: the mean of its pixels that stand out most from the ground (their tenth).
                away = np.linalg.norm(crop_rgb[rim] - rim_b, axis=1)
                near_f = np.broadcast_to(crop_rgb[rim][away >= np.percentile(away, 90)].mean(axis=0),
                                         crop_rgb.shape)
        f = near_f[band].astype(np.float32)
        b = pixels_at(crop_rgb, nearest_outside(np.flatnonzero(band.ravel()))).astype(np.float32)  # (band only)
        i = crop_rgb[band].astype(np.float32)
        projected, _, denom = on_line(i, f, b)
        # Where F and B are nearly the same colour: decide by distance instead.
        fallback = (np.linalg.norm(i - f, axis=1) < np.linalg.norm(i - b, axis=1)).astype(np.float32)
        alpha[band] = np.where(denom > DISTINCT_SQ, np.clip(projected, 0.0, 1.0), fallback)
        if rim.any():
            # No soft rim next to a photograph (the mix would be with texture, which then shows in the layer below)
            # nor on the canvas's edge (a shape running off the canvas is cut there, not anti-aliased).
            hard = cv2.dilate(claims.photo[box].astype(np.uint8), kernel).astype(bool)
            rows, cols = np.ogrid[box[0], box[1]]
            hard |= (rows == 0) | (rows == rgb.shape[0] - 1) | (cols == 0) | (cols == rgb.shape[1] - 1)
            # The rim: fractional only where it lies on the colour line (a mix of F and B, not a third colour).
            b = rim_b.astype(np.float32)
            i = crop_rgb[rim].astype(np.float32)
            f = near_f[rim].astype(np.float32)
            share, fb, denom = on_line(i, f, b)
            projected = np.clip(share, 0.0, 1.0)
            off_line = np.linalg.norm(i - (b + projected[:, None] * fb), axis=1)
            mixed = (denom > DISTINCT_SQ) & (off_line < RIM_OFF_LINE) & ~hard[rim]
            alpha[rim] = np.where(mixed, projected, 1.0)
            rim[rim] = mixed  # (the rest keeps its own colour)
    elif band.any():
        alpha[band] = 1.0
    # Two layers should not both hold a pixel (LayerD's scoring, and an editor's eye, see faint alpha of one
    # layer over another as overlap): between two elements of one colour (the words of a phrase, side by side
    # or with overlapping boxes) the other's core is the other's, and each takes the edge pixels nearer its own
    # core. (Other elements' cores stay under a soft edge: a feathered cut-out over a shape keeps its edge.)
    crop_cores = claims.cores[box]
    others = (crop_cores > 0) & (crop_cores != index)
    # (Each core's colour distance once, then looked up per pixel: the same numbers as per pixel.)
    similar = others & (np.linalg.norm(claims.colors_rgb - element.color_rgb, axis=1) < SAME_COLOR)[crop_cores]
    alpha[band & similar] = 0.0
    if similar.any() and not translucent:
        other_distance_px = cv2.distanceTransform((~similar).astype(np.uint8), cv2.DIST_L2, 5)
        alpha[band & (other_distance_px < core_distance_px)] = 0.0
    if translucent:
        # Over B the observed colour is B + a·(F − B): the projection already is the alpha, up to the opacity.
        alpha = np.minimum(alpha, element.opacity)
    # Complete the element under what covers it, inside its own hulls.
    completion = element.hull[box] & covering[box] & ~crop_core
    alpha[completion] = element.opacity
    if element.kind is ElementKind.SHAPE and not element.glyph_like and not translucent:
        alpha[counters(crop_rgb, crop_core, element, claims.loose[box])] = 1.0
    # A layer is never more opaque than the input there (RGBA inputs).
    alpha = np.minimum(alpha, alpha_in[box])
    out = np.zeros(crop_rgb.shape[:2] + (4,), np.uint8)
    own = own_color_at(alpha > 0, covering[box])
    if inked:
        own &= ~crop_core | rim  # (a core pixel's own colour is itself; only the mixed rim's is the ink's)
    out[..., :3] = np.where(own[..., None], np.clip(np.rint(near_f), 0, 255), crop_rgb).astype(np.uint8)
    out[..., 3] = np.clip(np.rint(alpha * 255.0), 0, 255).astype(np.uint8)
    rgba[box] = out
    return rgba, box
