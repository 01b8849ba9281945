# SPDX-License-Identifier: GPL-3.0-or-later
"""Relief inside a layer: its plane becomes a grid whose vertices slide along the rays from the rest camera.

Numbers in, numbers out (numpy, no bpy). A layer plane is the unit square in its own coordinates, placed in the
rest camera's space at ``(centre_x_m, centre_y_m, -depth_m)`` with scale ``(width_m, height_m, 1)`` (``scene/planes``).
A vertex seen by the rest camera at image point (u, v) stays on the ray through that point and only its distance
changes: ``depth_m → depth_m + offset_m``. The rest view is therefore unchanged (each surface point is textured with
the image point its rest ray passes through), while a moving camera sees the layer's own shape.

Offsets come from the layer's ``depth_XX.png`` (16-bit nearness, ``inference_server.depth``): nearer than the layer's
middle comes forward, farther goes back, scaled by the Relief amount (0 = flat, 1 = the whole slab) and bounded by the
layer's slab, a fraction of the gap to its neighbours on either side, so layers never cross.
"""

from __future__ import annotations

import numpy as np

# Of the gap to each neighbour, a layer's relief may use this much (two neighbours together stay under the gap).
SLAB_FRACTION = 0.45
# A layer alone (no neighbour to measure a gap to) may move this fraction of its distance to the camera.
LONE_SLAB_FRACTION = 0.1
# Grid cells along the image's longer side (at most one cell per MIN_CELL_PX pixels).
MAX_GRID_CELLS = 128
MIN_CELL_PX = 4
# Below this spread of nearness (on the job's 0..1 scale) a layer is treated as flat-ish, not amplified.
MIN_NEARNESS_SPAN = 0.1


class ReliefError(ValueError):
    """Impossible input: a depth map that is not 2-D, a non-positive depth, a bad amount."""


def slab_half_m(depths_m: list[float], index: int) -> float:
    """How far layer ``index`` may come forward or go back: SLAB_FRACTION of the gap to its nearest neighbour."""
    depth_m = depths_m[index]
    if depth_m <= 0:
        raise ReliefError(f"layer depth must be positive, got {depth_m}")
    gaps = [abs(other - depth_m) for k, other in enumerate(depths_m) if k != index]
    if not gaps:
        return LONE_SLAB_FRACTION * depth_m
    # Never reach the camera either.
    return min(SLAB_FRACTION * min(gaps), 0.9 * depth_m)


