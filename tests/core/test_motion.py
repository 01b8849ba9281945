# SPDX-License-Identifier: GPL-3.0-or-later
"""Parallax camera moves (bpy-free): rest pose first, parallax grows with spacing, the background stays covered
(by overscan, the default, without changing the framing; or by zooming), tasteful default amplitudes."""

import math

import pytest

from blender_addon.core import motion
from blender_addon.core.motion import MotionError, StackGeometry, camera_path

# A 36 mm sensor, 50 mm lens, 4:3 image: the geometry a freshly built stack of 4 layers 1 m apart, front at 5 m, has.
TAN_X = 18.0 / 50.0
TAN_Y = TAN_X * 3 / 4


def geometry(spacing_m=1.0, layers=4, near_m=5.0):
    return StackGeometry(near_m=near_m, far_m=near_m + spacing_m * (layers - 1), frame_half_tan=(TAN_X, TAN_Y),
                         focal_length_mm=50.0)


def project(point, key, geo):
    """Where a root-frame point lands in frame units ([-1, 1]², +y up) for a camera key."""
    rotation = motion.rotation_matrix_xyz(key.rotation_euler_rad)
    q = motion._to_camera(point, key.location_m, rotation)
    zoom = key.focal_length_mm / geo.focal_length_mm
    return q[0] / -q[2] / TAN_X * zoom, q[1] / -q[2] / TAN_Y * zoom


@pytest.mark.parametrize("preset", list(motion.PRESETS))
@pytest.mark.parametrize("loop", [False, True])
def test_every_preset_starts_at_the_rest_pose_and_moves(preset, loop):
    geo = geometry()
    path = camera_path(preset, geo, amplitude=0.4, duration_frames=24, loop=loop)
    first = path.keys[0]
    assert first.frame == 1
    assert first.location_m == pytest.approx((0, 0, 0), abs=1e-12)
    assert first.rotation_euler_rad == pytest.approx((0, 0, 0), abs=1e-12)
    assert first.focal_length_mm == pytest.approx(50.0, abs=1e-12)
    assert path.frame_end == 25
    peak = path.pose_at(13 if loop else 25)
    moved = (any(abs(c) > 1e-3 for c in peak.location_m + peak.rotation_euler_rad)
             or abs(peak.focal_length_mm - 50.0) > 1e-3)
    assert moved, f"{preset} did not move the camera"
    if loop:  # a loop comes back to the rest pose, so a looping video has no jump
        last = path.keys[-1]
        assert last.location_m == pytest.approx((0, 0, 0), abs=1e-9)
        assert last.focal_length_mm == pytest.approx(50.0, abs=1e-9)


def test_larger_depth_spacing_shows_more_parallax():
    def parallax(spacing_m):
        geo = geometry(spacing_m)
        end = camera_path("TRUCK_RIGHT", geo, amplitude=0.3, coverage="NONE").keys[-1]
        near_x = project((0, 0, -geo.near_m), end, geo)[0]
        far_x = project((0, 0, -geo.far_m), end, geo)[0]
        return abs(near_x - far_x)

    assert parallax(0.5) < parallax(1.0) < parallax(2.0)
    assert parallax(1.0) > 0.05  # the default shows visibly: > 2.5% of the frame width between front and back


@pytest.mark.parametrize("preset", ["DOLLY_OUT", "TRUCK_LEFT", "TRUCK_RIGHT", "PEDESTAL_UP", "PEDESTAL_DOWN",
                                    "ORBIT_LEFT", "ORBIT_RIGHT", "DOLLY_IN", "ZOOM_IN"])
@pytest.mark.parametrize("easing", list(motion.EASINGS))
def test_zoom_coverage_never_reveals_the_background_edges(preset, easing):
    geo = geometry()
    path = camera_path(preset, geo, amplitude=0.5, duration_frames=20, easing=easing, coverage="ZOOM")
    for tenth in range(0, 201):  # between keys too: that is where Blender's curve and the requirement could part
        frame = 1 + tenth / 10
        key = path.pose_at(frame)
        for corner in ((-1, 1), (1, 1), (1, -1), (-1, -1)):
            x, y = project((corner[0] * TAN_X * geo.far_m, corner[1] * TAN_Y * geo.far_m, -geo.far_m), key, geo)
            # The background's corner lies outside (or on) the frame in both directions it points to.
            assert x * corner[0] >= 1 - 1e-9 and y * corner[1] >= 1 - 1e-9, (frame, corner, x, y)


