# SPDX-License-Identifier: GPL-3.0-or-later
"""The camera view as a flat layout: where each layer plane lands in the rendered image, in pixels.

Numbers in, numbers out. A plane parallel to the camera sensor projects to an axis-aligned rectangle, which is what
PowerPoint pictures and Photoshop layers can express; the layout JSON (see the server's export routes) lists those
rectangles back to front with opacity and visibility:

    {"width_px": W, "height_px": H, "name": "...",
     "layers": [{"name", "x_px", "y_px", "width_px", "height_px", "opacity", "visible"}, ...]}

The projection follows Blender's perspective camera: the frame at unit distance comes from
``camera_frame.frame_size_at_distance_m`` (sensor fit, focal length, image aspect) and a lens shift moves it by
``shift × larger side``.
Pixel (0, 0) is the top-left corner of the image, +y down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import camera_frame

Vector3 = tuple[float, float, float]
Matrix4 = tuple[tuple[float, float, float, float], ...]

# A projected plane whose corners are further than this from its bounding rectangle's corners is not parallel to
# the sensor (an orbit turned the camera): it is still exported, as that rectangle, with a warning.
RECTANGLE_TOLERANCE_PX = 0.5


class ViewExportError(ValueError):
    """The camera view cannot be laid out (orthographic camera, nothing in front of the camera, ...)."""


@dataclass(frozen=True)
class CameraProjection:
    """A perspective camera: its world matrix (4×4 rows, may include scale) and lens, and the render size."""

    matrix_world: Matrix4
    focal_length_mm: float
    sensor_width_mm: float
    sensor_height_mm: float
    sensor_fit: str
    width_px: int
    height_px: int
    shift_x: float = 0.0
    shift_y: float = 0.0

    def to_camera(self, point: Vector3) -> Vector3:
        """World point → camera space (the camera looks down -Z, +Y up); scale in the matrix is ignored."""
        m = self.matrix_world
        d = [point[i] - m[i][3] for i in range(3)]
        axes = []
        for col in range(3):
            axis = [m[row][col] for row in range(3)]
            length = math.sqrt(sum(c * c for c in axis)) or 1.0
            axes.append([c / length for c in axis])
        return tuple(sum(axes[col][i] * d[i] for i in range(3)) for col in range(3))  # type: ignore[return-value]

    def project_px(self, point: Vector3) -> tuple[float, float, float]:
        """World point → (x_px, y_px, depth_m) in the rendered image; depth_m > 0 in front of the camera."""
        q = self.to_camera(point)
        depth_m = -q[2]
        if depth_m <= 1e-9:
            return math.nan, math.nan, depth_m
        frame_w, frame_h = camera_frame.frame_size_at_distance_m(1.0, self.sensor_width_mm, self.focal_length_mm,
                                                           self.width_px, self.height_px, self.sensor_fit,
                                                           self.sensor_height_mm)
        offset_x, offset_y = camera_frame.shift_offset_m(frame_w, frame_h, self.shift_x, self.shift_y)
        x_px = ((q[0] / depth_m - offset_x) / frame_w + 0.5) * self.width_px
        y_px = (0.5 - (q[1] / depth_m - offset_y) / frame_h) * self.height_px
        return x_px, y_px, depth_m


@dataclass(frozen=True)
class PlaneView:
    """One layer plane: its image's corners in world space (top-left, top-right, bottom-right, bottom-left)."""

    name: str
    corners_world: tuple[Vector3, Vector3, Vector3, Vector3]
    opacity: float = 1.0
    visible: bool = True


@dataclass
class ViewLayout:
    layout: dict
    included: list[int] = field(default_factory=list)  # indices into the planes given, in layout order
    warnings: list[str] = field(default_factory=list)


def plane_depth_m(camera: CameraProjection, plane: PlaneView) -> float:
    """Distance of the plane's centre along the view axis (what "farther" means for drawing order)."""
    centre = tuple(sum(corner[i] for corner in plane.corners_world) / 4.0 for i in range(3))
    return -camera.to_camera(centre)[2]  # type: ignore[arg-type]


