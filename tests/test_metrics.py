# SPDX-License-Identifier: GPL-3.0-or-later
"""The LayerD scoring protocol: equal to LayerD's own code on fixed inputs, and the sanity anchors a reader of
the benchmark relies on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from layerd_reference import CASE_SEEDS, REFERENCE_SCORES, make_case

from benchmarks.loss_split import (
    EXTRA_CLASSES,
    IOU_CLASSES,
    L1_CLASSES,
    MISSING_CLASSES,
    ground_kind,
    split_extra,
    split_loss,
    split_missing_visible,
)
from benchmarks.metrics import (
    alpha_composite,
    alpha_iou,
    dtw_path,
    edit_states,
    group_layers,
    mean_levels,
    reconstruction_mae,
    rgb_l1,
    score_layers,
)
from benchmarks.samples import make_sample
from inference_server.layers import composite_over

REFERENCE = json.loads((Path(__file__).parent / REFERENCE_SCORES).read_text())


@pytest.mark.parametrize("seed", CASE_SEEDS)
def test_scores_equal_layerd_reference_code_at_every_edit_level(seed):
    # tests/data/layerd_reference_scores.json: LayerD's LayersEditDist on the same layers
    # (scripts/layerd_reference_scores.py). A sample LayerD stopped early carries its last value.
    pred, gt = make_case(seed)
    theirs = REFERENCE["cases"][str(seed)]
    ours = score_layers(pred, gt)
    assert len(ours) == 6
    for level in ours:
        expected = theirs[min(level.edits, len(theirs) - 1)]
        assert level.rgb_l1 == pytest.approx(expected["rgb_l1"], abs=1e-12), f"L1 at e{level.edits}"
        assert level.alpha_iou == pytest.approx(expected["alpha_iou"], abs=1e-12), f"IoU at e{level.edits}"


def test_reference_mean_over_the_cases_at_e0_and_e5():
    ours = mean_levels([score_layers(*make_case(seed)) for seed in CASE_SEEDS])
    for level in (0, 5):
        values = [REFERENCE["cases"][str(s)][min(level, len(REFERENCE["cases"][str(s)]) - 1)] for s in CASE_SEEDS]
        assert ours[level][0] == pytest.approx(np.mean([v["rgb_l1"] for v in values]), abs=1e-12)
        assert ours[level][1] == pytest.approx(np.mean([v["alpha_iou"] for v in values]), abs=1e-12)


def test_grouping_keeps_the_lower_colour_under_zero_alpha_as_pillow_does():
    lower = _solid(4, 4, (200, 10, 10))
    upper = np.zeros((4, 4, 4), np.uint8)
    upper[..., :3] = (0, 0, 255)  # colour, but invisible
    upper[0, 0] = (0, 0, 255, 255)
    merged = alpha_composite(lower, upper)
    assert tuple(merged[3, 3]) == (200, 10, 10, 255)
    assert tuple(merged[0, 0]) == (0, 0, 255, 255)
    # Two disjoint layers grouped into one: where both are transparent, the lower one's colour stays.
    left = np.zeros((4, 8, 4), np.uint8)
    left[..., :3] = 90
    left[:, :2, 3] = 255
    right = np.zeros((4, 8, 4), np.uint8)
    right[:, 6:] = (10, 20, 30, 255)
    grouped = group_layers([left, right])
    assert len(grouped) == 1 and tuple(grouped[0][0, 4]) == (90, 90, 90, 0)


def _solid(height_px, width_px, rgb, box=None, alpha=255):
    layer = np.zeros((height_px, width_px, 4), np.uint8)
    y0, y1, x0, x1 = box or (0, height_px, 0, width_px)
    layer[y0:y1, x0:x1] = (*rgb, alpha)
    return layer


@pytest.mark.parametrize("kind", ["flat", "semi", "cutout"])
def test_ground_truth_against_itself_is_perfect_at_every_edit_level(kind):
    sample = make_sample(kind, 128, 96, seed=1)
    levels = score_layers(sample.layers, sample.layers)
    assert len(levels) == 6
    for level in levels:
        assert level.rgb_l1 == 0.0
        assert level.alpha_iou == 1.0


def test_single_opaque_layer_baseline_matches_the_notes_anchors():
    # Notes' anchors (their own synthetic poster): L1 0.075 → 0.033, IoU 0.33 → 0.55 from edit 0 to the best.
    samples = [make_sample(kind, 256, 192, seed) for kind in ("flat", "gradient", "semi") for seed in range(2)]
    means = mean_levels([score_layers([s.composite], s.layers) for s in samples])
    l1_e0, iou_e0 = means[0]
    l1_e5, iou_e5 = means[-1]
    assert 0.03 <= l1_e0 <= 0.12
    assert 0.25 <= iou_e0 <= 0.5
    assert 0.45 <= iou_e5 <= 0.7
    assert iou_e5 > iou_e0 and l1_e5 <= l1_e0


def test_disjoint_layers_of_one_depth_group_into_one():
    background = _solid(20, 20, (255, 255, 255))
    left = _solid(20, 20, (255, 0, 0), (2, 8, 2, 8))
    right = _solid(20, 20, (0, 0, 255), (12, 18, 12, 18))
    groups = group_layers([background, left, right])
    assert len(groups) == 2
    assert np.array_equal(groups[1][..., 3] > 0, (left[..., 3] > 0) | (right[..., 3] > 0))
    # So a prediction that keeps the two squares together scores perfectly against one that splits them.
    together = composite_over([left, right])
    levels = score_layers([background, together], [background, left, right])
    assert levels[0].rgb_l1 == 0.0 and levels[0].alpha_iou == 1.0


def test_overlapping_layers_stay_separate():
    background = _solid(20, 20, (255, 255, 255))
    lower = _solid(20, 20, (255, 0, 0), (2, 12, 2, 12))
    upper = _solid(20, 20, (0, 0, 255), (8, 18, 8, 18))
    assert len(group_layers([background, lower, upper])) == 3


def test_pair_metrics_on_known_values():
    gt = _solid(10, 10, (100, 100, 100), (0, 10, 0, 5))
    pred = _solid(10, 10, (151, 100, 100), (0, 10, 0, 10), alpha=255)
    assert rgb_l1(pred, gt) == pytest.approx(51 / 255 / 3)
    assert alpha_iou(pred, gt) == pytest.approx(0.5)
    empty = np.zeros((10, 10, 4), np.uint8)
    assert alpha_iou(empty, empty) == 0.0  # as in LayerD
    assert rgb_l1(pred, empty) == 0.0


def test_dtw_path_follows_the_cheap_diagonal_and_covers_both_ends():
    cost = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    assert dtw_path(cost) == [(0, 0), (1, 1), (2, 2), (3, 2)]


def test_a_one_layer_ground_truth_is_skipped_and_mismatched_sizes_are_refused():
    layer = _solid(8, 8, (1, 2, 3))
    assert score_layers([layer], [layer]) is None
    with pytest.raises(ValueError, match="one shape"):
        score_layers([layer], [_solid(8, 9, (1, 2, 3)), _solid(8, 9, (1, 2, 3))])


def test_reconstruction_error_ignores_colour_under_zero_alpha():
    sample = make_sample("flat", 64, 48, seed=0)
    assert reconstruction_mae(sample.layers, sample.composite) == 0.0
    shifted = sample.composite.copy()
    shifted[..., 0] = np.clip(shifted[..., 0].astype(int) + 3, 0, 255)
    assert reconstruction_mae(sample.layers, shifted) == pytest.approx(0.75, abs=0.1)
    transparent_a = np.zeros((4, 4, 4), np.uint8)
    transparent_b = transparent_a.copy()
    transparent_b[..., :3] = 200
    assert reconstruction_mae([transparent_a], transparent_b) == 0.0


def _page_and_card(card_rgb, under_card_rgb):
    """A white page (under the card: ``under_card_rgb``) and an opaque card at rows/cols 16–47 of 64²."""
    page = np.full((64, 64, 4), 255, np.uint8)
    page[16:48, 16:48, :3] = under_card_rgb
    card = np.zeros((64, 64, 4), np.uint8)
    card[16:48, 16:48] = (*card_rgb, 255)
    return [page, card]


@pytest.mark.parametrize("seed", CASE_SEEDS)
def test_the_loss_split_adds_up_to_the_scores_at_every_edit_level(seed):
    pred, gt = make_case(seed)
    for state in edit_states(pred, gt):
        split = split_loss(state)
        assert sum(split[name] for name in L1_CLASSES) == pytest.approx(state.rgb_l1, abs=1e-9)
        assert sum(split[name] for name in IOU_CLASSES) == pytest.approx(1 - state.alpha_iou, abs=1e-9)
        went = split_missing_visible(state)
        assert sum(went[name] for name in MISSING_CLASSES) == pytest.approx(split["missing, visible"], abs=1e-9)


@pytest.mark.parametrize("seed", CASE_SEEDS)
def test_the_extra_split_adds_up_to_the_extra_visible_class(seed):
    pred, gt = make_case(seed)
    for state in edit_states(pred, gt):
        extra = split_extra(state)
        assert set(extra) == set(EXTRA_CLASSES)
        assert sum(extra.values()) == pytest.approx(split_loss(state)["extra, visible"], abs=1e-9)


def test_the_extra_split_tells_ground_lifted_with_a_layer_from_its_edge():
    truth = _page_and_card((200, 30, 30), (255, 255, 255))
    # Ours: the card with a one-pixel fringe of page round it, and a patch of the page far off it in its layer.
    ours = _page_and_card((200, 30, 30), (255, 255, 255))
    ours[1][15:49, 15:49] = (200, 30, 30, 255)
    ours[1][2:10, 50:62] = (255, 255, 255, 255)
    (level0,) = edit_states(ours, truth, 0)
    extra = split_extra(level0)
    fringe_px, patch_px, union_px = 34 * 34 - 32 * 32, 8 * 12, 34 * 34 + 8 * 12
    assert extra["ground, edge"] == pytest.approx(fringe_px / union_px / 2)
    assert extra["ground, lifted"] == pytest.approx(patch_px / union_px / 2)
    assert extra["pair apart"] == extra["another layer"] == extra["nobody's"] == extra["truth soft"] == 0.0


def test_the_loss_split_blames_a_badly_filled_ground_and_a_card_cut_short_where_they_are():
    truth = _page_and_card((200, 30, 30), (255, 255, 255))
    # Ours: the card right, the page under it filled black instead of the truth's white.
    filled_black = _page_and_card((200, 30, 30), (0, 0, 0))
    (level0,) = edit_states(filled_black, truth, 0)
    split = split_loss(level0)
    assert split["hidden ground"] == pytest.approx(level0.rgb_l1) and level0.rgb_l1 > 0.1
    # Ours: the right half of the card missing (what shows there is left in the page).
    cut_short = _page_and_card((200, 30, 30), (255, 255, 255))
    cut_short[1][16:48, 32:48] = 0
    cut_short[0][16:48, 32:48] = (200, 30, 30, 255)
    (level0,) = edit_states(cut_short, truth, 0)
    split = split_loss(level0)
    assert split["missing, visible"] == pytest.approx(1 - level0.alpha_iou) and split["missing, visible"] > 0.2
    assert ground_kind(truth[0], truth[1][..., 3] > 0) == "flat"


def test_missed_visible_alpha_is_told_apart_by_where_it_went():
    # The right half of a red card left in our page: it went to our ground.
    truth = _page_and_card((200, 30, 30), (255, 255, 255))
    cut_short = _page_and_card((200, 30, 30), (255, 255, 255))
    cut_short[1][16:48, 32:48] = 0
    cut_short[0][16:48, 32:48] = (200, 30, 30, 255)
    (level0,) = edit_states(cut_short, truth, 0)
    went = split_missing_visible(level0)
    assert went["in our ground"] == pytest.approx(split_loss(level0)["missing, visible"])
    assert went["in our ground"] > 0.2
    # A white card on the white page (with a red mark on it): the card's white shows nothing of where it is.
    white_card = _page_and_card((255, 255, 255), (255, 255, 255))
    white_card[1][20:24, 20:24, :3] = (200, 30, 30)
    ours = _page_and_card((255, 255, 255), (255, 255, 255))
    ours[1][...] = 0
    ours[1][20:24, 20:24] = (200, 30, 30, 255)
    (level0,) = edit_states(ours, white_card, 0)
    went = split_missing_visible(level0)
    assert went["same as under"] == pytest.approx(split_loss(level0)["missing, visible"])
    assert went["same as under"] > 0.4