def test_zoom_coverage_zooms_only_as_much_as_needed():
    geo = geometry()
    end = camera_path("TRUCK_RIGHT", geo, amplitude=0.5, coverage="ZOOM").keys[-1]
    # Moving right, the background's right edge comes in: at full amplitude it sits exactly on the frame's edge.
    x, _ = project((TAN_X * geo.far_m, 0, -geo.far_m), end, geo)
    assert x == pytest.approx(1.0, abs=1e-9)
    assert camera_path("DOLLY_IN", geo, amplitude=0.5, coverage="ZOOM").end_cover == 1.0


def test_orbit_keeps_the_middle_of_the_stack_centred():
    geo = geometry()
    path = camera_path("ORBIT_LEFT", geo, amplitude=0.8, duration_frames=10)
    assert path.baked and len(path.keys) == 11 and path.blender_interpolation == "LINEAR"
    for key in path.keys:
        assert project((0, 0, -geo.pivot_distance_m), key, geo) == pytest.approx((0, 0), abs=1e-9)
    # Orbit left: the camera moves to -x.
    assert path.keys[-1].location_m[0] < 0


def test_keyed_moves_use_two_keys_and_blender_easing():
    path = camera_path("DOLLY_OUT", geometry(), easing="SMOOTH")
    assert [k.frame for k in path.keys] == [1, 49]
    assert (path.blender_interpolation, path.blender_easing) == ("SINE", "EASE_IN_OUT")
    # Affine channels: the exact pose halfway equals the keys mixed by the eased progress.
    s = motion.ease("SMOOTH", 0.25)
    mid = path.pose_at(13)
    a, b = path.keys
    assert mid.location_m[2] == pytest.approx(a.location_m[2] + s * (b.location_m[2] - a.location_m[2]))
    assert mid.focal_length_mm == pytest.approx(a.focal_length_mm + s * (b.focal_length_mm - a.focal_length_mm))


@pytest.mark.parametrize("easing", list(motion.EASINGS))
def test_easings_run_from_zero_to_one_monotonically(easing):
    values = [motion.ease(easing, i / 100) for i in range(101)]
    assert values[0] == 0 and values[-1] == pytest.approx(1.0)
    assert all(b >= a - 1e-12 for a, b in zip(values, values[1:], strict=False))


def test_dolly_through_the_front_layer_is_refused_with_the_largest_amplitude():
    geo = geometry(spacing_m=1.0, near_m=1.0)
    with pytest.raises(MotionError, match=r"at most 0\.30"):
        camera_path("DOLLY_IN", geo, amplitude=0.5)
    camera_path("DOLLY_IN", geo, amplitude=0.3)


@pytest.mark.parametrize("kwargs, message", [
    ({"preset": "SPIN"}, "preset must be one of"),
    ({"easing": "BOUNCY"}, "easing must be one of"),
    ({"amplitude": -1}, "amplitude must be"),
    ({"duration_frames": 1}, "at least 2 frames"),
    ({"preset": "ZOOM_OUT", "coverage": "ZOOM"}, "use Overscan Background or None"),
    ({"coverage": "CROP"}, "coverage must be one of"),
])
def test_bad_requests_say_what_to_change(kwargs, message):
    args = {"preset": "TRUCK_LEFT", "geometry": geometry()} | kwargs
    with pytest.raises(MotionError, match=message):
        camera_path(**args)


def test_a_move_too_large_to_cover_is_refused():
    with pytest.raises(MotionError, match="lower the amplitude"):
        camera_path("TRUCK_LEFT", geometry(spacing_m=3.0, near_m=1.0), amplitude=10, coverage="ZOOM")


