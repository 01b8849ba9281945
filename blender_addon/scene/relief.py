# SPDX-License-Identifier: GPL-3.0-or-later
"""Relief in Blender: turn a layer plane into a displaced grid (``core.relief``) and texture it from the rest camera.

A plane with ``strata.relief`` > 0 and a ``depth_XX.png`` beside its ``layer_XX.png`` gets a grid mesh built in one go
with ``foreach_set``. Its material then reads the image through a rest-camera projection (Texture Coordinate in the
stack root's space → u = a·X/(-Z) + b, nodes named "Strata Relief …") instead of the mesh UVs: per-vertex UVs are
interpolated across a non-flat triangle in 3D, which slides texels by a fraction of a pixel, whereas the projection
gives every surface point exactly the image point its rest ray goes through, in Cycles and EEVEE alike. The mesh
keeps matching UVs for exporters (glTF) that cannot carry the projection. Relief 0 restores the flat quad.
"""

import os

import bpy
import numpy as np

from ..core import relief
from ..core.job_runner import depth_file_name, layer_file_index
from .stack import stack_layers

RELIEF_KEY = "strata_relief_key"
NODE_PREFIX = "Strata Relief"
_nearness_cache = {}


def depth_map_path(obj):
    """The layer's ``depth_XX.png`` (beside its ``layer_XX.png``), or None if there is none on disk."""
    source = bpy.path.abspath(obj.strata.source_path) if obj.strata.source_path else ""
    index = layer_file_index(source)
    if index is None:
        return None
    path = os.path.join(os.path.dirname(source), depth_file_name(index))
    return path if os.path.isfile(path) else None


def load_nearness(path):
    """A depth_XX.png as H×W float32 in 0..1 (top row first), read once per file version."""
    key = (path, os.path.getmtime(path), os.path.getsize(path))
    cached = _nearness_cache.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    image = bpy.data.images.load(path, check_existing=False)
    try:
        # Before the first pixel access: a 16-bit PNG is read into a float buffer, which Blender would otherwise
        # convert from sRGB to linear.
        image.colorspace_settings.name = 'Non-Color'
        width_px, height_px = image.size
        if not width_px or not height_px:
            raise RuntimeError(f"Blender cannot read the depth map {path}")
        pixels = np.empty(width_px * height_px * image.channels, np.float32)
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    nearness = pixels.reshape(height_px, width_px, -1)[::-1, :, 0].copy()
    _nearness_cache[path] = (key, nearness)
    return nearness


def _set_geometry(mesh, positions, uvs_per_loop, quads):
    mesh.clear_geometry()
    mesh.vertices.add(len(positions))
    mesh.vertices.foreach_set("co", positions.astype(np.float32).ravel())
    mesh.loops.add(quads.size)
    mesh.loops.foreach_set("vertex_index", quads.astype(np.int32).ravel())
    mesh.polygons.add(len(quads))
    mesh.polygons.foreach_set("loop_start", np.arange(0, quads.size, 4, dtype=np.int32))
    if bpy.app.version < (4, 0, 0):
        mesh.polygons.foreach_set("loop_total", np.full(len(quads), 4, np.int32))
    uv_layer = mesh.uv_layers.get("UVMap") or mesh.uv_layers.new(name="UVMap")
    uv_layer.data.foreach_set("uv", uvs_per_loop.astype(np.float32).ravel())
    mesh.update()


def restore_quad(mesh):
    """Back to the flat unit quad (UV = position + 0.5), which ``planes.set_plane_extent`` then shapes."""
    positions = np.array([(-0.5, -0.5, 0.0), (0.5, -0.5, 0.0), (0.5, 0.5, 0.0), (-0.5, 0.5, 0.0)])
    _set_geometry(mesh, positions, positions[:, :2] + 0.5, np.array([[0, 1, 2, 3]]))


