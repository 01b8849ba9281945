# SPDX-License-Identifier: GPL-3.0-or-later
"""Writes ``core.motion`` camera paths as ordinary, editable keyframes, and renders quick previews.

The path is in the stack root's frame (the rest camera pose); here it is carried into world space through the root's
matrix and into the camera's own (parent) space, then keyed on ``location``/``rotation_*`` of the camera object and
``lens`` of its camera data. Keyframe interpolation/easing are set to the values ``core.motion`` names, so Blender's
curves evaluate to exactly the poses ``CameraPath.pose_at`` computes. With 'OVERSCAN' coverage the move's poses are
stored on the stack root and the background plane is enlarged for them (``planes.set_cover_poses``).
"""

from __future__ import annotations

import os

import bpy
from mathutils import Euler, Matrix, Vector

from ..core import camera_frame, motion
from . import compat, planes, stack

CAMERA_OBJECT_PATHS = ("location", "rotation_euler", "rotation_quaternion", "rotation_axis_angle")
CAMERA_DATA_PATHS = ("lens",)


class AnimationError(RuntimeError):
    """A clear, user-facing reason why the camera cannot be animated."""


def camera_for_stack(root: bpy.types.Object, context=None) -> bpy.types.Object:
    camera = stack.stack_camera(root, context.scene if context else None)
    if camera is None or camera.type != 'CAMERA':
        raise AnimationError("the stack has no camera; set one on the stack root (Camera) or make the scene camera "
                             "active")
    if camera.data.type != 'PERSP':
        raise AnimationError(f"camera '{camera.name}' is {camera.data.type.lower()}; parallax moves need a "
                             f"perspective camera")
    return camera


def _fcurves(id_data):
    """The F-curves animating ``id_data`` (see ``compat.action_fcurves``), or []."""
    fcurves = compat.action_fcurves(id_data)
    return list(fcurves) if fcurves is not None else []


def _remove_fcurves(id_data, data_paths) -> None:
    fcurves = compat.action_fcurves(id_data)
    if fcurves is None:
        return
    for fcurve in [f for f in fcurves if f.data_path in data_paths]:
        fcurves.remove(fcurve)


def stack_geometry(root: bpy.types.Object, camera: bpy.types.Object, focal_length_mm: float) -> motion.StackGeometry:
    layers = stack.stack_layers(root)
    if not layers:
        raise AnimationError(f"stack '{root.name}' has no layer planes")
    # Planes behind the background plane never show (see stack.background_plane): the move is measured against it.
    far_m = stack.background_plane(root).strata.depth_m
    depths_m = [plane.strata.depth_m for plane in layers if plane.strata.depth_m <= far_m]
    data = camera.data
    frame_w, frame_h = camera_frame.frame_size_at_distance_m(1.0, data.sensor_width, focal_length_mm,
                                                       root.strata.image_width_px, root.strata.image_height_px,
                                                       data.sensor_fit, data.sensor_height)
    return motion.StackGeometry(near_m=min(depths_m), far_m=max(depths_m),
                                frame_half_tan=(frame_w / 2, frame_h / 2), focal_length_mm=focal_length_mm)


def _camera_basis(camera: bpy.types.Object, root: bpy.types.Object, key: motion.CameraKey) -> Matrix:
    """Camera's matrix_basis for a key: root frame → world (root scale scales distances only) → camera's parent."""
    root_location, root_rotation, _ = root.matrix_world.decompose()
    location_world = root.matrix_world @ Vector(key.location_m)
    rotation_world = root_rotation.to_matrix() @ Euler(key.rotation_euler_rad, 'XYZ').to_matrix()
    scale = camera.matrix_world.to_scale()
    world = Matrix.LocRotScale(location_world, rotation_world, scale)
    if camera.parent is None:
        return world
    return (camera.parent.matrix_world @ camera.matrix_parent_inverse).inverted() @ world


def apply_camera_path(scene: bpy.types.Scene, root: bpy.types.Object, camera: bpy.types.Object,
                      path: motion.CameraPath, overscan_layers: bool = False) -> None:
    """Replace the camera's transform and lens animation with ``path`` and fit the scene's frame range to it.

    'OVERSCAN' coverage enlarges the background plane (every plane with ``overscan_layers``) for the move, other
    coverages remove a previous move's overscan. A move that cannot be covered raises ``motion.MotionError`` before
    anything changed."""
    if camera.rotation_mode == 'AXIS_ANGLE':
        raise AnimationError(f"camera '{camera.name}' uses Axis Angle rotation; switch it to an Euler mode or "
                             f"Quaternion")
    planes.set_cover_poses(root, path.cover_poses() if path.coverage == "OVERSCAN" else [], overscan_layers)
    _remove_fcurves(camera, CAMERA_OBJECT_PATHS)
    _remove_fcurves(camera.data, CAMERA_DATA_PATHS)

    previous_euler = None
    for key in path.keys:
        location, rotation, _ = _camera_basis(camera, root, key).decompose()
        camera.location = location
        if camera.rotation_mode == 'QUATERNION':
            camera.rotation_quaternion = rotation
            rotation_path = "rotation_quaternion"
        else:
            # Continuity with the previous key: no 360° flips between keys of a baked orbit.
            euler = rotation.to_euler(camera.rotation_mode, previous_euler) if previous_euler else \
                rotation.to_euler(camera.rotation_mode)
            camera.rotation_euler = euler
            previous_euler = euler.copy()
            rotation_path = "rotation_euler"
        camera.data.lens = key.focal_length_mm
        camera.keyframe_insert("location", frame=key.frame, group="Strata Camera")
        camera.keyframe_insert(rotation_path, frame=key.frame, group="Strata Camera")
        camera.data.keyframe_insert("lens", frame=key.frame)

    for fcurve in _fcurves(camera) + _fcurves(camera.data):
        if fcurve.data_path in CAMERA_OBJECT_PATHS + CAMERA_DATA_PATHS:
            for point in fcurve.keyframe_points:
                point.interpolation = path.blender_interpolation
                point.easing = path.blender_easing
            fcurve.update()

    scene.frame_start = path.frame_start
    scene.frame_end = path.frame_end
    scene.frame_set(path.frame_start)


