# SPDX-License-Identifier: GPL-3.0-or-later
"""Where a sample's LayerD loss goes: RGB L1 and 1 − IoU at one edit level, split by pixel class.

The classes come from the state the metric scores at that level (``benchmarks.metrics.edit_states``: both sides
grouped and merged, the DTW path): for every matched pair (ours i, truth j), each pixel of the pair falls in one
class, and the classes' contributions, averaged over the path as the metric averages pairs, add up to the level's
RGB L1 and to 1 − IoU exactly. A pixel of truth layer j is *hidden* where a truth layer above j has α > 0 (its
content there is what the designer drew under something: nothing in the flat image shows it).

RGB L1 (over the truth's α > 0, where the metric takes it):
- ``soft``: the truth's α < 255 (anti-aliased edges, translucent layers, glows);
- ``hidden ground``: hidden, ours drawn (α > 0), j the bottom layer: how we filled the background under what we
  lifted off it;
- ``hidden lower``: hidden, ours drawn, j above the bottom: a card or shape completed under what lies on it;
- ``hidden, ours empty``: hidden, our α = 0 (the colour we keep under zero alpha counts);
- ``visible, ours empty`` / ``visible, ours soft`` / ``visible, both opaque``: what shows, by our α (0, between,
  255): a missed part, a part we made see-through, a wrong colour.
1 − IoU: our α missing where the truth has it, or extra where it has not, on visible or hidden pixels; ``both
empty`` when neither layer has any alpha (IoU 0 in LayerD).

``missing, visible`` by where the pixel went (split_missing_visible, MISSING_CLASSES; they add up to it):
- ``same as under``: truth layer j's colour there is that of the truth's layers under it (opaque), within
  SAME_AS_UNDER_255: a box or panel of the colour it lies on (a logo saved with its ground, a white card on a white
  page); nothing in the flat image shows where it is;
- ``page over hidden ground``: truth layer j is opaque there and the truth's bottom layer shows nowhere: a page or
  card laid over a ground the composite never shows;
- ``in our ground`` / ``in another of ours``: the pixel shows in our composite in our bottom layer (an element we
  left in the background) or in another of our layers (an element's parts split across our layers, or grouped with
  other things than the truth groups them with); ``nowhere``: none of our layers is more than half opaque there.

``split_extra`` splits ``extra, visible`` further by whose pixels ours holds there (EXTRA_CLASSES): a pair that
hardly overlaps (a whole element of ours matched to a truth layer it misses: lifting the unions of both sides
apart), the truth layer's own soft pixels, the ground's pixels at the truth layer's edge or away from it (what the
designer left in the ground: ours lifted it), another truth layer's, or nobody's (the truth is transparent there).
"""

from __future__ import annotations

from functools import reduce

import numpy as np

from benchmarks.metrics import L1_EPS, EditState, alpha_composite, rgb_l1_pixels

L1_CLASSES = ("soft", "hidden ground", "hidden lower", "hidden, ours empty", "visible, ours empty",
              "visible, ours soft", "visible, both opaque")
IOU_CLASSES = ("missing, visible", "missing, hidden", "extra, visible", "extra, hidden", "both empty")
GROUND_KINDS = ("flat", "gradient", "photo", "covered")
EXTRA_CLASSES = ("pair apart", "truth soft", "ground, edge", "ground, lifted", "another layer", "nobody's")
# A pair whose IoU is under this does not match one thing: its extra pixels are a whole element matched wrongly.
APART_IOU = 0.1
# Extra pixels on the ground within this many pixels of the truth layer are its edge (a fringe), not ground lifted.
EDGE_PX = 3.0
# The truth's ground is "flat" when its visible colour varies by less than this (0–255, mean channel std), a
# "gradient" when a quadratic colour model over the canvas leaves less than GRADIENT_RESIDUAL_255 mean error.
FLAT_STD_255 = 3.0
GRADIENT_RESIDUAL_255 = 4.0
# A ground with fewer visible pixels than this is "covered": the truth hid it (almost) entirely.
COVERED_PIXELS = 50
MISSING_CLASSES = ("same as under", "page over hidden ground", "in our ground", "in another of ours", "nowhere")
# A truth layer's pixel is "the same as under" it when its colour is within this (0–255, max channel) of the truth's
# layers below it composited there, and they are opaque there.
SAME_AS_UNDER_255 = 10.0


def covered_above(gt: list[np.ndarray]) -> list[np.ndarray]:
    """Per truth layer, the pixels some truth layer above it has α > 0 at."""
    covered = np.zeros(gt[0].shape[:2], bool)
    above = []
    for layer in reversed(gt):
        above.append(covered.copy())
        covered |= layer[..., 3] > 0
    return above[::-1]


def ground_kind(ground: np.ndarray, covered: np.ndarray) -> str:
    """How the truth's bottom layer looks where it shows: flat, gradient, photo, or covered."""
    visible = (ground[..., 3] == 255) & ~covered
    if visible.sum() < COVERED_PIXELS:
        return "covered"
    ys, xs = np.nonzero(visible)
    colour = ground[ys, xs, :3].astype(float)
    if colour.std(0).mean() < FLAT_STD_255:
        return "flat"
    # A subsample keeps the least-squares fit cheap on large grounds; the seed keeps the kind reproducible.
    keep = np.random.default_rng(0).choice(len(xs), min(len(xs), 20000), replace=False)
    x, y = xs[keep] / ground.shape[1], ys[keep] / ground.shape[0]
    terms = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], 1)
    coefficients, *_ = np.linalg.lstsq(terms, colour[keep], rcond=None)
    residual = np.abs(terms @ coefficients - colour[keep]).mean()
    return "gradient" if residual < GRADIENT_RESIDUAL_255 else "photo"


