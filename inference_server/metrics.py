"""Layer-decomposition quality, scored with the LayerD protocol (Suzuki et al. 2025, "LayerD"), written from its
description (see shared/notes/cpu_decomposition.md §3):

1. Grouping: on both sides, repeatedly take the layers whose hard alpha (α > 0) overlaps no later remaining
   layer and composite them into one layer. Decompositions that differ only in how disjoint elements of the
   same depth are split up then score the same.
2. Per pair of layers: RGB L1 = mean |ΔRGB| (straight colour in [0, 1]) over the pixels where the ground truth
   has α > 0; soft alpha IoU = Σ min(α_p, α_g) / Σ max(α_p, α_g); cost = (L1 + 1 − IoU) / 2.
3. Alignment: dynamic time warping over the cost matrix; a sample's scores are the means over the matched path.
4. Edits: up to ``max_edits`` greedy merges of two adjacent layers (alpha-composited), on the prediction or the
   ground truth, whichever lowers the DTW cost most; never below 2 layers, and only while a merge lowers the
   cost (so ground truth against itself stays at 0 / 1). Scored after every edit. (LayerD's own Merge judges
   a merge by the similarity gain on the layers matched to the two merged ones; judging by the whole
   alignment's cost is our simplification, with the same stopping rule: no gain, no edit.)
5. Aggregation: mean per edit level; a sample that ran out of edits carries its last value forward. Samples
   whose ground truth has fewer than 2 layers are skipped.

All layers are H×W×4 uint8 straight-alpha arrays, back to front.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .layers import composite_over

DEFAULT_MAX_EDITS = 5


@dataclass(frozen=True)
class LevelScore:
    """Scores of one sample after ``edits`` merge edits."""

    edits: int
    rgb_l1: float
    alpha_iou: float
    pred_layers: int
    gt_layers: int


def group_layers(layers: list[np.ndarray]) -> list[np.ndarray]:
    """LayerD grouping: peel the set of unoccluded layers repeatedly; each set becomes one layer (back→front)."""
    remaining = list(layers)
    groups_front_to_back: list[np.ndarray] = []
    while remaining:
        hard = [layer[..., 3] > 0 for layer in remaining]
        # covered_after[i]: union of hard alphas of the layers after i
        covered_after = [None] * len(remaining)
        union = np.zeros_like(hard[0])
        for index in range(len(remaining) - 1, -1, -1):
            covered_after[index] = union
            union = union | hard[index]
        top = [i for i in range(len(remaining)) if not (hard[i] & covered_after[i]).any()]
        groups_front_to_back.append(composite_over([remaining[i] for i in top]) if len(top) > 1 else remaining[top[0]])
        remaining = [layer for i, layer in enumerate(remaining) if i not in set(top)]
    return groups_front_to_back[::-1]


def rgb_l1(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean absolute straight-RGB difference in [0, 1] over the ground truth's visible pixels (0 if it has none)."""
    mask = gt[..., 3] > 0
    if not mask.any():
        return 0.0
    diff = np.abs(pred[..., :3][mask].astype(np.int16) - gt[..., :3][mask].astype(np.int16))
    return float(diff.mean() / 255.0)


