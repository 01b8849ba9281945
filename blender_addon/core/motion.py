# SPDX-License-Identifier: GPL-3.0-or-later
"""Parallax camera moves: numbers in, keyframes out.

Everything here lives in the stack root's frame, which is the rest camera's frame: the rest camera sits at the
origin, looks down -Z with +Y up, and the layer planes are at z = -distance_m, each exactly filling the frame. A move
is a function of one eased parameter ``s`` (0 at the rest pose, 1 at full amplitude), sampled into keyframes whose
first frame is the rest pose, so the first frame renders the original image exactly.

Amplitude is relative, so one value fits any stack: translations and orbit arcs move the camera by
``amplitude × reference_depth_m`` where the reference depth is the distance between the nearest and the farthest
layer. A larger depth spacing therefore moves the camera further and shows more parallax; a stack with a single
layer falls back to a tenth of its distance. Zoom presets change the focal length by the factor ``1 + amplitude``.

Keeping the frame covered (``coverage``): a move shows the stack from poses where the background plane, exactly
frame-sized at rest, no longer fills the frame.

* 'OVERSCAN' (default): the framing stays as it is; the background plane is made larger than the frame by exactly the
  margin the move needs (``overscan_margins``, from the move's extreme poses and the plane's depth) and its texture
  repeats the image's edge texels there. The original image still maps 1:1 onto the rest frame.
* 'ZOOM': the focal length grows just enough that the unchanged background keeps filling the frame. For a sideways
  move that zoom, not the parallax, is what the viewer notices (+60% at amplitude 0.35 on a 1 m spaced stack).
* 'NONE': nothing; the move may reveal empty space beyond the image edges.

``default_amplitude`` picks, for a given stack, the amplitude at which the front layer moves
``DEFAULT_PARALLAX_FRACTION`` of the frame relative to the background: visible, not seasick.

Moves whose channels are affine in ``s`` (dolly, truck, pedestal, zoom) become two keyframes per leg with Blender's
own easing (``interpolation``/``easing`` below match ``ease()`` exactly), so users edit an ordinary two-key curve.
The orbit's arc is not affine, so it is baked: one LINEAR key per frame with the easing sampled in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

Vector3 = tuple[float, float, float]

PRESETS = {
    # id: (label, description)
    "DOLLY_IN": ("Dolly In", "Move the camera toward the stack"),
    "DOLLY_OUT": ("Dolly Out", "Move the camera away from the stack"),
    "TRUCK_LEFT": ("Truck Left", "Move the camera sideways to the left"),
    "TRUCK_RIGHT": ("Truck Right", "Move the camera sideways to the right"),
    "PEDESTAL_UP": ("Pedestal Up", "Move the camera straight up"),
    "PEDESTAL_DOWN": ("Pedestal Down", "Move the camera straight down"),
    "ORBIT_LEFT": ("Orbit Left", "Circle left around the middle of the stack, keeping it in view"),
    "ORBIT_RIGHT": ("Orbit Right", "Circle right around the middle of the stack, keeping it in view"),
    "ZOOM_IN": ("Zoom In", "Ken Burns: lengthen the focal length (no parallax, the camera stays put)"),
    "ZOOM_OUT": ("Zoom Out", "Shorten the focal length (reveals the image edges)"),
}

# Unit direction of the camera's travel in the root frame, for the translation presets.
_TRANSLATIONS: dict[str, Vector3] = {
    "DOLLY_IN": (0.0, 0.0, -1.0),
    "DOLLY_OUT": (0.0, 0.0, 1.0),
    "TRUCK_LEFT": (-1.0, 0.0, 0.0),
    "TRUCK_RIGHT": (1.0, 0.0, 0.0),
    "PEDESTAL_UP": (0.0, 1.0, 0.0),
    "PEDESTAL_DOWN": (0.0, -1.0, 0.0),
}

# easing id → (label, Blender keyframe interpolation, Blender keyframe easing). ease() below is Blender's
# (Robert Penner's) formula for that pair, so a two-key curve in Blender evaluates to exactly pose_at().
EASINGS = {
    "LINEAR": ("Linear", "LINEAR", "AUTO"),
    "EASE_IN": ("Ease In", "CUBIC", "EASE_IN"),
    "EASE_OUT": ("Ease Out", "CUBIC", "EASE_OUT"),
    "EASE_IN_OUT": ("Ease In and Out", "CUBIC", "EASE_IN_OUT"),
    "SMOOTH": ("Smooth", "SINE", "EASE_IN_OUT"),
}

COVERAGES = {
    # id: (label, description)
    "OVERSCAN": ("Overscan Background", "Enlarge the background plane by exactly what the move needs, repeating the "
                                        "image's edge pixels there; the framing stays as it is"),
    "ZOOM": ("Zoom to Cover", "Raise the focal length just enough that the background keeps filling the frame"),
    "NONE": ("None", "Leave the planes as they are; the move may reveal empty space beyond the image edges"),
}
DEFAULT_COVERAGE = "OVERSCAN"

SINGLE_LAYER_DEPTH_FRACTION = 0.1
# Used where no stack-specific default exists (single-layer stacks): a quarter of the reference depth.
DEFAULT_AMPLITUDE = 0.25
# The front layer moves this fraction of the frame (width for sideways moves, height for vertical ones) relative to
# the background at full amplitude: 4.5% reads as depth without the layers visibly sliding apart.
DEFAULT_PARALLAX_FRACTION = 0.045
# Zoom presets have no parallax; 15% is a slow Ken Burns push.
DEFAULT_ZOOM_AMPLITUDE = 0.15
# Default dolly-outs back away at most this fraction of the front layer's distance.
DEFAULT_MAX_DOLLY_OUT_FRACTION = 0.5
# Overscan beyond this fraction of the plane on any side means the move looks far past the image: refused.
MAX_OVERSCAN_FRACTION = 2.0
# The camera may dolly at most this fraction of the way to the nearest layer: beyond, that layer fills the view
# with a few texels and then passes behind the camera.
MAX_DOLLY_FRACTION = 0.9


class MotionError(ValueError):
    """A move that cannot be made (bad preset, amplitude or duration); the message says what to change."""


@dataclass(frozen=True)
class StackGeometry:
    """What a move needs to know about the stack, measured from the rest camera.

    ``frame_half_tan`` is (tan of half the horizontal field of view, same vertically) at ``focal_length_mm``.
    """

    near_m: float
    far_m: float
    frame_half_tan: tuple[float, float]
    focal_length_mm: float

    def __post_init__(self) -> None:
        if not 0 < self.near_m <= self.far_m:
            raise MotionError(f"layer distances must satisfy 0 < near <= far, got near={self.near_m} "
                              f"far={self.far_m}")
        if not (self.frame_half_tan[0] > 0 and self.frame_half_tan[1] > 0 and self.focal_length_mm > 0):
            raise MotionError("the camera needs a positive field of view and focal length")

    @property
    def reference_depth_m(self) -> float:
        """The length that amplitude 1 stands for: the depth of the stack (or a tenth of a single layer's distance)."""
        depth_m = self.far_m - self.near_m
        return depth_m if depth_m > 1e-9 else SINGLE_LAYER_DEPTH_FRACTION * self.far_m

    @property
    def pivot_distance_m(self) -> float:
        """Orbits circle the middle of the stack."""
        return 0.5 * (self.near_m + self.far_m)


@dataclass(frozen=True)
class CameraKey:
    """One camera pose in the root's frame: rotation is Euler XYZ in radians."""

    frame: int
    location_m: Vector3
    rotation_euler_rad: Vector3
    focal_length_mm: float


@dataclass(frozen=True)
class CoverPose:
    """A camera pose in the root's frame with its focal length relative to the rest lens, for overscan sizing."""

    location_m: Vector3
    rotation_euler_rad: Vector3
    focal_factor: float = 1.0


@dataclass(frozen=True)
class Overscan:
    """How far a plane must extend beyond its image on each side, as fractions of the image's width or height."""

    left: float = 0.0
    right: float = 0.0
    bottom: float = 0.0
    top: float = 0.0

    def texels(self, width_px: int, height_px: int) -> tuple[int, int, int, int]:
        """(left, right, bottom, top) in whole texels of a width_px × height_px image, rounded up: extending by whole
        texels keeps the image grid, so the render's edge extension equals padding the image with its edge pixels."""
        return (math.ceil(self.left * width_px - 1e-6), math.ceil(self.right * width_px - 1e-6),
                math.ceil(self.bottom * height_px - 1e-6), math.ceil(self.top * height_px - 1e-6))

    @property
    def any(self) -> bool:
        return max(self.left, self.right, self.bottom, self.top) > 0


@dataclass
class CameraPath:
    """One move: its keyframes, how Blender should interpolate between them, and the exact pose at any frame."""

    preset: str
    geometry: StackGeometry
    amplitude: float
    duration_frames: int
    easing: str
    start_frame: int
    coverage: str
    loop: bool
    end_cover: float = 1.0  # 'ZOOM': focal factor that keeps the background covering the frame at full amplitude
    keys: list[CameraKey] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def baked(self) -> bool:
        return self.preset.startswith("ORBIT")

    @property
    def blender_interpolation(self) -> str:
        return "LINEAR" if self.baked else EASINGS[self.easing][1]

    @property
    def blender_easing(self) -> str:
        return "AUTO" if self.baked else EASINGS[self.easing][2]

    @property
    def frame_start(self) -> int:
        return self.start_frame

    @property
    def frame_end(self) -> int:
        return self.start_frame + self.duration_frames

    def progress_at(self, frame: float) -> float:
        """Eased progress s at ``frame``: 0 = rest pose, 1 = full amplitude."""
        if not self.loop:
            return ease(self.easing, (frame - self.start_frame) / self.duration_frames)
        out_frames = self.duration_frames // 2
        if frame <= self.start_frame + out_frames:
            return ease(self.easing, (frame - self.start_frame) / out_frames)
        back_frames = self.duration_frames - out_frames
        return 1.0 - ease(self.easing, (frame - self.start_frame - out_frames) / back_frames)

    def pose_at(self, frame: float) -> CameraKey:
        """The exact pose at ``frame``; for a keyed (non-baked) move it equals Blender's evaluation of the curves."""
        s = self.progress_at(frame)
        location, rotation, focal_factor = _pose(self.preset, self.geometry, self.amplitude, s)
        if self.coverage == "ZOOM":
            if self.baked:
                focal_factor *= cover_zoom(self.geometry, location, rotation)
            else:
                # Translations keep the required zoom convex in s, so this affine curve through 1 and the
                # end value stays at or above it for every s in between.
                focal_factor *= 1.0 + s * (self.end_cover - 1.0)
        return CameraKey(int(round(frame)), location, rotation, self.geometry.focal_length_mm * focal_factor)


    def cover_poses(self) -> list[CoverPose]:
        """The poses whose views together bound everything the move shows: the keys. Keyed (non-baked) moves are
        affine in s, so every edge of the view on a plane moves linearly between keys and is extreme at one; a baked
        orbit has a key per frame."""
        return [CoverPose(key.location_m, key.rotation_euler_rad, key.focal_length_mm / self.geometry.focal_length_mm)
                for key in self.keys]


def ease(easing: str, t: float) -> float:
    """Blender's easing curve for ``easing`` at time fraction ``t`` in [0, 1] → progress in [0, 1]."""
    t = min(max(t, 0.0), 1.0)
    if easing == "LINEAR":
        return t
    if easing == "EASE_IN":
        return t * t * t
    if easing == "EASE_OUT":
        return 1.0 - (1.0 - t) ** 3
    if easing == "EASE_IN_OUT":
        return 4.0 * t * t * t if t < 0.5 else 1.0 + 4.0 * (t - 1.0) ** 3
    if easing == "SMOOTH":
        return 0.5 - 0.5 * math.cos(math.pi * t)
    raise MotionError(f"easing must be one of {', '.join(EASINGS)}, got {easing!r}")


# --- small 3D helpers (row-major 3×3 matrices as tuples of rows) -------------------------------------------------

def rotation_matrix_xyz(euler_rad: Vector3) -> tuple[Vector3, Vector3, Vector3]:
    """Blender's XYZ Euler: R = Rz · Ry · Rx."""
    x, y, z = euler_rad
    cx, sx, cy, sy, cz, sz = math.cos(x), math.sin(x), math.cos(y), math.sin(y), math.cos(z), math.sin(z)
    return ((cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx),
            (sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx),
            (-sy, cy * sx, cy * cx))


def _to_camera(point: Vector3, location: Vector3, rotation: tuple[Vector3, Vector3, Vector3]) -> Vector3:
    """Point in root frame → camera frame (R^T · (p - location))."""
    d = (point[0] - location[0], point[1] - location[1], point[2] - location[2])
    return tuple(sum(rotation[row][col] * d[row] for row in range(3)) for col in range(3))  # type: ignore[return-value]


def cover_zoom(geometry: StackGeometry, location_m: Vector3, rotation_euler_rad: Vector3) -> float:
    """Smallest focal-length factor (≥ 1) at which the farthest layer still fills the frame from this pose.

    The farthest layer's corners are projected into the moved camera (at the rest focal length) in frame units
    (the frame is [-1, 1]²); zooming about the centre by z shrinks the frame to [-1/z, 1/z]², which stays inside the
    projected quad when each frame corner does. A ray from the centre toward a frame corner leaves the quad at
    parameter t, so z ≥ 1/t for every corner.
    """
    tan_x, tan_y = geometry.frame_half_tan
    far = geometry.far_m
    rotation = rotation_matrix_xyz(rotation_euler_rad)
    quad = []
    for cx, cy in ((-1, 1), (1, 1), (1, -1), (-1, -1)):
        q = _to_camera((cx * tan_x * far, cy * tan_y * far, -far), location_m, rotation)
        if q[2] >= -1e-9:
            raise MotionError("the move turns the camera away from the background layer; lower the amplitude")
        quad.append((q[0] / -q[2] / tan_x, q[1] / -q[2] / tan_y))
    zoom = 1.0
    for corner in ((-1.0, 1.0), (1.0, 1.0), (1.0, -1.0), (-1.0, -1.0)):
        t_exit = _ray_exit(quad, corner)
        if t_exit is None or t_exit <= 1e-6:
            raise MotionError("the move is so large that no zoom keeps the background filling the frame; lower "
                              "the amplitude or use Overscan Background coverage")
        zoom = max(zoom, 1.0 / t_exit)
    return zoom


def _ray_exit(quad: list[tuple[float, float]], direction: tuple[float, float]) -> float | None:
    """Parameter t where the ray t·direction from the origin leaves the convex quad, None if the origin is outside."""
    signs = set()
    for (ax, ay), (bx, by) in zip(quad, quad[1:] + quad[:1], strict=False):
        cross = (bx - ax) * (0.0 - ay) - (by - ay) * (0.0 - ax)
        signs.add(cross > 0)
    if len(signs) != 1:
        return None
    best = None
    dx, dy = direction
    for (ax, ay), (bx, by) in zip(quad, quad[1:] + quad[:1], strict=False):
        ex, ey = bx - ax, by - ay
        denominator = dx * ey - dy * ex
        if abs(denominator) < 1e-12:
            continue
        # Solve t·d = a + u·e for (t, u).
        t = (ax * ey - ay * ex) / denominator
        u = (ax * dy - ay * dx) / denominator
        if t > 0 and -1e-9 <= u <= 1 + 1e-9:
            best = t if best is None else min(best, t)
    return best


# --- the moves -----------------------------------------------------------------------------------------------------

def _pose(preset: str, geometry: StackGeometry, amplitude: float, s: float) -> tuple[Vector3, Vector3, float]:
    """(location, rotation, focal factor without cover zoom) at progress s."""
    distance_m = amplitude * geometry.reference_depth_m
    if preset in _TRANSLATIONS:
        direction = _TRANSLATIONS[preset]
        return tuple(c * distance_m * s for c in direction), (0.0, 0.0, 0.0), 1.0  # type: ignore[return-value]
    if preset in ("ORBIT_LEFT", "ORBIT_RIGHT"):
        pivot_m = geometry.pivot_distance_m
        angle_rad = (distance_m / pivot_m) * s * (1.0 if preset == "ORBIT_RIGHT" else -1.0)
        # Rotating the rest camera about +Y around the pivot (0, 0, -pivot) keeps it aimed at the pivot.
        location = (pivot_m * math.sin(angle_rad), 0.0, pivot_m * math.cos(angle_rad) - pivot_m)
        return location, (0.0, angle_rad, 0.0), 1.0
    if preset == "ZOOM_IN":
        return (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), 1.0 + amplitude * s
    if preset == "ZOOM_OUT":
        # Affine in s (so Blender's easing reproduces it) and ending at 1 / (1 + amplitude).
        return (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), 1.0 - s * amplitude / (1.0 + amplitude)
    raise MotionError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")


def _check(preset: str, geometry: StackGeometry, amplitude: float | None, duration_frames: int, easing: str,
           coverage: str) -> float:
    """Raise ``MotionError`` for an input the move cannot have → the amplitude, checked to be a number."""
    if coverage not in COVERAGES:
        raise MotionError(f"coverage must be one of {', '.join(COVERAGES)}, got {coverage!r}")
    if preset not in PRESETS:
        raise MotionError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    if easing not in EASINGS:
        raise MotionError(f"easing must be one of {', '.join(EASINGS)}, got {easing!r}")
    if not (isinstance(amplitude, (int, float)) and 0 <= amplitude <= 10):
        raise MotionError(f"amplitude must be a number between 0 and 10, got {amplitude!r}")
    if isinstance(duration_frames, bool) or not isinstance(duration_frames, int) or duration_frames < 2:
        raise MotionError(f"duration must be at least 2 frames, got {duration_frames!r}")
    if preset == "DOLLY_IN":
        travel_m = amplitude * geometry.reference_depth_m
        limit_m = MAX_DOLLY_FRACTION * geometry.near_m
        if travel_m > limit_m:
            raise MotionError(f"a dolly-in of {travel_m:.3g} m would reach the nearest layer {geometry.near_m:.3g} m "
                              f"away; use an amplitude of at most {limit_m / geometry.reference_depth_m:.2f}")
    if preset == "ZOOM_OUT" and coverage == "ZOOM" and amplitude > 0:
        raise MotionError("zooming out cannot be covered by zooming in; use Overscan Background or None coverage")
    return float(amplitude)


def camera_path(preset: str, geometry: StackGeometry, amplitude: float | None = None, duration_frames: int = 48,
                easing: str = "EASE_IN_OUT", start_frame: int = 1, coverage: str = DEFAULT_COVERAGE,
                loop: bool = False) -> CameraPath:
    """Keyframes of ``preset``: the rest pose at ``start_frame``, full amplitude ``duration_frames`` later.

    ``amplitude`` None picks ``default_amplitude(preset, geometry)``. With ``loop`` the move goes out in the first
    half of the duration and back to the rest pose in the second, so a looping GIF or video has no jump. With
    'OVERSCAN' coverage the caller enlarges the background plane by ``overscan_margins(path.cover_poses(), ...)``.
    """
    # 1. Check inputs
    if amplitude is None and preset in PRESETS:
        amplitude = default_amplitude(preset, geometry)
    amplitude = _check(preset, geometry, amplitude, duration_frames, easing, coverage)
    path = CameraPath(preset, geometry, amplitude, duration_frames, easing, start_frame, coverage, loop)

    # 2. Zoom that keeps the background covering the frame at full amplitude
    if coverage == "ZOOM":
        end_location, end_rotation, _ = _pose(preset, geometry, amplitude, 1.0)
        path.end_cover = cover_zoom(geometry, end_location, end_rotation)
        if path.end_cover > 1.0 + 1e-6:
            path.notes.append(f"the focal length grows up to {path.end_cover:.3f}× so the background keeps "
                              f"filling the frame")

    # 3. Sample: every frame for a baked move, else only the ends of each leg
    if path.baked:
        frames = list(range(path.frame_start, path.frame_end + 1))
    elif loop:
        frames = [path.frame_start, path.frame_start + duration_frames // 2, path.frame_end]
    else:
        frames = [path.frame_start, path.frame_end]
    path.keys = [path.pose_at(frame) for frame in frames]
    return path


# --- keeping the frame covered by overscan ----------------------------------------------------------------------

def overscan_margins(poses: list[CoverPose], depth_m: float, plane_rect_m: tuple[float, float, float, float],
                     frame_half_tan: tuple[float, float], frame_offset: tuple[float, float] = (0.0, 0.0)
                     ) -> Overscan:
    """How far a plane at ``depth_m`` must extend so every pose's view of its (infinite) plane lands on it.

    ``plane_rect_m`` is (centre_x, centre_y, width, height) of the plane's image in the root frame (the plane lies at
    z = -depth_m). ``frame_half_tan`` and ``frame_offset`` (a lens shift, at unit distance) describe the rest
    camera's frame; a pose with focal factor f sees that frame divided by f. Each frame corner's ray is intersected
    with the plane; the bounding box of those points over all poses is what the plane must cover (the view of a
    plane is the convex quad of its corners' hits).
    """
    centre_x, centre_y, width_m, height_m = plane_rect_m
    if not (depth_m > 0 and width_m > 0 and height_m > 0):
        raise MotionError(f"plane depth and size must be positive, got depth {depth_m}, size {width_m}×{height_m}")
    tan_x, tan_y = frame_half_tan
    offset_x, offset_y = frame_offset
    left, right = centre_x - width_m / 2, centre_x + width_m / 2
    bottom, top = centre_y - height_m / 2, centre_y + height_m / 2
    min_x, max_x, min_y, max_y = left, right, bottom, top
    for pose in poses:
        rotation = rotation_matrix_xyz(pose.rotation_euler_rad)
        lx, ly, lz = pose.location_m
        if lz <= -depth_m:
            raise MotionError(f"the move takes the camera behind the plane {depth_m:.3g} m away; lower the amplitude")
        for sx, sy in ((-1, 1), (1, 1), (1, -1), (-1, -1)):
            ray = ((offset_x + sx * tan_x) / pose.focal_factor, (offset_y + sy * tan_y) / pose.focal_factor, -1.0)
            dx, dy, dz = (sum(rotation[row][col] * ray[col] for col in range(3)) for row in range(3))
            distance = (-depth_m - lz) / dz if dz < -1e-9 else -1.0
            if distance <= 0:
                raise MotionError(f"the move turns the camera past the edge of the plane {depth_m:.3g} m away; "
                                  f"lower the amplitude")
            x, y = lx + distance * dx, ly + distance * dy
            min_x, max_x, min_y, max_y = min(min_x, x), max(max_x, x), min(min_y, y), max(max_y, y)
    margins = Overscan((left - min_x) / width_m, (max_x - right) / width_m,
                       (bottom - min_y) / height_m, (max_y - top) / height_m)
    largest = max(margins.left, margins.right, margins.bottom, margins.top)
    if largest > MAX_OVERSCAN_FRACTION:
        raise MotionError(f"the move looks {largest:.1f}× the image's size beyond its edge; lower the amplitude or "
                          f"use Zoom to Cover")
    return margins


def encode_cover_poses(poses: list[CoverPose]) -> list[float]:
    """Flat list of 7 floats a pose (location, rotation, focal factor), for a custom property on the stack root."""
    return [value for pose in poses for value in (*pose.location_m, *pose.rotation_euler_rad, pose.focal_factor)]


def decode_cover_poses(values) -> list[CoverPose]:
    values = [float(v) for v in values]
    if len(values) % 7:
        raise MotionError(f"stored overscan poses must be 7 numbers each, got {len(values)} numbers")
    return [CoverPose(tuple(values[i:i + 3]), tuple(values[i + 3:i + 6]), values[i + 6])
            for i in range(0, len(values), 7)]


# --- how much parallax a move shows -----------------------------------------------------------------------------

def _frame_point(geometry: StackGeometry, pose: CoverPose, point: Vector3) -> tuple[float, float]:
    """A root-frame point in frame units ([-0.5, 0.5]² across the frame) as seen from ``pose``."""
    q = _to_camera(point, pose.location_m, rotation_matrix_xyz(pose.rotation_euler_rad))
    tan_x, tan_y = geometry.frame_half_tan
    return (q[0] / -q[2] * pose.focal_factor / (2 * tan_x), q[1] / -q[2] * pose.focal_factor / (2 * tan_y))


def parallax_fraction(preset: str, geometry: StackGeometry, amplitude: float) -> float:
    """How far the front layer moves relative to the background at full amplitude, as a fraction of the frame
    (width for horizontal motion, height for vertical): the largest relative shift of the midpoints of the frame's
    edges (and centre) between the nearest and the farthest plane."""
    location, rotation, focal_factor = _pose(preset, geometry, amplitude, 1.0)
    moved = CoverPose(location, rotation, focal_factor)
    rest = CoverPose((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), 1.0)
    tan_x, tan_y = geometry.frame_half_tan
    largest = 0.0
    for ux, uy in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
        shifts = []
        for depth_m in (geometry.near_m, geometry.far_m):
            point = (ux * tan_x * depth_m, uy * tan_y * depth_m, -depth_m)
            before, after = _frame_point(geometry, rest, point), _frame_point(geometry, moved, point)
            shifts.append((after[0] - before[0], after[1] - before[1]))
        (near_x, near_y), (far_x, far_y) = shifts
        largest = max(largest, abs(near_x - far_x), abs(near_y - far_y))
    return largest


def default_amplitude(preset: str, geometry: StackGeometry, parallax: float = DEFAULT_PARALLAX_FRACTION) -> float:
    """The amplitude at which ``preset`` shows ``parallax`` (a fraction of the frame) between the front layer and the
    background on this stack; zooms (no parallax) get ``DEFAULT_ZOOM_AMPLITUDE``, a single layer
    ``DEFAULT_AMPLITUDE``. A dolly-in stays within its limit."""
    if preset not in PRESETS:
        raise MotionError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    if preset.startswith("ZOOM"):
        return DEFAULT_ZOOM_AMPLITUDE
    if geometry.far_m - geometry.near_m <= 1e-9:
        return DEFAULT_AMPLITUDE
    high = 10.0
    if preset == "DOLLY_IN":
        high = 0.99 * MAX_DOLLY_FRACTION * geometry.near_m / geometry.reference_depth_m
    elif preset == "DOLLY_OUT":
        # Backing away, the parallax peaks at a travel of sqrt(near·far) and then fades; past half the front
        # layer's distance the picture has mostly shrunk: stop at whichever comes first.
        travel_m = min(math.sqrt(geometry.near_m * geometry.far_m), DEFAULT_MAX_DOLLY_OUT_FRACTION * geometry.near_m)
        high = travel_m / geometry.reference_depth_m
    if parallax_fraction(preset, geometry, high) <= parallax:
        return round(high, 3)
    low = 0.0
    for _ in range(50):  # the parallax grows monotonically with the amplitude
        middle = 0.5 * (low + high)
        if parallax_fraction(preset, geometry, middle) < parallax:
            low = middle
        else:
            high = middle
    return round(high, 3)
