# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixed random layer sets on which our metrics are checked against LayerD's reference evaluation.

``make_case(seed)`` builds a (prediction, ground truth) pair of small RGBA layer lists from numpy's PCG64
generator, so the same seed gives the same layers on every machine. The sets exercise what the scores depend
on: overlapping and disjoint layers (grouping), colour under zero alpha (Pillow's alpha_composite keeps it),
soft alpha, empty layers (IoU of two empty layers), predictions that split or merge the ground truth's layers
(merge edits on either side) and one-layer predictions.

``scripts/layerd_reference_scores.py`` runs LayerD's own code on these cases and writes
``tests/data/layerd_reference_scores.json``; tests/test_metrics.py asserts that our scores equal those.
"""

from __future__ import annotations

import numpy as np

HEIGHT_PX, WIDTH_PX = 20, 28
CASE_SEEDS = range(48)
REFERENCE_SCORES = "data/layerd_reference_scores.json"


def _shape_mask(rng: np.random.Generator) -> np.ndarray:
    ys, xs = np.mgrid[0:HEIGHT_PX, 0:WIDTH_PX]
    kind = rng.integers(0, 4)
    if kind == 0:  # the whole canvas
        return np.ones((HEIGHT_PX, WIDTH_PX), bool)
    y0, x0 = rng.integers(0, HEIGHT_PX - 4), rng.integers(0, WIDTH_PX - 4)
    h, w = rng.integers(3, HEIGHT_PX - y0 + 1), rng.integers(3, WIDTH_PX - x0 + 1)
    if kind == 1:
        return (ys >= y0) & (ys < y0 + h) & (xs >= x0) & (xs < x0 + w)
    if kind == 2:
        cy, cx = y0 + h / 2, x0 + w / 2
        return ((ys - cy) / (h / 2)) ** 2 + ((xs - cx) / (w / 2)) ** 2 <= 1.0
    return rng.random((HEIGHT_PX, WIDTH_PX)) < 0.3  # scattered pixels


def _layer(rng: np.random.Generator) -> np.ndarray:
    layer = rng.integers(0, 256, (HEIGHT_PX, WIDTH_PX, 4), dtype=np.uint8)  # colour everywhere, also under α = 0
    mask = _shape_mask(rng)
    style = rng.integers(0, 3)
    if style == 0:
        alpha = np.full(mask.shape, 255)
    elif style == 1:
        alpha = np.full(mask.shape, rng.integers(1, 256))
    else:
        alpha = rng.integers(1, 256, mask.shape)
    layer[..., 3] = np.where(mask, alpha, 0).astype(np.uint8)
    if rng.random() < 0.5:  # flat colour inside the shape, as designs have
        layer[mask, :3] = rng.integers(0, 256, 3, dtype=np.uint8)
    return layer


def _perturbed(rng: np.random.Generator, layer: np.ndarray) -> np.ndarray:
    out = layer.copy()
    noise = rng.integers(-20, 21, out.shape[:2] + (3,))
    out[..., :3] = np.clip(out[..., :3].astype(int) + noise, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        out = np.roll(out, int(rng.integers(-2, 3)), axis=int(rng.integers(0, 2)))
    return out


def _over(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.alpha_composite(Image.fromarray(lower, "RGBA"), Image.fromarray(upper, "RGBA")))


def make_case(seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(prediction, ground truth), back to front."""
    rng = np.random.default_rng(seed)
    gt = [_layer(rng) for _ in range(int(rng.integers(2, 7)))]
    if rng.random() < 0.2:
        gt[int(rng.integers(0, len(gt)))][..., 3] = 0  # an empty ground-truth layer
    mode = seed % 4
    if mode == 0:  # unrelated layers
        pred = [_layer(rng) for _ in range(int(rng.integers(1, 7)))]
    elif mode == 1:  # the truth, perturbed
        pred = [_perturbed(rng, layer) for layer in gt]
    elif mode == 2:  # the truth with neighbours merged
        pred = [layer.copy() for layer in gt]
        for _ in range(int(rng.integers(1, 3))):
            if len(pred) > 1:
                i = int(rng.integers(0, len(pred) - 1))
                pred[i:i + 2] = [_over(pred[i], pred[i + 1])]
    else:  # the truth with layers split in two halves, and an extra layer
        pred = []
        for layer in gt:
            if rng.random() < 0.5:
                left, right = layer.copy(), layer.copy()
                cut = int(rng.integers(1, WIDTH_PX - 1))
                left[:, cut:, 3] = 0
                right[:, :cut, 3] = 0
                pred += [left, right]
            else:
                pred.append(_perturbed(rng, layer))
        if rng.random() < 0.5:
            pred.insert(int(rng.integers(0, len(pred) + 1)), _layer(rng))
    if rng.random() < 0.1:
        pred = [pred[-1]]  # a one-layer prediction
    return pred, gt