def alpha_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Soft IoU of the alpha channels (1 when both are empty)."""
    a = pred[..., 3].astype(np.int32)
    b = gt[..., 3].astype(np.int32)
    union = np.maximum(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.minimum(a, b).sum() / union)


def dtw_path(cost: np.ndarray) -> list[tuple[int, int]]:
    """Classic DTW (steps right, down, diagonal) from (0, 0) to (n−1, m−1); returns the matched index pairs."""
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            acc[i, j] = cost[i - 1, j - 1] + min(acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])
    path = []
    i, j = n, m
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        step = int(np.argmin([acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]]))
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        else:
            j -= 1
    return path[::-1]


class _PairCache:
    """Pair metrics keyed by array identity: a merge edit changes one layer, the other pairs are reused."""

    def __init__(self) -> None:
        self._values: dict[tuple[int, int], tuple[float, float]] = {}
        self._keep: list[np.ndarray] = []  # keeps ids valid for the cache's lifetime

    def get(self, pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
        key = (id(pred), id(gt))
        if key not in self._values:
            self._keep.extend((pred, gt))
            self._values[key] = (rgb_l1(pred, gt), alpha_iou(pred, gt))
        return self._values[key]


def _align(pred: list[np.ndarray], gt: list[np.ndarray], cache: _PairCache) -> tuple[float, float, float]:
    """(mean cost, mean RGB L1, mean IoU) over the DTW path."""
    pairs = [[cache.get(p, g) for g in gt] for p in pred]
    l1 = np.array([[v[0] for v in row] for row in pairs])
    iou = np.array([[v[1] for v in row] for row in pairs])
    cost = (l1 + 1.0 - iou) / 2.0
    path = dtw_path(cost)
    rows, cols = zip(*path)
    return (float(cost[rows, cols].mean()), float(l1[rows, cols].mean()), float(iou[rows, cols].mean()))


def _merged(layers: list[np.ndarray], index: int) -> list[np.ndarray]:
    return layers[:index] + [composite_over([layers[index], layers[index + 1]])] + layers[index + 2:]


def score_layers(pred_layers: list[np.ndarray], gt_layers: list[np.ndarray],
                 max_edits: int = DEFAULT_MAX_EDITS) -> list[LevelScore] | None:
    """LayerD scores at edit levels 0..max_edits, or None when the grouped ground truth has fewer than 2 layers."""
    if not pred_layers or not gt_layers:
        raise ValueError("both the prediction and the ground truth need at least one layer")
    shapes = {layer.shape for layer in list(pred_layers) + list(gt_layers)}
    if len(shapes) != 1:
        raise ValueError(f"all layers must have one shape, got {sorted(shapes)}")
    pred = group_layers(list(pred_layers))
    gt = group_layers(list(gt_layers))
    if len(gt) < 2:
        return None
    cache = _PairCache()
    cost, l1, iou = _align(pred, gt, cache)
    levels = [LevelScore(0, l1, iou, len(pred), len(gt))]
    for edit in range(1, max_edits + 1):
        best = None
        for side, layers in (("pred", pred), ("gt", gt)):
            if len(layers) <= 2:
                continue
            for index in range(len(layers) - 1):
                candidate = _merged(layers, index)
                result = _align(candidate, gt, cache) if side == "pred" else _align(pred, candidate, cache)
                if best is None or result[0] < best[0]:
                    best = (result[0], result[1], result[2], side, candidate)
        if best is None or best[0] >= cost:
            # Out of edits (both sides at 2 layers) or no merge brings the sides closer: carry the last value.
            levels.append(LevelScore(edit, l1, iou, len(pred), len(gt)))
            continue
        cost, l1, iou, side, candidate = best
        if side == "pred":
            pred = candidate
        else:
            gt = candidate
        levels.append(LevelScore(edit, l1, iou, len(pred), len(gt)))
    return levels


def mean_levels(samples: list[list[LevelScore] | None]) -> list[tuple[float, float]]:
    """Mean (RGB L1, alpha IoU) per edit level over the scored samples (None entries are skipped)."""
    scored = [levels for levels in samples if levels is not None]
    if not scored:
        return []
    depth = max(len(levels) for levels in scored)
    means = []
    for level in range(depth):
        picks = [levels[min(level, len(levels) - 1)] for levels in scored]
        means.append((float(np.mean([p.rgb_l1 for p in picks])), float(np.mean([p.alpha_iou for p in picks]))))
    return means


def reconstruction_mae(layers: list[np.ndarray], target: np.ndarray) -> float:
    """Mean absolute error (0–255 scale) between the layers' "over" composite and the target RGBA image.

    Colour is compared premultiplied, so invisible colour under zero alpha does not count.
    """
    composite = composite_over(layers).astype(np.float64)
    target = target.astype(np.float64)
    premul_c = composite[..., :3] * composite[..., 3:4] / 255.0
    premul_t = target[..., :3] * target[..., 3:4] / 255.0
    diff = np.concatenate([np.abs(premul_c - premul_t), np.abs(composite[..., 3:4] - target[..., 3:4])], axis=2)
    return float(diff.mean())