def alpha_gaps(ours: np.ndarray, truth: np.ndarray):
    """(our α, the truth's α, missing, extra) of a matched pair, as 0–1 floats; missing and extra per pixel over the
    sum of the pair's alpha union, so that they add up to 1 − IoU. None when both layers are empty."""
    a, b = ours[..., 3].astype(float) / 255.0, truth[..., 3].astype(float) / 255.0
    union = np.maximum(a, b).sum()
    if union == 0:
        return None
    return a, b, np.clip(b - a, 0, None) / union, np.clip(a - b, 0, None) / union


def split_loss(state: EditState) -> dict[str, float]:
    """The L1 and 1 − IoU classes of one edit level's state (keys of L1_CLASSES and IOU_CLASSES)."""
    split = dict.fromkeys(L1_CLASSES + IOU_CLASSES, 0.0)
    covered_above_j = covered_above(state.gt)
    pairs = len(state.path)
    for i, j in state.path:
        ours, truth = state.pred[i], state.gt[j]
        our_alpha, truth_alpha = ours[..., 3], truth[..., 3]
        hidden = covered_above_j[j]
        difference, mask = rgb_l1_pixels(ours, truth)
        difference = difference / (mask.sum() + L1_EPS)
        opaque = truth_alpha == 255
        drawn = our_alpha > 0
        classes = {
            "soft": mask & ~opaque,
            "hidden ground" if j == 0 else "hidden lower": opaque & hidden & drawn,
            "hidden, ours empty": opaque & hidden & ~drawn,
            "visible, ours empty": opaque & ~hidden & ~drawn,
            "visible, ours soft": opaque & ~hidden & drawn & (our_alpha < 255),
            "visible, both opaque": opaque & ~hidden & (our_alpha == 255),
        }
        for name, pixels in classes.items():
            split[name] += float(difference[pixels].sum()) / pairs
        gaps = alpha_gaps(ours, truth)
        if gaps is None:
            split["both empty"] += 1.0 / pairs
            continue
        _, _, missing, extra = gaps
        split["missing, visible"] += float(missing[~hidden].sum()) / pairs
        split["missing, hidden"] += float(missing[hidden].sum()) / pairs
        split["extra, visible"] += float(extra[~hidden].sum()) / pairs
        split["extra, hidden"] += float(extra[hidden].sum()) / pairs
    return split


def split_missing_visible(state: EditState) -> dict[str, float]:
    """The ``missing, visible`` class of split_loss by where the missing pixel went (keys of MISSING_CLASSES)."""
    split = dict.fromkeys(MISSING_CLASSES, 0.0)
    covered_above_j = covered_above(state.gt)
    pairs = len(state.path)
    shape = state.gt[0].shape[:2]
    # Which of our layers shows at each pixel (the topmost more than half opaque; -1: none).
    shown = np.full(shape, -1)
    for index, layer in enumerate(state.pred):
        shown[layer[..., 3] > 127] = index
    ground_hidden = bool(covered_above_j[0][state.gt[0][..., 3] > 0].all())
    for i, j in state.path:
        truth = state.gt[j]
        gaps = alpha_gaps(state.pred[i], truth)
        if gaps is None:
            continue
        _, b, missing, _ = gaps
        missing[covered_above_j[j]] = 0.0
        if not missing.any():
            continue
        same = np.zeros(shape, bool)
        page = np.zeros(shape, bool)
        if j > 0:
            under = reduce(alpha_composite, state.gt[:j]).astype(float)
            same = (np.abs(truth[..., :3] - under[..., :3]).max(-1) < SAME_AS_UNDER_255) & (under[..., 3] > 252)
            page = (b > 0.99) & ground_hidden & ~same
        rest = ~same & ~page
        split["same as under"] += float(missing[same].sum()) / pairs
        split["page over hidden ground"] += float(missing[page].sum()) / pairs
        split["in our ground"] += float(missing[rest & (shown == 0)].sum()) / pairs
        split["in another of ours"] += float(missing[rest & (shown > 0)].sum()) / pairs
        split["nowhere"] += float(missing[rest & (shown < 0)].sum()) / pairs
    return split


def split_extra(state: EditState) -> dict[str, float]:
    """``extra, visible`` of one edit level's state split by EXTRA_CLASSES (they add up to it)."""
    import cv2

    split = dict.fromkeys(EXTRA_CLASSES, 0.0)
    covered_above_j = covered_above(state.gt)
    owner = np.full(state.gt[0].shape[:2], -1)  # the top truth layer drawn at each pixel (-1: none)
    for k, layer in enumerate(state.gt):
        owner[layer[..., 3] > 0] = k
    pairs = len(state.path)
    for i, j in state.path:
        gaps = alpha_gaps(state.pred[i], state.gt[j])
        if gaps is None:
            continue
        a, b, _, extra = gaps
        extra = extra * ~covered_above_j[j] / pairs
        if np.minimum(a, b).sum() / np.maximum(a, b).sum() < APART_IOU:
            split["pair apart"] += float(extra.sum())
            continue
        away = cv2.distanceTransform((b == 0).astype(np.uint8), cv2.DIST_L2, 3)
        on_ground = (owner == 0) & (j != 0)
        split["truth soft"] += float(extra[b > 0].sum())
        split["ground, edge"] += float(extra[on_ground & (b == 0) & (away <= EDGE_PX)].sum())
        split["ground, lifted"] += float(extra[on_ground & (away > EDGE_PX)].sum())
        split["another layer"] += float(extra[(owner > 0) & (owner != j) & (b == 0)].sum())
        split["nobody's"] += float(extra[owner < 0].sum())
    return split
