# SPDX-License-Identifier: GPL-3.0-or-later
"""Step 4, what lies on a photo: the boxes its words are set in (buttons), pictures placed on it (closed sharp outlines
the ground goes on around), then its subject (colour contrast to the border with a centre prior seeds grabCut)."""

from __future__ import annotations

import numpy as np

from .cancel import checkpoint
from .elements import Element, ElementKind, covered, set_hull
from .masks import bbox_slices, disc, filled, hull_mask, luminance, side_strips
from .regions import Regions
from .tuning import (
    ELEMENT_RESIDUAL,
    LABEL_BOX_RIM_PX,
    LABEL_BOX_SNUG,
    LABEL_BOX_SOLID,
    LABEL_BOX_WIDTH,
    PICTURE_EDGE_TEXTURE,
    PICTURE_FILL_RATIO,
    PICTURE_FREE,
    PICTURE_GROUND_GRAIN,
    PICTURE_GROUND_INSIDE,
    PICTURE_GROUND_LAB,
    PICTURE_GROUND_RING,
    PICTURE_MAX_SHARE,
    PICTURE_MAX_SIDE_PX,
    PICTURE_MIN_SHARE,
    PICTURE_SOLIDITY,
    SUBJECT_MAX_SIDE_PX,
    SUBJECT_WORDS_INSIDE,
)


