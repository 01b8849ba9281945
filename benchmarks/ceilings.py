# SPDX-License-Identifier: GPL-3.0-or-later
"""What a decomposer could score at best from the flat image alone: layer stacks built from the ground truth that
keep only what a given kind of decomposer could know, scored with the same LayerD protocol as ours.

A pixel of a layer is *hidden* where some layer above it is fully opaque; the flat image says nothing about it.
Each ceiling drops or keeps hidden alpha by one rule, so every ceiling's "over" composite is the input exactly
(only hidden alpha changes). They bound the alpha IoU; their colour where a layer is hidden is the input's there
(what a decomposer sees, nothing filled in), so a decomposer that fills in hidden colour, as ours does, can beat
them on RGB L1:

- ``visible_layers``: each truth layer cut to the pixels where it is not hidden; layers hidden everywhere are
  dropped (nothing in the image says they exist). A perfect segmentation of what shows, and nothing more.
- ``ground_completed``: the lowest of those also goes on under everything (a ground completed, as ours does).
- ``box_completed``: ground completed, and every other layer also keeps its hidden alpha inside the bounding box of
  what shows of it (a panel going on under the photo set on it, a box under its words): amodal completion as far
  as a decomposer could guess it from the layer's own outline.
- ``shown_layers``: the truth's layers that show anywhere, whole (hidden extents and all): only the layers hidden
  everywhere are missing.

    ceilings = ceiling_stacks(truth, composite)   # {name: layers back→front}, in CEILINGS order

``regrouped_by_truth`` is a diagnostic beside them, not a ceiling: a decomposer's own layers grouped and ordered as
the designer's, which tells how much of its loss is the grouping of its pieces rather than the pieces.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

import numpy as np

from benchmarks.metrics import alpha_composite

CEILINGS = ("visible pixels", "visible + ground", "visible + boxes", "shown layers whole")


def hidden_masks(truth: list[np.ndarray]) -> list[np.ndarray]:
    """Per truth layer (back→front), where a layer above it is fully opaque."""
    covered = np.zeros(truth[0].shape[:2], dtype=bool)
    masks = []
    for layer in truth[::-1]:
        masks.append(covered.copy())
        covered |= layer[..., 3] == 255
    return masks[::-1]


def _with_alpha(layer: np.ndarray, alpha: np.ndarray, hidden: np.ndarray, composite: np.ndarray) -> np.ndarray:
    out = layer.copy()
    out[..., 3] = alpha
    out[..., :3] = np.where(hidden[..., None], composite[..., :3], layer[..., :3])
    return out


def _shows(layer: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    return (layer[..., 3] > 0) & ~hidden


def _shown(truth: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(layer, hidden mask) of the truth layers that show somewhere, back→front."""
    return [(layer, hidden) for layer, hidden in zip(truth, hidden_masks(truth), strict=True)
            if _shows(layer, hidden).any()]


def visible_layers(truth: list[np.ndarray], composite: np.ndarray) -> list[np.ndarray]:
    """Each truth layer cut to where it is not hidden; layers hidden everywhere dropped."""
    return [_with_alpha(layer, np.where(hidden, 0, layer[..., 3]).astype(np.uint8), hidden, composite)
            for layer, hidden in _shown(truth)]


def ground_completed(truth: list[np.ndarray], composite: np.ndarray) -> list[np.ndarray]:
    """``visible_layers`` with the lowest one opaque wherever it is hidden too."""
    out = visible_layers(truth, composite)
    ground, hidden = _shown(truth)[0]
    out[0] = _with_alpha(ground, np.where(hidden, 255, ground[..., 3]).astype(np.uint8), hidden, composite)
    return out


