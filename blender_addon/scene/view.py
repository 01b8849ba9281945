# SPDX-License-Identifier: GPL-3.0-or-later
"""Reads what the camera sees, for ``core.view_export``: the camera's projection, each plane's corners, its image.

Only reading here; the layout math is bpy-free (``core.view_export``) and the HTTP call is the operator's.
"""

from __future__ import annotations

import os

import bpy
import numpy as np
from mathutils import Vector

from ..core import view_export
from ..core.image_bytes import encode_png_rgba, rgba8
from . import materials, stack
from . import relief as scene_relief


def camera_projection(scene: bpy.types.Scene, camera: bpy.types.Object) -> view_export.CameraProjection:
    data = camera.data
    if data.type != 'PERSP':
        raise view_export.ViewExportError(f"camera '{camera.name}' is {data.type.lower()}; the view export needs a "
                                          f"perspective camera")
    render = scene.render
    if abs(render.pixel_aspect_x - render.pixel_aspect_y) > 1e-6:
        raise view_export.ViewExportError("the view export needs square pixels (Render > Format > Aspect 1:1)")
    scale = render.resolution_percentage / 100.0
    return view_export.CameraProjection(
        matrix_world=tuple(tuple(row) for row in camera.matrix_world),
        focal_length_mm=data.lens, sensor_width_mm=data.sensor_width, sensor_height_mm=data.sensor_height,
        sensor_fit=data.sensor_fit, width_px=max(1, round(render.resolution_x * scale)),
        height_px=max(1, round(render.resolution_y * scale)), shift_x=data.shift_x, shift_y=data.shift_y)


def _plane_quad(obj: bpy.types.Object):
    """[(u, v, world corner)] of the plane's four loops; UVs beyond [0, 1] are an overscan (see scene.planes)."""
    mesh = obj.data
    uv_layer = mesh.uv_layers.active
    if uv_layer is not None and len(mesh.loops) != 4 and scene_relief.RELIEF_KEY in obj:
        # A relief grid exports as the flat plane it was made from: its UV extent at the layer's depth (exact at the
        # rest pose; a moved camera sees the layer without its relief in the exported file).
        uvs = np.empty(len(mesh.loops) * 2, np.float32)
        uv_layer.data.foreach_get("uv", uvs)
        (u0, v0), (u1, v1) = uvs.reshape(-1, 2).min(axis=0), uvs.reshape(-1, 2).max(axis=0)
        return [(float(u), float(v), obj.matrix_world @ Vector((float(u) - 0.5, float(v) - 0.5, 0.0)))
                for u, v in ((u0, v0), (u1, v0), (u1, v1), (u0, v1))]
    if uv_layer is None or len(mesh.loops) != 4:
        raise view_export.ViewExportError(f"'{obj.name}' is not a Strata image plane (one UV-mapped quad)")
    return [(*uv_layer.data[loop.index].uv, obj.matrix_world @ mesh.vertices[loop.vertex_index].co)
            for loop in mesh.loops]


def plane_corners_world(obj: bpy.types.Object):
    """World corners of the plane's quad: top-left, top-right, bottom-right, bottom-left (by UV). Without overscan
    that is the image (UV (0,1), (1,1), ...); an overscanned plane exports as its image padded to the whole quad."""
    quad = _plane_quad(obj)
    picks = (lambda u, v: v - u, lambda u, v: u + v, lambda u, v: u - v, lambda u, v: -u - v)
    corners = [max(quad, key=lambda item: pick(item[0], item[1]))[2] for pick in picks]
    if len({tuple(round(c, 9) for c in corner) for corner in corners}) != 4:
        raise view_export.ViewExportError(f"'{obj.name}' is not a Strata image plane (its UVs do not span the "
                                          f"image)")
    return tuple(tuple(corner) for corner in corners)


def plane_padding_px(obj: bpy.types.Object, width_px: int, height_px: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) texels of edge padding the plane's overscan adds around its image."""
    quad = _plane_quad(obj)
    us = [u for u, _, _ in quad]
    vs = [v for _, v, _ in quad]
    return (max(0, round(-min(us) * width_px)), max(0, round((max(us) - 1.0) * width_px)),
            max(0, round((max(vs) - 1.0) * height_px)), max(0, round(-min(vs) * height_px)))


def plane_image(obj: bpy.types.Object) -> bpy.types.Image:
    node = materials.plane_image_node(obj)
    if node is None:
        raise view_export.ViewExportError(f"'{obj.name}' has no Strata image node with an image")
    return node.image


def plane_png(obj: bpy.types.Object) -> bytes:
    """The plane's layer image as PNG bytes, with its hue/saturation/value adjustment baked in and, for an
    overscanned plane, padded with its edge pixels as the render's EXTEND texture shows them."""
    image = plane_image(obj)
    settings = obj.strata
    neutral = (settings.hue, settings.saturation, settings.value) == (0.5, 1.0, 1.0)
    width_px, height_px = image.size
    left, right, top, bottom = plane_padding_px(obj, width_px, height_px)
    path = bpy.path.abspath(image.filepath) if image.filepath else ""
    if (neutral and not (left or right or top or bottom) and image.packed_file is None and path
            and os.path.isfile(path) and path.lower().endswith(".png")):
        with open(path, "rb") as handle:
            return handle.read()
    # Packed, non-PNG, colour-adjusted or overscanned: go through the pixels (Non-Color images hold the file's own
    # values).
    rgba = rgba8(materials.image_pixels(image))
    rgba = view_export.apply_hsv(rgba, settings.hue, settings.saturation, settings.value)
    if left or right or top or bottom:
        rgba = np.pad(rgba, ((top, bottom), (left, right), (0, 0)), mode="edge")
    return encode_png_rgba(np.ascontiguousarray(rgba))


def collect_view(scene: bpy.types.Scene, camera: bpy.types.Object, roots, name: str):
    """(ViewLayout, layer PNGs in layout order) for every plane of ``roots`` as ``camera`` sees it now."""
    layer_objects = [obj for root in roots for obj in stack.stack_layers(root)]
    views = [view_export.PlaneView(name=obj.name, corners_world=plane_corners_world(obj),
                                   opacity=obj.strata.opacity, visible=not obj.hide_render)
             for obj in layer_objects]
    result = view_export.layout_for_view(camera_projection(scene, camera), views, name)
    pngs = [plane_png(layer_objects[index]) for index in result.included]
    return result, pngs