def test_single_layer_still_moves():
    geo = StackGeometry(near_m=5.0, far_m=5.0, frame_half_tan=(TAN_X, TAN_Y), focal_length_mm=50.0)
    assert geo.reference_depth_m == pytest.approx(0.5)
    end = camera_path("PEDESTAL_UP", geo, amplitude=1.0).keys[-1]
    assert end.location_m[1] == pytest.approx(0.5)
    assert math.isfinite(end.focal_length_mm)


# --- overscan ----------------------------------------------------------------------------------------------------

def background_rect(geo):
    """(centre x, centre y, width, height) of the background plane, which exactly fills the rest frame."""
    return 0.0, 0.0, 2 * TAN_X * geo.far_m, 2 * TAN_Y * geo.far_m


def inside_convex(point, polygon):
    signs = set()
    for (ax, ay), (bx, by) in zip(polygon, polygon[1:] + polygon[:1], strict=False):
        cross = (bx - ax) * (point[1] - ay) - (by - ay) * (point[0] - ax)
        if abs(cross) > 1e-9:
            signs.add(cross > 0)
    return len(signs) <= 1


@pytest.mark.parametrize("preset", ["TRUCK_LEFT", "TRUCK_RIGHT", "PEDESTAL_UP", "PEDESTAL_DOWN", "ORBIT_LEFT",
                                    "ORBIT_RIGHT", "DOLLY_IN", "DOLLY_OUT", "ZOOM_IN", "ZOOM_OUT"])
@pytest.mark.parametrize("loop", [False, True])
def test_overscan_keeps_the_framing_and_the_enlarged_background_covers_every_frame(preset, loop):
    geo = geometry()
    path = camera_path(preset, geo, amplitude=0.4, duration_frames=12, loop=loop)
    assert path.coverage == "OVERSCAN"
    if not preset.startswith("ZOOM"):  # the framing stays: the lens never changes
        assert {key.focal_length_mm for key in path.keys} == {50.0}
    margins = motion.overscan_margins(path.cover_poses(), geo.far_m, background_rect(geo), (TAN_X, TAN_Y))
    half_w, half_h = TAN_X * geo.far_m, TAN_Y * geo.far_m
    # Rounded up to whole texels of a 400×300 image, as the plane is built.
    left, right, bottom, top = (t / n for t, n in zip(margins.texels(400, 300), (400, 400, 300, 300), strict=False))
    enlarged = [(-half_w * (1 + 2 * left), half_h * (1 + 2 * top)), (half_w * (1 + 2 * right), half_h * (1 + 2 * top)),
                (half_w * (1 + 2 * right), -half_h * (1 + 2 * bottom)),
                (-half_w * (1 + 2 * left), -half_h * (1 + 2 * bottom))]
    for tenth in range(0, 121):  # between keys too
        key = path.pose_at(1 + tenth / 10)
        quad = [project((x, y, -geo.far_m), key, geo) for x, y in enlarged]
        for corner in ((-1, 1), (1, 1), (1, -1), (-1, -1)):
            assert inside_convex(corner, quad), (tenth, corner, quad)


def test_overscan_margin_is_exactly_what_a_truck_needs():
    geo = geometry()
    path = camera_path("TRUCK_RIGHT", geo, amplitude=0.4, coverage="OVERSCAN")
    travel_m = 0.4 * geo.reference_depth_m
    margins = motion.overscan_margins(path.cover_poses(), geo.far_m, background_rect(geo), (TAN_X, TAN_Y))
    # Moving right by t, the view on the background slides right by t: that much, as a fraction of its width.
    assert margins.right == pytest.approx(travel_m / (2 * TAN_X * geo.far_m), abs=1e-12)
    assert (margins.left, margins.bottom, margins.top) == pytest.approx((0, 0, 0), abs=1e-12)
    # A nearer plane needs more: the same slide is a larger fraction of a smaller plane.
    near = motion.overscan_margins(path.cover_poses(), geo.near_m,
                                   (0, 0, 2 * TAN_X * geo.near_m, 2 * TAN_Y * geo.near_m), (TAN_X, TAN_Y))
    assert near.right == pytest.approx(travel_m / (2 * TAN_X * geo.near_m))
    assert not motion.overscan_margins([motion.CoverPose((0, 0, 0), (0, 0, 0))], geo.far_m, background_rect(geo),
                                       (TAN_X, TAN_Y)).any