def box_completed(truth: list[np.ndarray], composite: np.ndarray) -> list[np.ndarray]:
    """``ground_completed``, each upper layer also keeping its hidden alpha inside its shown part's bounding box."""
    out = ground_completed(truth, composite)
    for index, (layer, hidden) in enumerate(_shown(truth)[1:], start=1):
        ys, xs = np.nonzero(_shows(layer, hidden))
        box = np.zeros(hidden.shape, dtype=bool)
        box[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
        alpha = np.where(hidden & ~box, 0, layer[..., 3]).astype(np.uint8)
        out[index] = _with_alpha(layer, alpha, hidden, composite)
    return out


def shown_layers(truth: list[np.ndarray], composite: np.ndarray) -> list[np.ndarray]:
    """The truth's layers that show anywhere, whole."""
    return [_with_alpha(layer, layer[..., 3], hidden, composite) for layer, hidden in _shown(truth)]


def ceiling_stacks(truth: list[np.ndarray], composite: np.ndarray) -> dict[str, list[np.ndarray]]:
    """Every ceiling's layer stack (back→front), keyed by the names in ``CEILINGS``."""
    if not truth:
        raise ValueError("the ground truth needs at least one layer")
    if not _shown(truth):
        raise ValueError("no layer of the ground truth shows anywhere: the image is fully transparent")
    builders = (visible_layers, ground_completed, box_completed, shown_layers)
    return {name: build(truth, composite) for name, build in zip(CEILINGS, builders, strict=True)}


def _top_index(layers: list[np.ndarray]) -> np.ndarray:
    """Per pixel, the index of the topmost layer with any alpha there (−1 where none has)."""
    top = np.full(layers[0].shape[:2], -1)
    for index, layer in enumerate(layers):
        top[layer[..., 3] > 0] = index
    return top


def _owners(predicted: list[np.ndarray], truth: list[np.ndarray]) -> dict[int, list[int]]:
    """Each truth layer (−1: none) → the indices of ``predicted``'s layers it owns: a layer of ours belongs to the truth
    layer that owns most of the pixels where ours is the topmost (a pixel's owner: the topmost truth layer with alpha
    there)."""
    owner, ours = _top_index(truth), _top_index(predicted)
    groups: dict[int, list[int]] = {}
    for index in range(len(predicted)):
        owned = owner[(ours == index) & (owner >= 0)]
        groups.setdefault(int(np.bincount(owned).argmax()) if owned.size else -1, []).append(index)
    return groups


def regrouped_by_truth(predicted: list[np.ndarray], truth: list[np.ndarray], merge: bool = True) -> list[np.ndarray]:
    """``predicted`` (back→front) grouped and ordered as the designer's: its layers that belong to one truth layer
    merged in their order (Pillow's alpha_composite, as LayerD merges), the groups stacked in the truth's order; with
    ``merge`` False only reordered (stably), none merged. Layers topmost nowhere over the truth's pixels go below."""
    groups = _owners(predicted, truth)
    if not merge:
        return [predicted[index] for key in sorted(groups) for index in groups[key]]
    return [reduce(alpha_composite, [predicted[index] for index in groups[key]]) for key in sorted(groups)]


@dataclass(frozen=True)
class Pieces:
    """How a decomposition's layers line up with the truth's visible ones."""

    truth_shown: int  # truth layers that own some pixel
    truth_unowned: int  # of them, those no layer of ours belongs to (they went into another's layer)
    unowned_in_our_bottom: int  # of those, the ones whose pixels mostly lie in our bottom layer
    extra_pieces: int  # layers of ours beyond the first that belong to one truth layer


def pieces(predicted: list[np.ndarray], truth: list[np.ndarray]) -> Pieces:
    """The counts of ``Pieces`` for one decomposition (both stacks back→front)."""
    groups = _owners(predicted, truth)
    owner, ours = _top_index(truth), _top_index(predicted)
    shown = [index for index in range(len(truth)) if (owner == index).any()]
    unowned = [index for index in shown if index not in groups]
    in_bottom = sum(float((ours[owner == index] == 0).mean()) > 0.5 for index in unowned)
    extra = sum(len(members) - 1 for key, members in groups.items() if key >= 0)
    return Pieces(len(shown), len(unowned), in_bottom, extra)
