# SPDX-License-Identifier: GPL-3.0-or-later
"""Layer-decomposition quality, scored exactly as LayerD's reference evaluation does (Suzuki et al. 2025, "LayerD:
Decomposing Raster Graphic Designs into Layers"; its evaluation code is Apache-2.0). Our own code, checked
against that code's scores on fixed inputs: ``scripts/layerd_reference_scores.py`` runs LayerD's evaluation on the
cases of ``tests/layerd_reference.py`` and writes ``tests/data/layerd_reference_scores.json``, which
``tests/test_metrics.py`` compares with these functions.

1. Grouping: on both sides, repeatedly take the layers whose hard alpha (α > 0) overlaps no later remaining
   layer; each such set becomes one layer, composited with Pillow's ``Image.alpha_composite`` (which keeps the
   lower layer's colour where the upper one's alpha is 0: L1 is taken over the ground truth's mask, so colour
   under a prediction's zero alpha counts).
2. Per pair (a, b): RGB L1 = mean |ΔRGB| (straight colour in [0, 1]) over the pixels where b has α > 0;
   soft alpha IoU = Σ min(α_a, α_b) / Σ max(α_a, α_b), 0 when both are empty; cost = (L1 + 1 − IoU) / 2.
3. Alignment: dynamic time warping over the cost matrix; a sample's scores are the means over the matched path.
4. Edits (LayerD's ``Merge``): up to ``max_edits`` merges of two adjacent layers (``alpha_composite``), never
   below 2 layers on a side. For each i, a merge of i and i+1 is judged locally, against only the layers the
   current path matches to i (G_i) and to i+1 (G_i+1), with S = summed similarity (1 − cost) to a group: the
   merge gains S(merged, G_i) + max(S(merged, G_i+1), S(layer i+2, G_i), S(layer i+2, G_i+1)) minus
   S(layer i, G_i) + S(layer i+1, G_i+1), when positive (LayerD's candidate list: the merged layer, then layer
   i+2 if there is one). The largest gain wins, the first on a tie. Merges on the ground-truth side are judged
   with the arguments swapped (so L1 is masked by the prediction's alpha); a tie between the sides goes to the
   ground-truth side. When no merge gains on either side the sample stops there.
5. Aggregation: mean per edit level; a sample that stopped early carries its last value forward. A ground
   truth of fewer than 2 layers is skipped (LayerD's evaluate.py also skips predictions of fewer than 2 layers;
   we score them, so the one-layer baseline can be measured).

All layers are H×W×4 uint8 straight-alpha arrays, back to front.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

import numpy as np
from PIL import Image

from inference_server.layers import composite_over

DEFAULT_MAX_EDITS = 5
L1_EPS = 1e-8  # LayerD's RGBL1 divides by (mask pixels + eps)


@dataclass(frozen=True)
class LevelScore:
    """Scores of one sample after ``edits`` merge edits."""

    edits: int
    rgb_l1: float
    alpha_iou: float
    pred_layers: int
    gt_layers: int


def alpha_composite(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """``upper`` over ``lower`` with Pillow's ``Image.alpha_composite`` (its rounding, and the lower colour kept
    where the upper alpha is 0), as LayerD merges layers."""
    merged = Image.alpha_composite(Image.fromarray(lower, "RGBA"), Image.fromarray(upper, "RGBA"))
    return np.asarray(merged, dtype=np.uint8)


def group_indices(layers: list[np.ndarray]) -> list[list[int]]:
    """LayerD grouping: index sets of layers that no later remaining layer overlaps (hard alpha), back→front."""
    hard = [layer[..., 3] > 0 for layer in layers]
    remaining = list(range(len(layers)))
    groups_front_to_back = []
    while remaining:
        group = [index for position, index in enumerate(remaining)
                 if not any((hard[index] & hard[later]).any() for later in remaining[position + 1:])]
        groups_front_to_back.append(group)
        remaining = [index for index in remaining if index not in group]
    return groups_front_to_back[::-1]


def group_layers(layers: list[np.ndarray]) -> list[np.ndarray]:
    """The grouped layers (back→front), each group alpha-composited in order."""
    return [reduce(alpha_composite, [layers[i] for i in group]) for group in group_indices(layers)]


def rgb_l1_pixels(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(per pixel the absolute straight-RGB difference in [0, 1] where ``gt`` is visible and 0 elsewhere, that
    mask): what ``rgb_l1`` averages."""
    a = pred.astype(float) / 255.0
    b = gt.astype(float) / 255.0
    mask = b[..., 3] > 0
    return np.abs(a[..., :3] - b[..., :3]).mean(-1) * mask, mask


