# SPDX-License-Identifier: GPL-3.0-or-later
"""Step 4, photo tiles: rectangular photographs laid out on the canvas (a grid of photos, a picture in a page),
each kept whole as one image element."""

from __future__ import annotations

import numpy as np

from .cancel import checkpoint
from .elements import Element, ElementKind, set_mask
from .masks import side_strips
from .regions import Regions
from .tuning import (
    EDGE_STEP,
    MIN_IMAGE_FRACTION,
    PHOTO_ELEMENT_RESIDUAL,
    SAME_COLOR,
    SEAM_MIN_PIECE_PX,
    SEAM_PAGE_PLAIN,
    SEAM_PAGE_TEXTURE,
    SEAM_REACH_PX,
    SEAM_SHARE,
    SEAM_TILE_TEXTURE,
    TILE_COLORS,
    TILE_DOMINANT,
    TILE_RIM_PAGE,
    TILE_TEXTURE,
)

MAX_CUT_DEPTH = 6  # a grid of grids is deep enough


def find_photo_tiles(rgb: np.ndarray, regions: Regions,
                     cut_seams: bool = True) -> tuple[list[tuple[slice, slice]], np.ndarray]:
    """(boxes (rows, cols) of the rectangular photographs on the canvas, the page's colour). The canvas is cut
    along gutters (rows or columns of the page's colour all along: the page between the photos) into boxes,
    recursively (an XY cut); the boxes that are photographs to their edge (``is_photo_box``) are tiles. The whole
    canvas is no tile (a photo is not placed on itself). With ``cut_seams``, a box no gutter cuts that is not one
    photo is cut at its seams (``seams``): a photo placed edge to edge with a flat page (a cover's picture half
    beside its lettered half). Not on an RGBA input: against its see-through surround a cut-out's straight edge
    looks like one."""
    height_px, width_px = rgb.shape[:2]
    min_area = max(MIN_IMAGE_FRACTION * height_px * width_px, 256)
    tiles: list[tuple[slice, slice]] = []

    # The page's colour: that of the rows and columns running across the whole canvas in one colour (the outer
    # gutters). Only lines of that colour cut: a dark photo's columns are one colour too.
    whole = (slice(0, height_px), slice(0, width_px))
    rgb_u8 = np.clip(rgb, 0, 255).astype(np.uint8)
    row_lines = np.flatnonzero(line_spans(rgb_u8, 0) <= EDGE_STEP)
    col_lines = np.flatnonzero(line_spans(rgb_u8, 1) <= EDGE_STEP)
    if row_lines.size or col_lines.size:
        means = [rgb[row_lines].mean(axis=1), rgb[:, col_lines].mean(axis=0)]
        page_rgb = np.median(np.concatenate([m.reshape(-1, 3) for m in means]), axis=0)
        page = (np.abs(rgb - page_rgb) <= EDGE_STEP).all(axis=2)
    else:
        # No gutter runs across the canvas: photos meet the page (or one another) at seams only. No page colour
        # then: its nearest stand-in is the canvas's rim.
        page_rgb = np.median(np.concatenate([side.reshape(-1, 3) for side in side_strips(rgb, 1)]), axis=0)
        page = np.zeros((height_px, width_px), bool)

    def uniform(rows: slice, cols: slice, axis: int) -> np.ndarray:
        """Per row (axis 0) or column (axis 1) of the box: whether it is page colour all along (a gutter)."""
        return page[rows, cols].all(axis=1 - axis)

    canvas_px = height_px * width_px

    def on_page(tile: tuple[slice, slice]) -> bool:
        """Whether a tile met at a seam is a photo placed on a page: the canvas's rim outside it is (nearly) free
        of texture (a photo backdrop cut by a band across it goes on along the rim beside what is set on it) and
        of one colour, SEAM_PAGE_PLAIN of it within EDGE_STEP of its median (a photo's smooth sky is no page), and
        the tile is a photo throughout, SEAM_TILE_TEXTURE of it texture at least (a table's column of logos and
        portraits on white cells has the colours, with its cells' ground between them)."""
        # The rim is built here, not per image: only a box cut at a seam is ever asked.
        outside = np.zeros((height_px, width_px), bool)
        outside[:3] = outside[-3:] = outside[:, :3] = outside[:, -3:] = True
        outside[tile] = False
        if outside.any():
            if float(regions.texture[outside].mean()) >= SEAM_PAGE_TEXTURE:
                return False
            rim_rgb = rgb[outside]
            off = np.abs(rim_rgb - np.median(rim_rgb, axis=0)).max(axis=1)
            if float((off <= EDGE_STEP).mean()) < SEAM_PAGE_PLAIN:
                return False
        return float(regions.texture[tile].mean()) >= SEAM_TILE_TEXTURE

    def cut(rows: slice, cols: slice, depth: int, seamed: bool = False) -> None:
        checkpoint()
        if (rows.stop - rows.start) * (cols.stop - cols.start) < min_area:
            return
        # Trim the margins (gutters at the box's ends) first.
        row_runs = false_runs(uniform(rows, cols, 0))
        if not row_runs:
            return
        rows = slice(rows.start + row_runs[0][0], rows.start + row_runs[-1][1])
        col_runs = false_runs(uniform(rows, cols, 1))
        if not col_runs:
            return
        cols = slice(cols.start + col_runs[0][0], cols.start + col_runs[-1][1])
        row_runs = false_runs(uniform(rows, cols, 0))
        if depth < MAX_CUT_DEPTH and len(row_runs) > 1:
            for a, b in row_runs:
                cut(slice(rows.start + a, rows.start + b), cols, depth + 1, seamed)
            return
        col_runs = false_runs(uniform(rows, cols, 1))
        if depth < MAX_CUT_DEPTH and len(col_runs) > 1:
            for a, b in col_runs:
                cut(rows, slice(cols.start + a, cols.start + b), depth + 1, seamed)
            return
        box_px = (rows.stop - rows.start) * (cols.stop - cols.start)
        photo = box_px >= min_area and is_photo_box(rgb, regions, page, rows, cols)
        if photo and box_px < 0.9 * canvas_px:
            tiles.append((rows, cols))
            return
        if seamed or not cut_seams or depth >= MAX_CUT_DEPTH:
            return
        # No gutter, and not one photo (or the whole canvas): a photo placed edge to edge with the page, bleeding
        # off the canvas on its other sides, meets the page at a seam, a straight sharp step running across the
        # box. Cut there, once (a photo's own straight edges are not cut again), along the axis of the clearest seams
        # that give a photo on the page.
        found = [(axis, seams(rgb[rows, cols], axis)) for axis in (0, 1)]
        for axis, cuts in sorted(found, key=lambda item: -max((share for share, _ in item[1]), default=0.0)):
            if not cuts:
                break
            span = rows if axis == 0 else cols
            bounds = [span.start] + [span.start + c for _, c in cuts] + [span.stop]
            before = len(tiles)
            for a, b in zip(bounds[:-1], bounds[1:], strict=True):
                if axis == 0:
                    cut(slice(a, b), cols, depth + 1, True)
                else:
                    cut(rows, slice(a, b), depth + 1, True)
            # One photo, placed on a page: the only piece that is a photo, and the canvas's rim outside it flat.
            # Photos on both sides of a seam are one photo backdrop cut by a band across it, or photos edge to
            # edge (a row of them, measured, came apart worse than whole: a straight edge inside a photo looks the
            # same), though the backdrop's part is too big to be a tile; a smooth sky on the rim is no page either.
            pieces = tiles[before:]
            boxes = [(slice(a, b), cols) if axis == 0 else (rows, slice(a, b))
                     for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
            alone = len(pieces) == 1 and sum(is_photo_box(rgb, regions, page, *box) for box in boxes) == 1
            tiles[before:] = pieces if alone and on_page(pieces[0]) else []
            if len(tiles) > before:
                break  # else the other axis's seams (a label's edge across the page and the photo cuts both)

    cut(*whole, 0)
    return tiles, page_rgb


def false_runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of False in ``flags`` as [start, stop): the content between gutters, or (of the negated flags)
    the lines a seam runs along."""
    edges = np.flatnonzero(np.diff(np.concatenate([[True], flags, [True]]).astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def seams(crop: np.ndarray, axis: int) -> list[tuple[float, int]]:
    """Where a box is cut by a seam across it: rows (axis 0) or columns (axis 1) at which, on SEAM_SHARE of the
    lines across them at least, a colour step over EDGE_STEP is the strongest step within SEAM_REACH_PX (a photo's
    own edges wander, or have stronger texture beside them). (share, position) per run of such lines, at its
    strongest, in order; none within SEAM_MIN_PIECE_PX of the box's ends (a frame's rim is no photo) or of another
    (a rule drawn across)."""
    import cv2

    if axis == 0:
        crop = crop.transpose(1, 0, 2)
    length = crop.shape[1]
    if length < 2 * SEAM_MIN_PIECE_PX or crop.shape[0] < SEAM_MIN_PIECE_PX:
        return []
    step = np.zeros(crop.shape[:2], np.float32)
    # Across two pixels: an anti-aliased edge spreads its step over a blend pixel.
    step[:, 1:-1] = np.abs(crop[:, 2:] - crop[:, :-2]).max(axis=2)
    near = cv2.dilate(step, np.ones((1, 3), np.uint8))
    wide = cv2.dilate(step, np.ones((1, 2 * SEAM_REACH_PX + 1), np.uint8))
    share = ((near > EDGE_STEP) & (near >= wide)).mean(axis=0)
    share[:SEAM_MIN_PIECE_PX] = share[length - SEAM_MIN_PIECE_PX:] = 0.0
    found = [(float(share[a:b].max()), int(a + np.argmax(share[a:b]))) for a, b in false_runs(share < SEAM_SHARE)]
    # Two steps closer than a tile's width are the sides of a rule or a band drawn across, not a seam.
    positions = [position for _, position in found]
    return [(share_, position) for share_, position in found
            if all(other == position or abs(other - position) >= SEAM_MIN_PIECE_PX for other in positions)]


def line_spans(rgb_u8: np.ndarray, axis: int) -> np.ndarray:
    """Per row (axis 0) or column (axis 1): its colour span (max over channels of max − min along it)."""
    import cv2

    if axis == 0:
        # numpy reduces a row's pixels with an inner loop over the three channels (a tenth of a second at 1024²);
        # OpenCV's per-row reduction gives the same maxima and minima.
        high = cv2.reduce(np.ascontiguousarray(rgb_u8), 1, cv2.REDUCE_MAX).reshape(-1, 3)
        low = cv2.reduce(np.ascontiguousarray(rgb_u8), 1, cv2.REDUCE_MIN).reshape(-1, 3)
        return (high.astype(np.int16) - low).max(axis=-1)
    return (rgb_u8.max(axis=1 - axis).astype(np.int16) - rgb_u8.min(axis=1 - axis)).max(axis=-1)


def is_photo_box(rgb: np.ndarray, regions: Regions, page: np.ndarray, rows: slice, cols: slice) -> bool:
    """A photograph to the box's edge: along each side, little of the page's colour (a cut-out on a page touches
    its box at a few points only); inside, some texture and many colours (a flat card with a gradient has the
    colours, not the texture), and no big region flat to the noise level (a panel of text has its ground).
    ``page``: where the canvas shows the page's colour (``find_photo_tiles``' map)."""
    crop = rgb[rows, cols]
    if min(crop.shape[:2]) < 16:
        return False
    on_page = page[rows, cols]
    rim_px = 3
    if any(side.mean() > TILE_RIM_PAGE for side in side_strips(on_page, rim_px)):
        return False
    if regions.texture[rows, cols].mean() < TILE_TEXTURE:
        return False
    # Colours at 5 bits a channel; a bin counts when it holds 0.2 % of the box or more.
    bins = (np.clip(crop, 0, 255).astype(np.int32) >> 3) @ np.array([1024, 32, 1])
    counts = np.bincount(bins.ravel(), minlength=32768)
    if int((counts >= 0.002 * bins.size).sum()) < TILE_COLORS:
        return False
    # A panel of text and line art has the colours and the texture (every letter's edge), but one flat region, its
    # ground, covers much of it, flat to the noise level; a photo's sky is grainy.
    labels = regions.labels[rows, cols]
    areas = np.bincount(labels.ravel(), minlength=regions.count)
    areas[0] = 0
    biggest = int(np.argmax(areas))
    return not (areas[biggest] > TILE_DOMINANT * labels.size and regions.residuals[biggest] < PHOTO_ELEMENT_RESIDUAL)


def tile_elements(rgb: np.ndarray, background: Element, elements: list[Element],
                  tiles: list[tuple[slice, slice]], page_rgb: np.ndarray) -> list[Element]:
    """The elements with one image element per photo tile. Flat patches of a photo (a black sky, a white
    highlight) that the region step found as shapes go back into their photo, and so do images found inside it;
    text and shapes drawn over the photo (not reaching its edge) stay elements of their own, above it."""
    height_px, width_px = rgb.shape[:2]
    kept = list(elements)
    for rows, cols in tiles:
        checkpoint()
        tile = np.zeros((height_px, width_px), bool)
        tile[rows, cols] = True
        inner = np.zeros_like(tile)
        inner[rows.start + 2:rows.stop - 2, cols.start + 2:cols.stop - 2] = True
        photo = tile.copy()
        remaining = []
        for element in kept:
            inside = float((element.mask & tile).sum()) / max(element.area, 1)
            patch = element.kind is not ElementKind.TEXT and inside > 0.9 and (
                element.kind is ElementKind.IMAGE or (element.mask & ~inner).any())
            if patch:
                continue
            if element.kind is not ElementKind.TEXT and inside > 0:
                set_mask(element, element.mask & ~tile)
                if element.area == 0:
                    continue
            photo &= ~element.mask
            remaining.append(element)
        kept = remaining
        background.mask &= ~photo
        image = Element(ElementKind.IMAGE, photo, rgb[photo].mean(axis=0) if photo.any() else rgb.mean(axis=(0, 1)))
        image.hull = tile
        kept.append(image)
    if not background.regions:
        # No flat ground was found (the page shows only in thin gutters between the photos, too little to be a
        # ground): the page-coloured shapes reaching the canvas's edge are the background, and the fill fits its
        # colour model (label 0 stands for "no region of its own") instead of inpainting photo texture under them.
        edge = np.zeros(background.mask.shape, bool)
        edge[[0, -1], :] = edge[:, [0, -1]] = True
        page = [e for e in kept if e.kind is ElementKind.SHAPE and (e.mask & edge).any()
                and np.linalg.norm(e.color_rgb - page_rgb) < 0.5 * SAME_COLOR]
        for element in page:
            background.mask |= element.mask
        kept = [e for e in kept if not any(e is p for p in page)]
        if page:
            background.regions = [0]
            background.color_rgb = np.asarray(page_rgb, np.float64)
    return [element for element in kept if element.area > 0]
