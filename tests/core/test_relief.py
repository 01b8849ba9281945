# SPDX-License-Identifier: GPL-3.0-or-later
"""Relief grid maths (bpy-free): vertices stay on their rest rays, a tilted plane of known depth comes out tilted,
relief stays inside the slab between neighbouring layers."""

import numpy as np
import pytest

from blender_addon.core import relief

DEPTH_M, WIDTH_M, HEIGHT_M, CX_M, CY_M = 5.0, 4.0, 3.0, 0.3, -0.2


def camera_space(positions_local):
    """Plane coordinates → rest camera space (the plane's scale and location, as scene/planes places it)."""
    return positions_local * [WIDTH_M, HEIGHT_M, 1.0] + [CX_M, CY_M, -DEPTH_M]


def tilted_nearness(width_px=256, height_px=192):
    """A plane tilted left to right: nearness rises linearly with x (0 at the left edge, 1 at the right)."""
    x = (np.arange(width_px) + 0.5) / width_px
    return np.tile(x, (height_px, 1))


def test_a_tilted_layer_becomes_a_tilted_surface_on_the_rest_rays():
    nearness = tilted_nearness()
    half_slab_m = 0.4
    positions, uvs, quads = relief.relief_grid(nearness, 1.0, half_slab_m, DEPTH_M, WIDTH_M, HEIGHT_M, CX_M, CY_M)
    points = camera_space(positions)
    distance_m = -points[:, 2]
    # Known depth: the right edge (nearest) comes forward by the whole slab, the left goes back by it, linearly.
    expected_m = DEPTH_M - half_slab_m * np.clip(2.0 * (uvs[:, 0] - 0.5) / 0.96, -1, 1)
    assert distance_m == pytest.approx(expected_m, abs=0.01)
    assert distance_m.min() >= DEPTH_M - half_slab_m - 1e-9 and distance_m.max() <= DEPTH_M + half_slab_m + 1e-9
    # Every vertex still projects onto the image point it shows: the rest view is unchanged.
    a_u, b_u, a_v, b_v = relief.projection_constants(DEPTH_M, WIDTH_M, HEIGHT_M, CX_M, CY_M)
    seen_u = a_u * points[:, 0] / distance_m + b_u
    seen_v = a_v * points[:, 1] / distance_m + b_v
    assert seen_u == pytest.approx(uvs[:, 0], abs=1e-12) and seen_v == pytest.approx(uvs[:, 1], abs=1e-12)
    # A surface that is flat in the right-hand frame is a plane: second differences along u vanish inside.
    columns, rows = relief.grid_cells(256, 192)
    grid = points.reshape(rows + 1, columns + 1, 3)
    middle = grid[:, 5:-5, 2]
    assert np.abs(np.diff(middle, 2, axis=1)).max() < 1e-9


def test_zero_relief_is_the_flat_plane():
    positions, uvs, _ = relief.relief_grid(tilted_nearness(), 0.0, 0.4, DEPTH_M, WIDTH_M, HEIGHT_M, CX_M, CY_M)
    assert positions[:, 2] == pytest.approx(0.0)
    assert positions[:, 0] == pytest.approx(uvs[:, 0] - 0.5) and positions[:, 1] == pytest.approx(uvs[:, 1] - 0.5)


def test_relief_stays_inside_the_slab_so_layers_never_cross():
    depths_m = [6.0, 5.5, 5.0]
    rng = np.random.default_rng(3)
    surfaces = []
    for index, depth_m in enumerate(depths_m):
        half = relief.slab_half_m(depths_m, index)
        assert half == pytest.approx(0.45 * 0.5)
        positions, _, _ = relief.relief_grid(rng.random((64, 64)), 1.0, half, depth_m, WIDTH_M, HEIGHT_M)
        surfaces.append(depth_m - positions[:, 2])
    for back, front in zip(surfaces, surfaces[1:], strict=False):
        assert front.max() < back.min(), "a front layer's relief must stay in front of the layer behind"
    assert relief.slab_half_m([4.0], 0) == pytest.approx(0.4)


def test_grid_topology_and_size():
    assert relief.grid_cells(1024, 1024) == (128, 128)
    assert relief.grid_cells(1024, 512) == (128, 64)
    assert relief.grid_cells(16, 12) == (4, 3)
    quads = relief.grid_quads(3, 2)
    assert quads.shape == (6, 4) and quads.max() == 11
    assert list(quads[0]) == [0, 1, 5, 4]


def test_overscan_extent_runs_the_grid_past_the_image_with_edge_depth():
    positions, uvs, _ = relief.relief_grid(tilted_nearness(), 0.5, 0.2, DEPTH_M, WIDTH_M, HEIGHT_M,
                                           extent=(0.1, 0.0, 0.0, 0.2))
    assert uvs[:, 0].min() == pytest.approx(-0.1) and uvs[:, 1].max() == pytest.approx(1.2)


def test_bad_input_is_refused():
    with pytest.raises(relief.ReliefError, match="between 0 and 1"):
        relief.relief_offsets_m(np.zeros(4), 1.5, 0.1)
    with pytest.raises(relief.ReliefError, match="H×W"):
        relief.sample_nearness(np.zeros((4, 4, 3)), np.zeros(1), np.zeros(1))
