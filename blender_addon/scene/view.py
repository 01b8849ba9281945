"""Reads what the camera sees, for ``core.view_export``: the camera's projection, each plane's corners, its image.

Only reading here; the layout math is bpy-free (``core.view_export``) and the HTTP call is the operator's.
"""

from __future__ import annotations

import os

import bpy
import numpy as np

from ..core import view_export
from ..core.images import encode_png_rgba
from . import planes


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


def plane_corners_world(obj: bpy.types.Object):
    """World corners of the plane's image: top-left, top-right, bottom-right, bottom-left (UV (0,1), (1,1), ...)."""
    mesh = obj.data
    uv_layer = mesh.uv_layers.active
    by_uv = {}
    for loop in mesh.loops:
        u, v = uv_layer.data[loop.index].uv if uv_layer else (0.0, 0.0)
        by_uv[(round(u), round(v))] = obj.matrix_world @ mesh.vertices[loop.vertex_index].co
    try:
        return tuple(tuple(by_uv[uv]) for uv in ((0, 1), (1, 1), (1, 0), (0, 0)))
    except KeyError:
        raise view_export.ViewExportError(f"'{obj.name}' is not a Strata image plane (its UVs do not span the "
                                          f"image)") from None


def plane_image(obj: bpy.types.Object) -> bpy.types.Image:
    for slot in obj.material_slots:
        material = slot.material
        if material and material.node_tree:
            node = material.node_tree.nodes.get(planes.IMAGE_NODE)
            if node is not None and node.image is not None:
                return node.image
    raise view_export.ViewExportError(f"'{obj.name}' has no Strata image node with an image")


def plane_png(obj: bpy.types.Object) -> bytes:
    """The plane's layer image as PNG bytes, with its hue/saturation/value adjustment baked in."""
    image = plane_image(obj)
    settings = obj.strata
    neutral = (settings.hue, settings.saturation, settings.value) == (0.5, 1.0, 1.0)
    path = bpy.path.abspath(image.filepath) if image.filepath else ""
    if neutral and image.packed_file is None and path and os.path.isfile(path) and path.lower().endswith(".png"):
        with open(path, "rb") as handle:
            return handle.read()
    # Packed, non-PNG or colour-adjusted: go through the pixels. Non-Color images hold the file's own values;
    # bpy pixels start at the bottom row.
    width_px, height_px = image.size
    pixels = np.empty(width_px * height_px * 4, np.float32)
    image.pixels.foreach_get(pixels)
    rgba = np.clip(np.rint(pixels.reshape(height_px, width_px, 4)[::-1] * 255.0), 0, 255).astype(np.uint8)
    rgba = view_export.apply_hsv(rgba, settings.hue, settings.saturation, settings.value)
    return encode_png_rgba(np.ascontiguousarray(rgba))


def collect_view(scene: bpy.types.Scene, camera: bpy.types.Object, roots, name: str):
    """(ViewLayout, layer PNGs in layout order) for every plane of ``roots`` as ``camera`` sees it now."""
    layer_objects = [obj for root in roots for obj in planes.stack_layers(root)]
    views = [view_export.PlaneView(name=obj.name, corners_world=plane_corners_world(obj),
                                   opacity=obj.strata.opacity, visible=not obj.hide_render)
             for obj in layer_objects]
    result = view_export.layout_for_view(camera_projection(scene, camera), views, name)
    pngs = [plane_png(layer_objects[index]) for index in result.included]
    return result, pngs