def reset_to_rest(scene: bpy.types.Scene, root: bpy.types.Object, camera: bpy.types.Object) -> None:
    """Remove the keyed move and put the camera back at the stack's rest pose and lens."""
    focal_length_mm = stack.rest_lens_mm(camera, scene)
    _remove_fcurves(camera, CAMERA_OBJECT_PATHS)
    _remove_fcurves(camera.data, CAMERA_DATA_PATHS)
    rest = motion.CameraKey(scene.frame_start, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), focal_length_mm)
    camera.matrix_basis = _camera_basis(camera, root, rest)
    camera.data.lens = focal_length_mm
    planes.set_cover_poses(root, [])


PREVIEW_ENGINES = ('CYCLES', 'SCENE')


def render_preview(scene: bpy.types.Scene, output_base: str, resolution_percentage: int = 50,
                   samples: int = 8, video: bool = True, frame_step: int = 1, engine: str = 'CYCLES') -> list[str]:
    """Render the scene's frame range at low resolution → MP4 (H.264) if this Blender has FFmpeg, else PNG frames.

    ``engine`` 'CYCLES' renders with Cycles on the CPU whatever the scene uses: the planes are emission-only, so a
    few samples are exact and fast on any machine (EEVEE without a GPU takes most of a minute per frame).
    'SCENE' keeps the scene's engine. Render settings are restored afterwards. Returns the files written.
    """
    if engine not in PREVIEW_ENGINES:
        raise AnimationError(f"preview engine must be one of {', '.join(PREVIEW_ENGINES)}, got {engine!r}")
    render = scene.render
    image_settings = render.image_settings
    saved = {
        "engine": render.engine, "device": scene.cycles.device,
        "filepath": render.filepath, "resolution_percentage": render.resolution_percentage,
        "frame_step": scene.frame_step, "output_format": compat.output_format(image_settings),
        "color_mode": image_settings.color_mode,
        "samples": scene.cycles.samples,
        "ffmpeg": (render.ffmpeg.format, render.ffmpeg.codec, render.ffmpeg.constant_rate_factor),
        "film_transparent": render.film_transparent,
    }
    use_video = video and bpy.app.build_options.codec_ffmpeg
    os.makedirs(os.path.dirname(output_base) or ".", exist_ok=True)
    try:
        if engine == 'CYCLES':
            render.engine = 'CYCLES'
            scene.cycles.device = 'CPU'
        render.resolution_percentage = resolution_percentage
        scene.frame_step = frame_step
        if render.engine == 'CYCLES':
            scene.cycles.samples = samples
        if use_video:
            compat.set_output_format(image_settings, 'FFMPEG')
            render.ffmpeg.format = 'MPEG4'
            render.ffmpeg.codec = 'H264'
            render.ffmpeg.constant_rate_factor = 'HIGH'
            # Video has no alpha: render over an opaque background.
            render.film_transparent = False
            render.filepath = output_base + ".mp4"
            render.use_file_extension = False
        else:
            compat.set_output_format(image_settings, 'PNG')
            image_settings.color_mode = 'RGBA'
            render.filepath = output_base + "_####"
            render.use_file_extension = True
        bpy.ops.render.render(animation=True, scene=scene.name)
        if use_video:
            written = [output_base + ".mp4"]
        else:
            written = [scene.render.frame_path(frame=frame)
                       for frame in range(scene.frame_start, scene.frame_end + 1, frame_step)]
    finally:
        render.filepath = saved["filepath"]
        render.resolution_percentage = saved["resolution_percentage"]
        scene.frame_step = saved["frame_step"]
        media_type, file_format = saved["output_format"]
        compat.set_output_format(image_settings, file_format, media_type)
        image_settings.color_mode = saved["color_mode"]
        scene.cycles.samples = saved["samples"]
        render.engine, scene.cycles.device = saved["engine"], saved["device"]
        render.ffmpeg.format, render.ffmpeg.codec, render.ffmpeg.constant_rate_factor = saved["ffmpeg"]
        render.film_transparent = saved["film_transparent"]
        render.use_file_extension = True
    missing = [path for path in written if not os.path.isfile(path)]
    if missing:
        raise AnimationError(f"the preview render did not write {missing[0]}")
    return written