def find_label_boxes(regions: Regions, elements: list[Element]) -> list[Element]:
    """The boxes words are set in on a photo (a "Play now!" button on a hero picture): a designer draws the button
    as a shape of its own under its label. A smooth region (its colour model explains it to ELEMENT_RESIDUAL: a
    flat or glossy gradient fill, which on a photo the stricter PHOTO_ELEMENT_RESIDUAL leaves in the photo) whose
    filled outline holds a word's letters, snug round the word (at most LABEL_BOX_SNUG times the word's box: a
    sky holding a title is far bigger), solid (filling LABEL_BOX_SOLID of its bounding box at least: a rectangle
    or pill, not a patch of the photo), clear of the canvas's edges and narrower than LABEL_BOX_WIDTH of it (a
    band across the picture under a heading is the backdrop's). The word becomes a mark on it."""
    import cv2

    labels = regions.labels
    height_px, width_px = labels.shape
    taken = covered(elements, labels.shape)
    boxes: list[Element] = []
    margin_px = max(4, round(0.02 * max(height_px, width_px)))
    for word in elements:
        if word.kind is not ElementKind.TEXT or word.host is not None or not word.area:
            continue
        checkpoint()
        rows, cols = bbox_slices(word.mask, 0)
        word_box_px = (rows.stop - rows.start) * (cols.stop - cols.start)
        pad_px = max(2, (rows.stop - rows.start) // 2)
        around = labels[max(rows.start - pad_px, 0):rows.stop + pad_px, max(cols.start - pad_px, 0):cols.stop + pad_px]
        ids, counts = np.unique(around[around > 0], return_counts=True)
        for k in ids[np.argsort(-counts)][:3].tolist():
            if regions.touches_border[k] or regions.residuals[k] > ELEMENT_RESIDUAL:
                continue
            if regions.areas[k] > LABEL_BOX_SNUG * word_box_px:
                continue
            region = labels == k
            if (region & taken).any():
                continue  # some element's already
            # The band the letters run through is often all edge pixels (the letters' shadow, a gloss's step):
            # the box is the region and the word's box, filled.
            spanned = region.copy()
            spanned[rows, cols] = True
            box = bbox_slices(spanned, 0)
            solid = filled(spanned[box])
            solid_px = int(np.count_nonzero(solid))
            if solid_px > LABEL_BOX_SNUG * word_box_px or solid_px < LABEL_BOX_SOLID * solid.size:
                continue
            # A button sits on the picture, clear of its edges; a band running (nearly) across the canvas is a
            # part of the backdrop.
            if (min(box[0].start, box[1].start, height_px - box[0].stop, width_px - box[1].stop) < margin_px
                    or box[1].stop - box[1].start > LABEL_BOX_WIDTH * width_px):
                continue
            if np.count_nonzero(region[box]) < 0.5 * (solid_px - word_box_px):
                continue  # mostly edge pixels round the word: no fill of one colour model
            # A box round the word: the region shows above and below it and on both sides.
            if not (region[:rows.start, cols].any() and region[rows.stop:, cols].any()
                    and region[rows, :cols.start].any() and region[rows, cols.stop:].any()):
                continue
            mask = np.zeros((height_px, width_px), bool)
            mask[box] = solid
            # The button's own rim (a light keyline, a bevel): the edge pixels just round its fill.
            rim = cv2.dilate(mask.astype(np.uint8), np.ones((2 * LABEL_BOX_RIM_PX + 1,) * 2, np.uint8)).astype(bool)
            mask |= rim & (labels == 0)
            mask &= ~taken
            shape = Element(ElementKind.SHAPE, mask, regions.means[k])
            set_hull(shape)
            word.host = shape
            taken |= mask
            boxes.append(shape)
            break
    return boxes


def is_backdrop(regions: Regions, elements: list[Element]) -> bool:
    """Whether the picture filling the canvas is a design's backdrop, to be kept whole: it bleeds off every side
    (texture along each side's rim, PICTURE_EDGE_TEXTURE of it at least) and words or flat graphics are set on it.
    A designer who lays a title over a photograph or a painted scene uses the picture as the ground of the design
    (often over layers it hides), not as a scene to cut up; a bare photo has nothing on it but its subject."""
    if not any(e.kind in (ElementKind.TEXT, ElementKind.SHAPE) for e in elements):
        return False
    texture = regions.texture
    rim_px = 3
    return all(float(side.mean()) >= PICTURE_EDGE_TEXTURE for side in side_strips(texture, rim_px))


def find_subject(rgb: np.ndarray, background: Element, elements: list[Element]) -> Element | None:
    """The photo's main subject: colour contrast to the border with a centre prior seeds grabCut.

    Runs at most SUBJECT_MAX_SIDE_PX on the long side. The salient blobs only *seed* the subject: the probable
    foreground is their dilated convex hull, generous enough that grabCut's colour models can take in a head
    above a suit or a cup's rim whose colours look like the border's. The mask is scaled back with a guided
    filter (edges follow the full-size image) and its outer rim is left to the peel's soft-edge band.
    """
    import cv2

    height_px, width_px = rgb.shape[:2]
    if min(height_px, width_px) < 24:
        return None
    scale = min(1.0, SUBJECT_MAX_SIDE_PX / max(height_px, width_px))
    size = (max(8, round(width_px * scale)), max(8, round(height_px * scale)))
    small = cv2.resize(np.clip(rgb, 0, 255).astype(np.uint8), size, interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    border = np.concatenate([lab[:3].reshape(-1, 3), lab[-3:].reshape(-1, 3),
                             lab[:, :3].reshape(-1, 3), lab[:, -3:].reshape(-1, 3)])
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 1.0)
    clusters = min(6, len(border))
    cv2.setRNGSeed(0)  # k-means++ seeding: the same photo gives the same subject
    # A labels array rather than None, which some releases of OpenCV's type stubs reject and others accept (no one
    # ignore comment fits both); without KMEANS_USE_INITIAL_LABELS k-means only writes it.
    labels = np.zeros((len(border), 1), np.int32)
    _, _, centers = cv2.kmeans(border, clusters, labels, criteria, 2, cv2.KMEANS_PP_CENTERS)
    distance = np.min(np.linalg.norm(lab[:, :, None, :] - centers[None, None], axis=3), axis=2)
    ys, xs = np.mgrid[0:size[1], 0:size[0]].astype(np.float32)
    centre = np.exp(-(((xs / size[0] - 0.5) ** 2) + ((ys / size[1] - 0.5) ** 2)) / (2 * 0.3 ** 2))
    saliency = cv2.GaussianBlur(distance * centre, (0, 0), 2.0)
    saliency_u8 = np.clip(saliency / max(float(saliency.max()), 1e-6) * 255, 0, 255).astype(np.uint8)
    threshold, _ = cv2.threshold(saliency_u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    salient = (saliency_u8 > threshold).astype(np.uint8)
    # Keep the big blobs (specks of odd colour in the background are not the subject).
    count, pieces, stats, _ = cv2.connectedComponentsWithStats(salient, connectivity=8)
    if count < 2:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.flatnonzero(areas >= max(0.15 * areas.max(), 0.005 * salient.size))
    salient = np.isin(pieces, keep)
    side_px = min(size)
    grow = disc(round(0.08 * side_px))
    probable = cv2.dilate(hull_mask(salient).astype(np.uint8), grow)
    if probable[-max(3, size[1] // 10):].any():
        # A subject standing on (or near) the bottom edge, a person, may have its head above the salient part
        # (a suit): let the probable region reach a fifth of the height further up.
        reach_px = round(0.2 * size[1])
        upward = cv2.getStructuringElement(cv2.MORPH_RECT, (1, reach_px + 1))
        probable = cv2.dilate(probable, upward, anchor=(0, 0))
    probable = probable.astype(bool)
    mask = np.full(salient.shape, cv2.GC_PR_BGD, np.uint8)
    mask[probable] = cv2.GC_PR_FGD
    mask[salient & (saliency_u8 > min(255, threshold * 1.6))] = cv2.GC_FGD
    # The frame's edge is background, except the bottom edge: people and objects often stand on it.
    mask[:2][mask[:2] != cv2.GC_FGD] = cv2.GC_BGD
    mask[:, :2][mask[:, :2] != cv2.GC_FGD] = cv2.GC_BGD
    mask[:, -2:][mask[:, -2:] != cv2.GC_FGD] = cv2.GC_BGD
    bgd_model, fgd_model = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(small[..., ::-1].copy(), mask, None, bgd_model, fgd_model, 6,  # type: ignore[call-overload]
                cv2.GC_INIT_WITH_MASK)
    foreground = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    count, pieces, stats, _ = cv2.connectedComponentsWithStats(foreground, connectivity=8)
    if count < 2:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.flatnonzero(areas >= max(0.2 * areas.max(), 0.01 * foreground.size))
    foreground = np.isin(pieces, keep).astype(np.uint8)
    # Holes inside the subject (the dark coffee, a pupil) belong to it.
    contours, _ = cv2.findContours(foreground, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(foreground, contours, -1, 1, thickness=cv2.FILLED)
    checkpoint()
    full = guided_upsample(foreground.astype(np.float32), rgb, scale) > 0.5
    if sets_words(full, elements):
        return None
    for element in elements:
        full &= ~element.mask
    share = full.mean()
    if not 0.02 <= share <= 0.85:
        return None
    # Leave the outer rim to the peel's soft-edge band.
    rim = max(1, round(0.5 / scale))
    core = cv2.erode(full.astype(np.uint8), np.ones((2 * rim + 1, 2 * rim + 1), np.uint8)).astype(bool)
    if core.sum() < 0.01 * core.size:
        return None
    subject = Element(ElementKind.IMAGE, core, rgb[core].mean(axis=0), "Subject")
    subject.hull = hull_mask(core)
    return subject


def sets_words(subject: np.ndarray, elements: list[Element]) -> bool:
    """Whether the salient block grabCut found is where the design sets its words (SUBJECT_WORDS_INSIDE of the
    words' letters inside its outline, most of them): a title and buttons set in the middle of a backdrop draw the
    centre prior and the contrast there, and the block cut round them is a piece of the backdrop (a patch of
    landscape behind a menu's signs), not a subject standing in the photo; words a designer adds to a photo of a
    subject go beside it."""
    letters_px = inside_px = 0
    for element in elements:
        if element.kind is ElementKind.TEXT:
            letters_px += element.area
            inside_px += int(np.count_nonzero(element.mask & subject))
    return letters_px > 0 and inside_px >= SUBJECT_WORDS_INSIDE * letters_px


def guided_upsample(mask_small: np.ndarray, rgb: np.ndarray, scale: float) -> np.ndarray:
    """A low-resolution mask (0–1) scaled to full size with a guided filter (He et al.) on the image's
    luminance, so its edges move onto the photo's edges instead of staying blocky."""
    import cv2

    height_px, width_px = rgb.shape[:2]
    mask = cv2.resize(mask_small, (width_px, height_px), interpolation=cv2.INTER_LINEAR)
    if scale >= 1.0:
        return mask
    guide = luminance(rgb) / 255.0
    radius_px = max(2, round(1.5 / scale))
    ksize = (2 * radius_px + 1, 2 * radius_px + 1)
    mean_i = cv2.blur(guide, ksize)
    mean_p = cv2.blur(mask, ksize)
    checkpoint()
    var_i = cv2.blur(guide * guide, ksize) - mean_i * mean_i
    cov_ip = cv2.blur(guide * mask, ksize) - mean_i * mean_p
    a = cov_ip / (var_i + 1e-3)
    b = mean_p - a * mean_i
    return cv2.blur(a, ksize) * guide + cv2.blur(b, ksize)


def find_pictures(rgb: np.ndarray, elements: list[Element], room: int) -> list[Element]:
    """Pictures and sprites placed on a photo (a round portrait, a cut-out figure): at most ``room`` of them, the
    biggest first.

    A picture laid on a photograph has a closed, sharp outline: a step in colour all the way round, where the
    ground's own texture only makes short, broken edges. With the texture flattened (mean-shift filtering at
    PICTURE_MAX_SIDE_PX), the strong steps that join up into one structure enclosing much more than its own edge
    pixels (PICTURE_FILL_RATIO), of a solid shape (PICTURE_SOLIDITY), are pictures. A structure cut by the canvas
    edge is closed along that edge (a figure standing on the bottom edge).
    """
    import cv2

    height_px, width_px = rgb.shape[:2]
    if room < 1 or min(height_px, width_px) < 32:
        return []
    scale = min(1.0, PICTURE_MAX_SIDE_PX / max(height_px, width_px))
    small_h, small_w = max(8, round(height_px * scale)), max(8, round(width_px * scale))
    rgb_u8 = np.clip(rgb, 0, 255).astype(np.uint8)
    small = cv2.resize(rgb_u8, (small_w, small_h), interpolation=cv2.INTER_AREA)
    flat = cv2.pyrMeanShiftFiltering(small, 8, 24)
    checkpoint()
    edges = cv2.dilate(cv2.Canny(cv2.cvtColor(flat, cv2.COLOR_RGB2GRAY), 80, 160), np.ones((3, 3), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(edges, connectivity=8)
    taken = covered(elements, rgb.shape)
    canvas_px = small_h * small_w
    # The ground's colours: those along the canvas's edge (k-means in Lab), and the pixels near one of them.
    lab = cv2.cvtColor(rgb_u8, cv2.COLOR_RGB2LAB).astype(np.float32)
    rim_border_px = 4
    border = np.concatenate([side.reshape(-1, 3) for side in side_strips(lab, rim_border_px)])
    cv2.setRNGSeed(0)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 1.0)
    _, _, centers = cv2.kmeans(border, min(8, len(border)), np.zeros((len(border), 1), np.int32), criteria, 2,
                               cv2.KMEANS_PP_CENTERS)

    def near_ground(pixels_lab: np.ndarray) -> np.ndarray:
        # Only the pixels a candidate asks about: the whole canvas against eight centres cost 0.2 s at 1024².
        return (np.linalg.norm(pixels_lab[:, None, :] - centers[None], axis=2) < PICTURE_GROUND_LAB).any(axis=1)

    # The photo's grain: luminance's standard deviation over 5×5 pixels.
    gray = luminance(rgb).astype(np.float32)
    local_mean = cv2.blur(gray, (5, 5))
    grain = np.sqrt(np.maximum(cv2.blur(gray * gray, (5, 5)) - local_mean * local_mean, 0.0))
    reach_px = max(3, round(0.01 * max(height_px, width_px)))
    gap = np.ones((5, 5), np.uint8)
    ring_kernel = np.ones((2 * reach_px + 5, 2 * reach_px + 5), np.uint8)
    checkpoint()
    found: list[tuple[float, np.ndarray]] = []
    for label in range(1, count):
        x, y, box_w, box_h, edge_px = (int(v) for v in stats[label])
        if box_w * box_h < PICTURE_MIN_SHARE * canvas_px:
            continue
        framed = np.pad((labels[y:y + box_h, x:x + box_w] == label).astype(np.uint8), 1)
        # Close the structure along the canvas sides it reaches.
        if x == 0:
            framed[:, 0] = 1
        if y == 0:
            framed[0] = 1
        if x + box_w >= small_w:
            framed[:, -1] = 1
        if y + box_h >= small_h:
            framed[-1] = 1
        contours, _ = cv2.findContours(framed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        fill = np.zeros_like(framed)
        cv2.drawContours(fill, contours, -1, 1, thickness=cv2.FILLED)
        fill = fill[1:-1, 1:-1]
        fill_px = int(fill.sum())
        if not PICTURE_MIN_SHARE * canvas_px <= fill_px <= PICTURE_MAX_SHARE * canvas_px:
            continue
        if fill_px < PICTURE_FILL_RATIO * edge_px:
            continue
        hull = cv2.convexHull(np.argwhere(fill)[:, ::-1].astype(np.int32))
        if fill_px < PICTURE_SOLIDITY * max(float(cv2.contourArea(hull)), 1.0):
            continue
        small_mask = np.zeros((small_h, small_w), np.float32)
        small_mask[y:y + box_h, x:x + box_w] = fill
        full = cv2.resize(small_mask, (width_px, height_px), interpolation=cv2.INTER_LINEAR) > 0.5
        # The fill reaches over the dilated outline: leave that rim to the peel's soft-edge band.
        rim_px = max(1, round(1.5 / scale))
        full = cv2.erode(full.astype(np.uint8), np.ones((2 * rim_px + 1, 2 * rim_px + 1), np.uint8)).astype(bool)
        free = full & ~taken
        if free.sum() < PICTURE_FREE * max(int(full.sum()), 1):
            continue  # mostly words or shapes already found (a text bar)
        # The ground goes on around a picture placed on it (the colours along the canvas's edge ring it) and does
        # not fill it; an object's own part (the coffee inside a cup's rim) is ringed by the object instead.
        full_u8 = full.astype(np.uint8)
        ring = cv2.dilate(full_u8, ring_kernel).astype(bool) & ~cv2.dilate(full_u8, gap).astype(bool)
        ring[:rim_border_px] = ring[-rim_border_px:] = False
        ring[:, :rim_border_px] = ring[:, -rim_border_px:] = False
        if (not ring.any() or near_ground(lab[ring]).mean() < PICTURE_GROUND_RING
                or near_ground(lab[full]).mean() > PICTURE_GROUND_INSIDE):
            continue
        if float(np.median(grain[ring])) < PICTURE_GROUND_GRAIN:
            continue  # a flat ground around it (a black splash on a photo): not a photo's ground going on
        found.append((float(free.sum()), free))
    pictures = []
    for _, mask in sorted(found, key=lambda item: -item[0])[:room]:
        picture = Element(ElementKind.IMAGE, mask, rgb[mask].mean(axis=0), "Picture")
        picture.hull = hull_mask(mask)
        pictures.append(picture)
    return pictures