def layout_for_view(camera: CameraProjection, planes: list[PlaneView], name: str = "Strata view") -> ViewLayout:
    """The layout JSON of what ``camera`` sees: planes drawn far → near (ties keep the given order)."""
    # 1. Check inputs
    if camera.width_px <= 0 or camera.height_px <= 0:
        raise ViewExportError(f"render size must be positive, got {camera.width_px}×{camera.height_px}")
    if not planes:
        raise ViewExportError("no layer planes to export; build a stack first")

    # 2. Drawing order: the renderer draws farther planes first, so the layout lists them first
    order = sorted(range(len(planes)), key=lambda i: -plane_depth_m(camera, planes[i]))

    # 3. Project each plane to its rectangle in the image
    result = ViewLayout(layout={"width_px": int(camera.width_px), "height_px": int(camera.height_px),
                                "name": name, "layers": []})
    for index in order:
        plane = planes[index]
        projected = [camera.project_px(corner) for corner in plane.corners_world]
        if any(not depth_m > 0 for _, _, depth_m in projected):
            result.warnings.append(f"'{plane.name}' is (partly) behind the camera and was left out")
            continue
        xs = [x for x, _, _ in projected]
        ys = [y for _, y, _ in projected]
        left, right, top, bottom = min(xs), max(xs), min(ys), max(ys)
        expected = [(left, top), (right, top), (right, bottom), (left, bottom)]
        corner_error_px = max(math.hypot(x - ex, y - ey)
                              for (x, y, _), (ex, ey) in zip(projected, expected, strict=False))
        if corner_error_px > RECTANGLE_TOLERANCE_PX:
            result.warnings.append(f"'{plane.name}' is not parallel to the camera sensor (or is mirrored); it was "
                                   f"exported as its bounding rectangle")
        result.layout["layers"].append({
            "name": plane.name,
            "x_px": round(left, 3),
            "y_px": round(top, 3),
            "width_px": round(right - left, 3),
            "height_px": round(bottom - top, 3),
            "opacity": min(max(float(plane.opacity), 0.0), 1.0),
            "visible": bool(plane.visible),
        })
        result.included.append(index)
    if not result.included:
        raise ViewExportError("every layer plane is behind the camera; move the camera back in front of the stack")
    return result


def apply_hsv(rgba: np.ndarray, hue: float = 0.5, saturation: float = 1.0, value: float = 1.0) -> np.ndarray:
    """Blender's Hue/Saturation/Value node on an H×W×4 uint8 image (alpha untouched), for baking exports.

    As the node does: the hue turns by ``hue - 0.5`` (wrapping), saturation is multiplied and clamped to [0, 1],
    value is multiplied (then clipped to 255 here, as the render clips it).
    """
    if (hue, saturation, value) == (0.5, 1.0, 1.0):
        return rgba
    rgb = rgba[..., :3].astype(np.float64) / 255.0
    maximum, minimum = rgb.max(axis=2), rgb.min(axis=2)
    delta = maximum - minimum
    safe_delta = np.where(delta > 0, delta, 1.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    h = np.where(maximum == r, ((g - b) / safe_delta) % 6.0,
                 np.where(maximum == g, (b - r) / safe_delta + 2.0, (r - g) / safe_delta + 4.0)) / 6.0
    h = np.where(delta > 0, h, 0.0)
    s = np.where(maximum > 0, delta / np.where(maximum > 0, maximum, 1.0), 0.0)
    h = (h + hue - 0.5) % 1.0
    s = np.clip(s * saturation, 0.0, 1.0)
    v = maximum * value
    # HSV → RGB
    i = np.floor(h * 6.0).astype(int) % 6
    f = h * 6.0 - np.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    choices_r = [v, q, p, p, t, v]
    choices_g = [t, v, v, q, p, p]
    choices_b = [p, p, t, v, v, q]
    out = np.stack([np.choose(i, choices_r), np.choose(i, choices_g), np.choose(i, choices_b)], axis=2)
    result = rgba.copy()
    result[..., :3] = np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
    return result