def _projection_nodes(tree, root):
    """The rest-camera projection feeding the image node ("Strata Relief …" nodes), created once per material."""
    nodes, links = tree.nodes, tree.links
    coords = nodes.get(f"{NODE_PREFIX} Coordinates")
    if coords is None:
        coords = nodes.new("ShaderNodeTexCoord")
        coords.name = coords.label = f"{NODE_PREFIX} Coordinates"
        coords.location = (-1500, 300)
        split = nodes.new("ShaderNodeSeparateXYZ")
        split.name = f"{NODE_PREFIX} Split"
        split.location = (-1300, 300)
        links.new(coords.outputs["Object"], split.inputs[0])
        minus_z = nodes.new("ShaderNodeMath")
        minus_z.name, minus_z.operation = f"{NODE_PREFIX} -Z", 'MULTIPLY'
        minus_z.inputs[1].default_value = -1.0
        minus_z.location = (-1100, 200)
        links.new(split.outputs["Z"], minus_z.inputs[0])
        combine = nodes.new("ShaderNodeCombineXYZ")
        combine.name = f"{NODE_PREFIX} UV"
        combine.location = (-700, 300)
        for axis, row in (("X", 0), ("Y", 1)):
            ratio = nodes.new("ShaderNodeMath")
            ratio.name, ratio.operation = f"{NODE_PREFIX} {axis}/-Z", 'DIVIDE'
            ratio.location = (-1100, 400 - 150 * row)
            links.new(split.outputs[axis], ratio.inputs[0])
            links.new(minus_z.outputs[0], ratio.inputs[1])
            scale = nodes.new("ShaderNodeMath")
            scale.name, scale.operation = f"{NODE_PREFIX} {'U' if row == 0 else 'V'}", 'MULTIPLY_ADD'
            scale.location = (-900, 400 - 150 * row)
            links.new(ratio.outputs[0], scale.inputs[0])
            links.new(scale.outputs[0], combine.inputs[row])
    coords.object = root
    return nodes.get(f"{NODE_PREFIX} U"), nodes.get(f"{NODE_PREFIX} V"), nodes.get(f"{NODE_PREFIX} UV")


def _use_projection(image_node, root, constants):
    tree = image_node.id_data  # the material's node tree
    node_u, node_v, combine = _projection_nodes(tree, root)
    a_u, b_u, a_v, b_v = constants
    node_u.inputs[1].default_value, node_u.inputs[2].default_value = a_u, b_u
    node_v.inputs[1].default_value, node_v.inputs[2].default_value = a_v, b_v
    if not image_node.inputs["Vector"].is_linked:
        tree.links.new(combine.outputs[0], image_node.inputs["Vector"])


def _use_mesh_uvs(image_node):
    tree = image_node.id_data
    for link in list(tree.links):
        if link.to_node == image_node and link.to_socket.name == "Vector":
            tree.links.remove(link)


def apply_relief(obj, image_node, margins_uv):
    """Give ``obj`` its relief grid for its current placement (True), or make sure it is the flat quad (False, the
    caller then shapes the quad). ``margins_uv`` = (left, right, bottom, top) overscan in image units."""
    settings = obj.strata
    root = obj.parent
    mesh = obj.data
    path = depth_map_path(obj) if settings.relief > 0 else None
    if path is None or root is None or image_node is None:
        if len(mesh.vertices) != 4:
            restore_quad(mesh)
        if image_node is not None:
            _use_mesh_uvs(image_node)
        obj.pop(RELIEF_KEY, None)
        return False
    depth_m = -obj.location.z
    width_m, height_m = abs(obj.scale.x), abs(obj.scale.y)
    centre_x_m, centre_y_m = obj.location.x, obj.location.y
    layers = stack_layers(root)
    depths_m = [-other.location.z for other in layers]
    index = layers.index(obj)
    half_slab_m = relief.slab_half_m(depths_m, index)
    key = repr([round(v, 7) for v in (depth_m, width_m, height_m, centre_x_m, centre_y_m, half_slab_m,
                                      settings.relief, *margins_uv)] + [path, os.path.getmtime(path)])
    constants = relief.projection_constants(depth_m, width_m, height_m, centre_x_m, centre_y_m)
    _use_projection(image_node, root, constants)
    if obj.get(RELIEF_KEY) == key and len(mesh.vertices) > 4:
        return True
    nearness = load_nearness(path)
    positions, uvs, quads = relief.relief_grid(nearness, float(settings.relief), half_slab_m, depth_m, width_m,
                                               height_m, centre_x_m, centre_y_m, tuple(margins_uv))
    _set_geometry(mesh, positions, uvs[quads.ravel()], quads)
    obj[RELIEF_KEY] = key
    return True
