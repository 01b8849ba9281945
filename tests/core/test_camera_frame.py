# SPDX-License-Identifier: GPL-3.0-or-later
"""Camera/plane math of the add-on (bpy-free): planes fill the frame at any distance, layers ordered back→front."""

import math

import pytest

from blender_addon.core import camera_frame


def test_plane_at_focal_distance_matches_sensor():
    # 36 mm sensor, 50 mm lens: at 50 m the frame is 36 m wide.
    width_m, height_m = camera_frame.plane_size_m(50.0, 36.0, 50.0, 1600, 1200)
    assert width_m == pytest.approx(36.0)
    assert height_m == pytest.approx(27.0)


def test_plane_size_grows_linearly_with_distance_and_keeps_aspect():
    near = camera_frame.plane_size_m(2.0, 36.0, 35.0, 640, 480)
    far = camera_frame.plane_size_m(6.0, 36.0, 35.0, 640, 480)
    assert far[0] == pytest.approx(3 * near[0])
    assert far[0] / far[1] == pytest.approx(640 / 480)


def test_portrait_image_auto_fit_applies_sensor_to_height():
    width_m, height_m = camera_frame.plane_size_m(50.0, 36.0, 50.0, 600, 800, "AUTO")
    assert height_m == pytest.approx(36.0)
    assert width_m == pytest.approx(27.0)
    # HORIZONTAL forces the sensor width onto the image width even for portrait images.
    width_m, height_m = camera_frame.plane_size_m(50.0, 36.0, 50.0, 600, 800, "HORIZONTAL")
    assert width_m == pytest.approx(36.0)


def test_vertical_fit_uses_sensor_height():
    width_m, height_m = camera_frame.plane_size_m(50.0, 36.0, 50.0, 800, 600, "VERTICAL", sensor_height_mm=24.0)
    assert height_m == pytest.approx(24.0)
    assert width_m == pytest.approx(32.0)


def test_plane_half_width_matches_field_of_view():
    distance_m = 7.0
    width_m, _ = camera_frame.plane_size_m(distance_m, 36.0, 24.0, 1920, 1080)
    assert math.atan(width_m / 2 / distance_m) * 2 == pytest.approx(camera_frame.fov_rad(36.0, 24.0))


def test_layer_distances_back_is_farthest_front_at_base():
    assert camera_frame.layer_distances_m(4, 5.0, 0.5) == pytest.approx([6.5, 6.0, 5.5, 5.0])
    assert camera_frame.layer_distances_m(1, 3.0, 2.0) == pytest.approx([3.0])
    assert camera_frame.layer_distances_m(0, 3.0, 2.0) == []


def test_bad_geometry_is_refused_with_the_name_of_the_value():
    with pytest.raises(camera_frame.CameraFrameError, match="distance_m must be positive"):
        camera_frame.plane_size_m(0.0, 36.0, 50.0, 10, 10)
    with pytest.raises(camera_frame.CameraFrameError, match="focal_length_mm"):
        camera_frame.plane_size_m(1.0, 36.0, -5.0, 10, 10)
    with pytest.raises(camera_frame.CameraFrameError, match="sensor_fit"):
        camera_frame.plane_size_m(1.0, 36.0, 50.0, 10, 10, "DIAGONAL")
    with pytest.raises(camera_frame.CameraFrameError, match="depth_spacing_m"):
        camera_frame.layer_distances_m(3, 5.0, -1.0)


def test_ortho_and_shift():
    assert camera_frame.ortho_plane_size_m(6.0, 300, 200) == pytest.approx((6.0, 4.0))
    assert camera_frame.ortho_plane_size_m(6.0, 200, 300) == pytest.approx((4.0, 6.0))
    assert camera_frame.shift_offset_m(4.0, 3.0, 0.25, -0.1) == pytest.approx((1.0, -0.4))


def test_clip_range_only_widens_and_bounces_cover_layers():
    assert camera_frame.clip_range_m([5.0, 20.0], 0.1, 100.0) == (0.1, 100.0)
    assert camera_frame.clip_range_m([5.0, 200.0], 0.1, 100.0) == (0.1, 300.0)
    assert camera_frame.transparent_bounces_needed(12) >= 12


def test_substack_depths_stay_between_the_neighbours():
    """A layer re-decomposed into sub-layers: back → front around its depth, within half the stack's spacing."""
    assert camera_frame.substack_depths_m(5.0, 1.0, 3) == pytest.approx([5.25, 5.0, 4.75])
    assert camera_frame.substack_depths_m(5.0, 1.0, 1) == [5.0]
