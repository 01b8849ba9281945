# SPDX-License-Identifier: GPL-3.0-or-later
"""Camera-frame maths: how large the camera frame is at a distance, and the planes that fill it. Numbers in,
numbers out.

A stack is a set of planes facing the camera at increasing distance; each plane is scaled so that it exactly fills
the camera frame seen from the rest pose. Blender's camera frame follows ``sensor_fit``: with 'AUTO' the sensor
width applies to the larger image dimension, with 'HORIZONTAL' to the width, with 'VERTICAL' the sensor height
applies to the height. Lens shift moves the frame by ``shift × (larger frame dimension)``.
"""

from __future__ import annotations

import math

SENSOR_FITS = ("AUTO", "HORIZONTAL", "VERTICAL")
# A re-decomposed layer's sub-layers spread over this fraction of the stack's depth spacing, centred on the layer's
# depth: they stay between the neighbouring layers.
SUBSTACK_SPAN_FRACTION = 0.5


class CameraFrameError(ValueError):
    """Impossible geometry (non-positive distance, size or focal length)."""


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise CameraFrameError(f"{name} must be positive, got {value!r}")


def frame_size_at_distance_m(distance_m: float, sensor_width_mm: float, focal_length_mm: float, width_px: int,
                             height_px: int, sensor_fit: str = "AUTO", sensor_height_mm: float | None = None
                             ) -> tuple[float, float]:
    """(width_m, height_m) of the perspective camera's frame on a plane ``distance_m`` in front of it."""
    _check_positive(distance_m=distance_m, sensor_width_mm=sensor_width_mm, focal_length_mm=focal_length_mm,
                    width_px=width_px, height_px=height_px)
    if sensor_fit not in SENSOR_FITS:
        raise CameraFrameError(f"sensor_fit must be one of {', '.join(SENSOR_FITS)}, got {sensor_fit!r}")
    aspect = width_px / height_px
    if sensor_fit == "VERTICAL":
        height_m = distance_m * (sensor_height_mm or sensor_width_mm) / focal_length_mm
        return height_m * aspect, height_m
    if sensor_fit == "HORIZONTAL" or width_px >= height_px:
        width_m = distance_m * sensor_width_mm / focal_length_mm
        return width_m, width_m / aspect
    height_m = distance_m * sensor_width_mm / focal_length_mm
    return height_m * aspect, height_m


def plane_size_m(distance_m: float, sensor_width_mm: float, focal_length_mm: float, width_px: int, height_px: int,
                 sensor_fit: str = "AUTO", sensor_height_mm: float | None = None) -> tuple[float, float]:
    """Size of a plane at ``distance_m`` that exactly covers the camera frame (the scale compensation)."""
    return frame_size_at_distance_m(distance_m, sensor_width_mm, focal_length_mm, width_px, height_px,
                                    sensor_fit, sensor_height_mm)


def ortho_plane_size_m(ortho_scale_m: float, width_px: int, height_px: int, sensor_fit: str = "AUTO"
                       ) -> tuple[float, float]:
    """Plane size for an orthographic camera: independent of distance, ``ortho_scale`` spans the fitted side."""
    _check_positive(ortho_scale_m=ortho_scale_m, width_px=width_px, height_px=height_px)
    aspect = width_px / height_px
    if sensor_fit == "VERTICAL" or (sensor_fit == "AUTO" and height_px > width_px):
        return ortho_scale_m * aspect, ortho_scale_m
    return ortho_scale_m, ortho_scale_m / aspect


def shift_offset_m(frame_width_m: float, frame_height_m: float, shift_x: float, shift_y: float) -> tuple[float, float]:
    """Where the frame centre sits (x, y in camera space) for a lens shift: shift is relative to the larger side."""
    larger_m = max(frame_width_m, frame_height_m)
    return shift_x * larger_m, shift_y * larger_m


def layer_distances_m(n: int, base_distance_m: float, depth_spacing_m: float) -> list[float]:
    """Distance from the camera of each layer, index 0 = back = farthest; the front layer sits at
    ``base_distance_m``."""
    if n < 0:
        raise CameraFrameError(f"layer count must be >= 0, got {n}")
    _check_positive(base_distance_m=base_distance_m)
    if depth_spacing_m < 0:
        raise CameraFrameError(f"depth_spacing_m must be >= 0, got {depth_spacing_m}")
    return [base_distance_m + (n - 1 - index) * depth_spacing_m for index in range(n)]


def substack_depths_m(depth_m: float, depth_spacing_m: float, count: int) -> list[float]:
    """Depths of ``count`` sub-layers (back → front) that replace a layer at ``depth_m``: spread around it over
    SUBSTACK_SPAN_FRACTION of the stack's depth spacing, so they stay between the neighbouring layers."""
    if count == 1:
        return [depth_m]
    span_m = SUBSTACK_SPAN_FRACTION * depth_spacing_m
    return [depth_m + span_m / 2 - index * span_m / (count - 1) for index in range(count)]


def fov_rad(sensor_mm: float, focal_length_mm: float) -> float:
    _check_positive(sensor_mm=sensor_mm, focal_length_mm=focal_length_mm)
    return 2.0 * math.atan(sensor_mm / (2.0 * focal_length_mm))


def clip_range_m(distances_m: list[float], clip_start_m: float, clip_end_m: float) -> tuple[float, float]:
    """Camera clip range widened (never narrowed) so every plane is between clip start and end."""
    if not distances_m:
        return clip_start_m, clip_end_m
    nearest, farthest = min(distances_m), max(distances_m)
    return min(clip_start_m, nearest * 0.5), max(clip_end_m, farthest * 1.5)


def transparent_bounces_needed(layer_count: int, margin: int = 4) -> int:
    """Cycles stops at ``transparent_max_bounces``: fewer than the layer count turns the stack black behind it."""
    return layer_count + margin