def test_overscan_follows_zoom_and_lens_shift():
    geo = geometry()
    # Zooming out to 0.8× shows 1.25× the frame: an eighth of the plane more on every side.
    pose = motion.CoverPose((0, 0, 0), (0, 0, 0), 0.8)
    margins = motion.overscan_margins([pose], geo.far_m, background_rect(geo), (TAN_X, TAN_Y))
    assert (margins.left, margins.right, margins.bottom, margins.top) == pytest.approx((0.125,) * 4)
    # With a lens shift the frame (and the plane) sit off-centre: a zoom-out grows about the optical axis.
    offset = (0.2, 0.0)
    rect = (0.2 * geo.far_m, 0.0, 2 * TAN_X * geo.far_m, 2 * TAN_Y * geo.far_m)
    shifted = motion.overscan_margins([pose], geo.far_m, rect, (TAN_X, TAN_Y), offset)
    assert shifted.right == pytest.approx(0.125 + 0.25 * 0.2 / (2 * TAN_X))
    assert shifted.left == pytest.approx(0.125 - 0.25 * 0.2 / (2 * TAN_X))


def test_overscan_texels_round_up_to_whole_texels():
    assert motion.Overscan(0.1, 0.0, 0.0201, 0.5).texels(100, 100) == (10, 0, 3, 50)


def test_overscan_refuses_a_camera_behind_the_plane_or_a_runaway_margin():
    geo = geometry()
    with pytest.raises(MotionError, match="behind the plane"):
        motion.overscan_margins([motion.CoverPose((0, 0, -9.0), (0, 0, 0))], geo.far_m, background_rect(geo),
                                (TAN_X, TAN_Y))
    with pytest.raises(MotionError, match="lower the amplitude"):
        motion.overscan_margins([motion.CoverPose((0, 0, 0), (0, 1.5, 0))], geo.far_m, background_rect(geo),
                                (TAN_X, TAN_Y))


def test_cover_poses_survive_a_round_trip_through_a_flat_list():
    path = camera_path("ORBIT_LEFT", geometry(), amplitude=0.3, duration_frames=4)
    poses = path.cover_poses()
    assert motion.decode_cover_poses(motion.encode_cover_poses(poses)) == poses
    with pytest.raises(MotionError, match="7 numbers"):
        motion.decode_cover_poses([0.0] * 8)


# --- default amplitude -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spacing_m", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("preset", ["TRUCK_RIGHT", "PEDESTAL_UP", "ORBIT_LEFT", "DOLLY_IN", "DOLLY_OUT"])
def test_default_amplitude_shows_a_tasteful_parallax_on_any_stack(preset, spacing_m):
    geo = geometry(spacing_m)
    amplitude = motion.default_amplitude(preset, geo)
    parallax = motion.parallax_fraction(preset, geo, amplitude)
    if preset == "DOLLY_OUT" and spacing_m == 0.5:  # backing away from a shallow stack shows little: capped
        assert 0.02 < parallax < 0.045 and amplitude * geo.reference_depth_m == pytest.approx(2.5, abs=0.01)
    else:
        assert parallax == pytest.approx(motion.DEFAULT_PARALLAX_FRACTION, abs=0.002)
    camera_path(preset, geo)  # None picks it, and the move is allowed


def test_parallax_of_a_truck_is_the_relative_slide_of_front_and_back():
    geo = geometry(1.0)
    travel_m = 0.2 * geo.reference_depth_m
    expected = travel_m / (2 * TAN_X) * (1 / geo.near_m - 1 / geo.far_m)
    assert motion.parallax_fraction("TRUCK_LEFT", geo, 0.2) == pytest.approx(expected)


def test_default_amplitude_for_zooms_and_a_single_layer():
    assert motion.default_amplitude("ZOOM_IN", geometry()) == motion.DEFAULT_ZOOM_AMPLITUDE
    single = StackGeometry(near_m=5.0, far_m=5.0, frame_half_tan=(TAN_X, TAN_Y), focal_length_mm=50.0)
    assert motion.default_amplitude("TRUCK_LEFT", single) == motion.DEFAULT_AMPLITUDE