def rgb_l1(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean absolute straight-RGB difference in [0, 1] over ``gt``'s visible pixels (0 if it has none)."""
    difference, mask = rgb_l1_pixels(pred, gt)
    return float(difference.sum() / (mask.sum() + L1_EPS))


def alpha_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Soft IoU of the alpha channels (0 when both are empty, as in LayerD)."""
    a = pred[..., 3].astype(float) / 255.0
    b = gt[..., 3].astype(float) / 255.0
    union = np.maximum(a, b).sum()
    return float(np.minimum(a, b).sum() / union) if union > 0 else 0.0


def pair_cost(l1: float, iou: float) -> float:
    return (l1 + (1.0 - iou)) / 2.0


def dtw_path(cost: np.ndarray) -> list[tuple[int, int]]:
    """DTW (steps right, down, diagonal) from (0, 0) to (n−1, m−1), ties broken diagonal, then down, then right."""
    n, m = cost.shape
    acc = np.zeros((n, m))
    acc[0, 0] = cost[0, 0]
    for i in range(1, n):
        acc[i, 0] = acc[i - 1, 0] + cost[i, 0]
    for j in range(1, m):
        acc[0, j] = acc[0, j - 1] + cost[0, j]
    for i in range(1, n):
        for j in range(1, m):
            acc[i, j] = cost[i, j] + min(acc[i - 1, j], acc[i, j - 1], acc[i - 1, j - 1])
    i, j = n - 1, m - 1
    path = [(i, j)]
    while i > 0 or j > 0:
        if i == 0:
            j -= 1
        elif j == 0:
            i -= 1
        elif acc[i - 1, j - 1] <= acc[i - 1, j] and acc[i - 1, j - 1] <= acc[i, j - 1]:
            i, j = i - 1, j - 1
        elif acc[i - 1, j] <= acc[i - 1, j - 1] and acc[i - 1, j] <= acc[i, j - 1]:
            i -= 1
        else:
            j -= 1
        path.append((i, j))
    return path[::-1]


class _PairCache:
    """(RGB L1, IoU) of an ordered pair keyed by array identity: a merge changes one layer, other pairs are reused."""

    def __init__(self) -> None:
        self._values: dict[tuple[int, int], tuple[float, float]] = {}
        self._keep: list[np.ndarray] = []  # keeps ids valid for the cache's lifetime

    def get(self, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
        key = (id(a), id(b))
        if key not in self._values:
            self._keep.extend((a, b))
            self._values[key] = (rgb_l1(a, b), alpha_iou(a, b))
        return self._values[key]

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        return 1.0 - pair_cost(*self.get(a, b))


def _align(pred: list[np.ndarray], gt: list[np.ndarray], cache: _PairCache):
    """(DTW path, mean RGB L1, mean IoU) over the path."""
    pairs = [[cache.get(p, g) for g in gt] for p in pred]
    cost = np.array([[pair_cost(*value) for value in row] for row in pairs])
    path = dtw_path(cost)
    l1 = float(np.mean([pairs[i][j][0] for i, j in path]))
    iou = float(np.mean([pairs[i][j][1] for i, j in path]))
    return path, l1, iou


@dataclass
class _Merge:
    """Merging layers ``index`` and ``index + 1`` into ``merged`` gains ``gain`` similarity."""

    index: int
    gain: float
    merged: np.ndarray

    def apply(self, layers: list[np.ndarray]) -> list[np.ndarray]:
        return layers[:self.index] + [self.merged] + layers[self.index + 2:]


def _best_merge(layers: list[np.ndarray], others: list[np.ndarray], path: list[tuple[int, int]],
                cache: _PairCache) -> _Merge | None:
    """LayerD's local merge judgement on one side: the best merge of some layer i with i+1, or None when no merge
    gains. ``path`` pairs (index in ``layers``, index in ``others``)."""
    best: _Merge | None = None
    if len(layers) <= 2:
        return best
    for i in range(len(layers) - 1):
        merged = alpha_composite(layers[i], layers[i + 1])
        candidates = [merged] + ([layers[i + 2]] if i + 2 < len(layers) else [])
        matched = ([others[b] for a, b in path if a == i], [others[b] for a, b in path if a == i + 1])
        current = (sum(cache.similarity(layers[i], other) for other in matched[0])
                   + sum(cache.similarity(layers[i + 1], other) for other in matched[1]))
        sums = [sum(cache.similarity(candidate, other) for other in group)
                for candidate in candidates for group in matched]
        merged_best = max(value + sums[0] for value in sums[1:])
        if merged_best > current and (best is None or merged_best - current > best.gain):
            best = _Merge(i, merged_best - current, merged)
    return best


@dataclass(frozen=True)
class EditState:
    """Both sides after ``edits`` merge edits: grouped layers back→front, the DTW path (index in ``pred``, index
    in ``gt``) and the path's mean scores."""

    edits: int
    pred: list[np.ndarray]
    gt: list[np.ndarray]
    path: list[tuple[int, int]]
    rgb_l1: float
    alpha_iou: float


def edit_states(pred_layers: list[np.ndarray], gt_layers: list[np.ndarray],
                max_edits: int = DEFAULT_MAX_EDITS) -> list[EditState]:
    """The state at edit levels 0..max_edits (a sample that stopped early repeats its last state)."""
    pred = group_layers(list(pred_layers))
    gt = group_layers(list(gt_layers))
    cache = _PairCache()
    path, l1, iou = _align(pred, gt, cache)
    states = [EditState(0, pred, gt, path, l1, iou)]
    stopped = False
    for edit in range(1, max_edits + 1):
        if not stopped:
            pred_merge = _best_merge(pred, gt, path, cache)
            gt_merge = _best_merge(gt, pred, [(j, i) for i, j in path], cache)
            if pred_merge is None and gt_merge is None:
                stopped = True  # LayerD stops the sample here; the last value carries forward
            elif pred_merge is not None and (gt_merge is None or pred_merge.gain > gt_merge.gain):
                pred = pred_merge.apply(pred)
            elif gt_merge is not None:
                gt = gt_merge.apply(gt)
            if not stopped:
                path, l1, iou = _align(pred, gt, cache)
        states.append(EditState(edit, pred, gt, path, l1, iou))
    return states


def score_layers(pred_layers: list[np.ndarray], gt_layers: list[np.ndarray],
                 max_edits: int = DEFAULT_MAX_EDITS) -> list[LevelScore] | None:
    """LayerD scores at edit levels 0..max_edits, or None when the ground truth has fewer than 2 layers."""
    if not pred_layers or not gt_layers:
        raise ValueError("both the prediction and the ground truth need at least one layer")
    shapes = {layer.shape for layer in list(pred_layers) + list(gt_layers)}
    if len(shapes) != 1:
        raise ValueError(f"all layers must have one shape, got {sorted(shapes)}")
    if len(gt_layers) < 2:
        return None
    return [LevelScore(state.edits, state.rgb_l1, state.alpha_iou, len(state.pred), len(state.gt))
            for state in edit_states(pred_layers, gt_layers, max_edits)]


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
