# SPDX-License-Identifier: GPL-3.0-or-later
"""Camera view → layout JSON (bpy-free): rectangles in pixels, drawing order, hidden layers, odd cameras."""

import colorsys
import math

import numpy as np
import pytest

from blender_addon.core import camera_frame
from blender_addon.core.view_export import CameraProjection, PlaneView, ViewExportError, apply_hsv, layout_for_view

IDENTITY = ((1.0, 0.0, 0.0, 0.0), (0.0, 1.0, 0.0, 0.0), (0.0, 0.0, 1.0, 0.0), (0.0, 0.0, 0.0, 1.0))


def camera(width_px=640, height_px=480, sensor_fit="AUTO", matrix=IDENTITY, **kwargs):
    return CameraProjection(matrix_world=matrix, focal_length_mm=50.0, sensor_width_mm=36.0, sensor_height_mm=24.0,
                            sensor_fit=sensor_fit, width_px=width_px, height_px=height_px, **kwargs)


def stack_plane(cam, distance_m, name="layer", centre=(0.0, 0.0), scale=1.0, **kwargs):
    """A plane at ``distance_m`` sized like scene/planes.py sizes it: it exactly fills the rest camera's frame."""
    width_m, height_m = camera_frame.plane_size_m(distance_m, cam.sensor_width_mm, cam.focal_length_mm, cam.width_px,
                                            cam.height_px, cam.sensor_fit, cam.sensor_height_mm)
    hw, hh = width_m / 2 * scale, height_m / 2 * scale
    cx, cy = centre
    corners = ((cx - hw, cy + hh, -distance_m), (cx + hw, cy + hh, -distance_m), (cx + hw, cy - hh, -distance_m),
               (cx - hw, cy - hh, -distance_m))
    return PlaneView(name, corners, **kwargs)


def translated(x=0.0, y=0.0, z=0.0):
    return ((1.0, 0.0, 0.0, x), (0.0, 1.0, 0.0, y), (0.0, 0.0, 1.0, z), (0.0, 0.0, 0.0, 1.0))


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (500, 500)])
@pytest.mark.parametrize("sensor_fit", ["AUTO", "HORIZONTAL", "VERTICAL"])
def test_every_layer_of_a_fresh_stack_fills_the_frame(size, sensor_fit):
    cam = camera(*size, sensor_fit=sensor_fit)
    planes = [stack_plane(cam, d, f"L{i}") for i, d in enumerate([8.0, 7.0, 6.0, 5.0])]
    result = layout_for_view(cam, planes)
    assert (result.layout["width_px"], result.layout["height_px"]) == size
    for entry in result.layout["layers"]:
        assert (entry["x_px"], entry["y_px"]) == pytest.approx((0, 0), abs=1e-3)
        assert (entry["width_px"], entry["height_px"]) == pytest.approx(size, abs=1e-3)
    assert result.warnings == []


def test_trucking_moves_near_layers_further_than_far_ones():
    cam = camera(matrix=translated(x=0.5))
    far, near = stack_plane(cam, 8.0, "far"), stack_plane(cam, 4.0, "near")
    entries = {e["name"]: e for e in layout_for_view(cam, [far, near]).layout["layers"]}
    frame_w_far = camera_frame.frame_size_at_distance_m(8.0, 36.0, 50.0, 640, 480)[0]
    frame_w_near = camera_frame.frame_size_at_distance_m(4.0, 36.0, 50.0, 640, 480)[0]
    # The camera moved right, so the image moves left, by the move's share of the frame width at that depth.
    assert entries["far"]["x_px"] == pytest.approx(-0.5 / frame_w_far * 640, abs=1e-3)
    assert entries["near"]["x_px"] == pytest.approx(-0.5 / frame_w_near * 640, abs=1e-3)
    assert entries["far"]["width_px"] == pytest.approx(640, abs=1e-3)