def grid_cells(width_px: int, height_px: int, max_cells: int = MAX_GRID_CELLS) -> tuple[int, int]:
    """(columns, rows) of the relief grid: square-ish cells, at most ``max_cells`` along the longer side."""
    if width_px <= 0 or height_px <= 0:
        raise ReliefError(f"image size must be positive, got {width_px}×{height_px}")
    longer = max(width_px, height_px)
    cells = max(1, min(max_cells, longer // MIN_CELL_PX))
    return max(1, round(cells * width_px / longer)), max(1, round(cells * height_px / longer))


def vertex_uvs(columns: int, rows: int, extent: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
               ) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) of the grid's vertices, (rows+1)×(columns+1) each, v = 0 at the bottom. ``extent`` = (left, right,
    bottom, top) margins in image units (overscan): the grid runs from -left to 1 + right."""
    left, right, bottom, top = extent
    u = np.linspace(-left, 1.0 + right, columns + 1)
    v = np.linspace(-bottom, 1.0 + top, rows + 1)
    return np.meshgrid(u, v)


def sample_nearness(nearness: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear samples of a nearness map (H×W, top row first, any scale) at image coordinates (u, v), clamped to
    the edge outside [0, 1]."""
    if nearness.ndim != 2:
        raise ReliefError(f"a depth map is H×W, got shape {nearness.shape}")
    height, width = nearness.shape
    x = np.clip(u * width - 0.5, 0.0, width - 1.0)
    y = np.clip((1.0 - v) * height - 0.5, 0.0, height - 1.0)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    fx, fy = x - x0, y - y0
    data = nearness.astype(np.float64)
    top = data[y0, x0] * (1 - fx) + data[y0, x1] * fx
    bottom = data[y1, x0] * (1 - fx) + data[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def relief_offsets_m(nearness: np.ndarray, amount: float, half_slab_m: float) -> np.ndarray:
    """Distance change of each sample (negative = towards the camera) for nearness samples on a 0..1 scale.

    The layer's robust nearness range (2nd–98th percentile, at least MIN_NEARNESS_SPAN wide) maps onto the slab:
    its nearest end comes forward ``amount × half_slab_m``, its farthest goes back as much."""
    if not 0.0 <= amount <= 1.0:
        raise ReliefError(f"relief amount must be between 0 and 1, got {amount}")
    low, high = np.percentile(nearness, [2.0, 98.0])
    middle = 0.5 * (low + high)
    span = max(high - low, MIN_NEARNESS_SPAN)
    shape = np.clip(2.0 * (nearness - middle) / span, -1.0, 1.0)
    return -amount * half_slab_m * shape


def grid_local_positions(u: np.ndarray, v: np.ndarray, offsets_m: np.ndarray, depth_m: float, width_m: float,
                         height_m: float, centre_x_m: float = 0.0, centre_y_m: float = 0.0) -> np.ndarray:
    """Vertex positions (N×3, rows of the grid bottom to top) in the plane's own coordinates (before its scale).

    Camera space of a flat vertex: P = (cx + W·(u-½), cy + H·(v-½), -d). Moved along its ray to distance d + o:
    P·(d+o)/d. Back to plane coordinates: subtract the plane's location, divide by its scale."""
    if depth_m <= 0 or width_m <= 0 or height_m <= 0:
        raise ReliefError(f"depth and size must be positive, got depth {depth_m}, size {width_m}×{height_m}")
    factor = (depth_m + offsets_m) / depth_m
    if np.any(factor <= 0):
        raise ReliefError("relief would move part of the layer behind the camera")
    camera_x = centre_x_m + width_m * (u - 0.5)
    camera_y = centre_y_m + height_m * (v - 0.5)
    local = np.empty(u.shape + (3,), np.float64)
    local[..., 0] = (camera_x * factor - centre_x_m) / width_m
    local[..., 1] = (camera_y * factor - centre_y_m) / height_m
    local[..., 2] = -offsets_m
    return local.reshape(-1, 3)


def grid_quads(columns: int, rows: int) -> np.ndarray:
    """Vertex indices (M×4, counter-clockwise seen from the camera) of the grid's quads, row-major from the bottom."""
    index = np.arange((rows + 1) * (columns + 1)).reshape(rows + 1, columns + 1)
    return np.stack([index[:-1, :-1], index[:-1, 1:], index[1:, 1:], index[1:, :-1]], axis=-1).reshape(-1, 4)


def projection_constants(depth_m: float, width_m: float, height_m: float, centre_x_m: float = 0.0,
                         centre_y_m: float = 0.0) -> tuple[float, float, float, float]:
    """(a_u, b_u, a_v, b_v) with u = a_u·X/(-Z) + b_u, v = a_v·Y/(-Z) + b_v for a point (X, Y, Z) in the rest
    camera's space: the texture coordinate the rest camera sees there, whatever the point's distance."""
    return depth_m / width_m, 0.5 - centre_x_m / width_m, depth_m / height_m, 0.5 - centre_y_m / height_m


def relief_grid(nearness: np.ndarray, amount: float, half_slab_m: float, depth_m: float, width_m: float,
                height_m: float, centre_x_m: float = 0.0, centre_y_m: float = 0.0,
                extent: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0), max_cells: int = MAX_GRID_CELLS
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions N×3, uvs N×2, quads M×4) of a layer's relief grid; ``nearness`` on a 0..1 scale (H×W)."""
    height_px, width_px = nearness.shape
    columns, rows = grid_cells(width_px, height_px, max_cells)
    u, v = vertex_uvs(columns, rows, extent)
    offsets_m = relief_offsets_m(sample_nearness(nearness, u, v), amount, half_slab_m)
    positions = grid_local_positions(u, v, offsets_m, depth_m, width_m, height_m, centre_x_m, centre_y_m)
    uvs = np.stack([u.ravel(), v.ravel()], axis=-1)
    return positions, uvs, grid_quads(columns, rows)
