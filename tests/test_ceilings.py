# SPDX-License-Identifier: GPL-3.0-or-later
"""The ceilings a reader of scripts/bench_ceiling.py compares us with: each is a valid decomposition of the same
image, knows only what its rule says, and they score in the order their knowledge grows."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.ceilings import CEILINGS, Pieces, ceiling_stacks, hidden_masks, pieces, regrouped_by_truth
from benchmarks.metrics import alpha_composite, score_layers
from inference_server.layers import composite_over


def _layer(height: int, width: int, rgb, box=None, alpha: int = 255) -> np.ndarray:
    layer = np.zeros((height, width, 4), np.uint8)
    y0, y1, x0, x1 = box or (0, height, 0, width)
    layer[y0:y1, x0:x1] = (*rgb, alpha)
    return layer


@pytest.fixture
def card():
    """White paper (hidden under the photo), a full-canvas photo, a panel, a word on the panel, a translucent veil."""
    rng = np.random.default_rng(3)
    paper = _layer(60, 80, (255, 255, 255))
    photo = _layer(60, 80, (0, 0, 0))
    photo[..., :3] = rng.integers(0, 255, (60, 80, 3))
    panel = _layer(60, 80, (20, 90, 200), (10, 50, 10, 70))
    word = _layer(60, 80, (250, 250, 0), (25, 35, 20, 60))
    veil = _layer(60, 80, (0, 0, 0), (0, 60, 0, 20), alpha=100)
    truth = [paper, photo, panel, word, veil]
    return truth, composite_over(truth)


def test_every_ceiling_composites_to_the_input_exactly(card):
    truth, composite = card
    for name, stack in ceiling_stacks(truth, composite).items():
        assert np.array_equal(composite_over(stack), composite), name


def test_what_the_image_cannot_show_is_left_out_and_hidden_colour_is_the_inputs(card):
    truth, composite = card
    stacks = ceiling_stacks(truth, composite)
    assert len(stacks["visible pixels"]) == 4, "the paper under the full-canvas photo shows nowhere"
    panel = stacks["visible pixels"][1]
    under_word = (slice(25, 35), slice(20, 60))
    assert (panel[under_word][..., 3] == 0).all(), "the word's pixels are not the panel's"
    assert np.array_equal(panel[under_word][..., :3], composite[under_word][..., :3])
    assert (stacks["visible + boxes"][1][under_word][..., 3] == 255).all(), "the panel goes on under its word"
    assert (stacks["visible + ground"][0][..., 3] == 255).all()
    # The translucent veil hides nothing: the photo under it, left of the panel, keeps its alpha.
    assert not hidden_masks(truth)[1][:, :10].any()


def test_the_ceilings_score_in_the_order_of_what_they_know(card):
    truth, composite = card
    stacks = ceiling_stacks(truth, composite)
    assert list(stacks) == list(CEILINGS)
    # At edit level 0; the greedy merge edits need not keep this order (here the completed ground merges one
    # step sooner than the cut one).
    levels = [score_layers(stacks[name], truth) for name in CEILINGS]
    iou_e0 = [scores[0].alpha_iou for scores in levels]
    assert iou_e0 == sorted(iou_e0) and iou_e0[0] < 0.9 and iou_e0[-1] == 1.0
    one_layer = score_layers([composite], truth)
    assert levels[0][-1].alpha_iou < one_layer[-1].alpha_iou == 1.0, (
        "visible pixels alone lose to one layer at edit level 5 over a hidden ground")


def test_a_fully_transparent_truth_is_refused_with_the_reason():
    empty = np.zeros((8, 8, 4), np.uint8)
    with pytest.raises(ValueError, match="fully transparent"):
        ceiling_stacks([empty, empty.copy()], empty)


def test_regrouping_merges_the_pieces_of_one_designer_layer_and_stacks_them_in_its_order(card):
    truth, composite = card
    paper, photo, panel, word, veil = truth
    left, right = word.copy(), word.copy()
    left[:, 40:, 3] = 0
    right[:, :40, 3] = 0
    # A decomposition that cut the word in two and put the veil under the panel.
    ours = [photo, veil, panel, left, right]
    regrouped = regrouped_by_truth(ours, truth)
    assert len(regrouped) == 4
    assert np.array_equal(regrouped[2][..., 3], word[..., 3]), "the word's halves are one layer again"
    assert np.array_equal(regrouped[3], veil), "the veil back on top, where the designer put it"
    before = score_layers(ours, truth)[0].alpha_iou
    assert score_layers(regrouped, truth)[0].alpha_iou > before
    reordered = regrouped_by_truth(ours, truth, merge=False)
    assert [id(layer) for layer in reordered] == [id(layer) for layer in (photo, panel, left, right, veil)]
    assert pieces(ours, truth) == Pieces(truth_shown=4, truth_unowned=0, unowned_in_our_bottom=0, extra_pieces=1)


def test_a_designer_layer_painted_into_our_ground_is_counted_as_unowned(card):
    truth, composite = card
    paper, photo, panel, word, veil = truth
    ours = [alpha_composite(photo, panel), word, veil]
    assert pieces(ours, truth) == Pieces(truth_shown=4, truth_unowned=1, unowned_in_our_bottom=1, extra_pieces=0)