def test_dolly_in_scales_about_the_centre():
    cam = camera(matrix=translated(z=-1.0))
    entry = layout_for_view(cam, [stack_plane(cam, 5.0)]).layout["layers"][0]
    assert entry["width_px"] == pytest.approx(640 * 5 / 4, abs=1e-3)
    assert entry["x_px"] + entry["width_px"] / 2 == pytest.approx(320, abs=1e-3)
    assert entry["y_px"] + entry["height_px"] / 2 == pytest.approx(240, abs=1e-3)


def test_layers_are_listed_far_to_near_with_hidden_ones_kept_and_marked():
    cam = camera()
    planes = [stack_plane(cam, 3.0, "front", opacity=0.5), stack_plane(cam, 9.0, "back"),
              stack_plane(cam, 6.0, "middle", visible=False)]
    result = layout_for_view(cam, planes)
    assert [e["name"] for e in result.layout["layers"]] == ["back", "middle", "front"]
    assert result.included == [1, 2, 0]
    assert [e["visible"] for e in result.layout["layers"]] == [True, False, True]
    assert result.layout["layers"][2]["opacity"] == 0.5


def test_moved_and_scaled_plane_lands_where_the_camera_sees_it():
    cam = camera()
    frame_w, frame_h = camera_frame.frame_size_at_distance_m(5.0, 36.0, 50.0, 640, 480)
    plane = stack_plane(cam, 5.0, centre=(frame_w / 4, frame_h / 4), scale=0.5)
    entry = layout_for_view(cam, [plane]).layout["layers"][0]
    # Half size, centred a quarter frame right and up → top-left at (320, 0) in a 640×480 image.
    assert (entry["x_px"], entry["y_px"], entry["width_px"], entry["height_px"]) == pytest.approx((320, 0, 320, 240),
                                                                                                   abs=1e-3)


def test_lens_shift_moves_the_frame():
    cam = camera(shift_x=0.1)
    entry = layout_for_view(cam, [stack_plane(camera(), 5.0)]).layout["layers"][0]
    # Shift is relative to the larger side (640 px): the frame moves right by 64 px, so the plane moves left.
    assert entry["x_px"] == pytest.approx(-64, abs=1e-3)


def test_plane_behind_the_camera_is_left_out_with_a_warning():
    cam = camera(matrix=translated(z=-6.0))
    result = layout_for_view(cam, [stack_plane(camera(), 8.0, "back"), stack_plane(camera(), 5.0, "front")])
    assert [e["name"] for e in result.layout["layers"]] == ["back"]
    assert "behind the camera" in result.warnings[0]


def test_turned_camera_gives_bounding_rectangles_and_says_so():
    angle = math.radians(10)
    turned = ((math.cos(angle), 0.0, math.sin(angle), 0.0), (0.0, 1.0, 0.0, 0.0),
              (-math.sin(angle), 0.0, math.cos(angle), 0.0), (0.0, 0.0, 0.0, 1.0))
    result = layout_for_view(camera(matrix=turned), [stack_plane(camera(), 5.0, "bg")])
    assert "not parallel" in result.warnings[0]
    assert result.layout["layers"][0]["width_px"] > 0


def test_nothing_to_export_is_a_clear_error():
    with pytest.raises(ViewExportError, match="build a stack first"):
        layout_for_view(camera(), [])
    with pytest.raises(ViewExportError, match="behind the camera"):
        layout_for_view(camera(matrix=translated(z=-20.0)), [stack_plane(camera(), 5.0)])


def test_baked_colour_adjustment_matches_the_hsv_node():
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (8, 8, 4), dtype=np.uint8)
    assert apply_hsv(rgba) is rgba  # neutral settings: nothing to bake
    out = apply_hsv(rgba, hue=0.75, saturation=0.5, value=1.2)
    assert (out[..., 3] == rgba[..., 3]).all()
    for (y, x) in [(0, 0), (3, 5), (7, 7)]:
        h, s, v = colorsys.rgb_to_hsv(*(rgba[y, x, :3] / 255.0))
        expected = colorsys.hsv_to_rgb((h + 0.25) % 1.0, min(s * 0.5, 1.0), v * 1.2)
        assert out[y, x, :3] == pytest.approx(np.clip(np.rint(np.array(expected) * 255), 0, 255), abs=1)
