# SPDX-License-Identifier: GPL-3.0-or-later
"""Exports of a whole stack: glTF/GLB through Blender's own exporter, and a self-contained web page.

glTF: the root, its layer planes (quads or relief grids, with their textures and alpha) and the stack's camera with its
keyed move go through ``bpy.ops.export_scene.gltf``. Our layer material (Emission mixed with Transparent by alpha) is
recognised by the exporter as unlit (KHR_materials_unlit, alpha BLEND) only with the "Light Path: Is Camera Ray" mix
in front of the Emission, so that mix is added for the export and removed afterwards; rendering is the same with or
without it (layers are seen by camera rays only).

Web page: ``gather_web_scene`` reads the stack into ``core.web_export.WebScene`` (meshes in the rest camera's space,
projection constants, PNGs, the camera move sampled per frame); ``core.web_export`` writes the page.
"""

import os

import bpy
import numpy as np

from ..core import relief, web_export
from . import materials, planes, stack

LIGHT_PATH_NODE = "Strata Export Light Path"
LIGHT_PATH_MIX_NODE = "Strata Export Camera Ray"


class StackExportError(RuntimeError):
    """A stack that cannot be exported as asked (no layers, an orthographic camera for the page, an unreadable PNG)."""


def _layers(root):
    return [obj for obj in stack.stack_layers(root) if not obj.hide_render]


def _add_unlit_hint(material):
    """Put "Light Path: Is Camera Ray" between the Emission and the alpha mix (the exporter's unlit pattern)."""
    tree = material.node_tree
    nodes, links = tree.nodes, tree.links
    if nodes.get(LIGHT_PATH_MIX_NODE) is not None:
        return
    alpha_mix = next((node for node in nodes if node.type == 'MIX_SHADER'), None)
    emission = next((node for node in nodes if node.type == 'EMISSION'), None)
    if alpha_mix is None or emission is None:
        return
    light_path = nodes.new("ShaderNodeLightPath")
    light_path.name = LIGHT_PATH_NODE
    camera_mix = nodes.new("ShaderNodeMixShader")
    camera_mix.name = LIGHT_PATH_MIX_NODE
    links.new(light_path.outputs["Is Camera Ray"], camera_mix.inputs[0])
    links.new(emission.outputs[0], camera_mix.inputs[1])
    links.new(emission.outputs[0], camera_mix.inputs[2])
    links.new(camera_mix.outputs[0], alpha_mix.inputs[2])


def _remove_unlit_hint(material):
    tree = material.node_tree
    nodes, links = tree.nodes, tree.links
    camera_mix = nodes.get(LIGHT_PATH_MIX_NODE)
    if camera_mix is None:
        return
    alpha_mix = next((node for node in nodes if node.type == 'MIX_SHADER' and node != camera_mix), None)
    emission = next((node for node in nodes if node.type == 'EMISSION'), None)
    nodes.remove(camera_mix)
    light_path = nodes.get(LIGHT_PATH_NODE)
    if light_path is not None:
        nodes.remove(light_path)
    if alpha_mix is not None and emission is not None:
        links.new(emission.outputs[0], alpha_mix.inputs[2])


def _gltf_options(filepath, available):
    wanted = {
        "filepath": filepath,
        "export_format": 'GLB' if filepath.lower().endswith(".glb") else 'GLTF_SEPARATE',
        "use_selection": True,
        "export_cameras": True,
        "export_animations": True,
        "export_yup": True,
        "export_apply": False,
        "export_texcoords": True,
        "export_materials": 'EXPORT',
        "export_lights": False,
        "export_extras": True,
    }
    return {key: value for key, value in wanted.items() if key in available}


def export_gltf(context, root, filepath):
    """Write the stack (planes, textures with alpha, camera and its move) as .glb or .gltf → the file's path."""
    layers = _layers(root)
    if not layers:
        raise StackExportError("the stack has no visible layers to export")
    scene = context.scene
    camera = stack.stack_camera(root, scene)
    exported = [root, *layers] + ([camera] if camera is not None else [])
    layer_materials = {slot.material for obj in layers for slot in obj.material_slots if slot.material is not None}
    selection = [obj for obj in context.view_layer.objects if obj.select_get()]
    active = context.view_layer.objects.active
    frame = scene.frame_current
    os.makedirs(os.path.dirname(os.path.abspath(filepath)), exist_ok=True)
    try:
        scene.frame_set(scene.frame_start)  # node transforms at the rest pose; the move is the animation
        for obj in context.view_layer.objects:
            obj.select_set(obj in exported)
        context.view_layer.objects.active = root
        for material in layer_materials:
            _add_unlit_hint(material)
        available = bpy.ops.export_scene.gltf.get_rna_type().properties.keys()
        result = bpy.ops.export_scene.gltf(**_gltf_options(os.path.abspath(filepath), available))
        if result != {'FINISHED'}:
            raise StackExportError(f"Blender's glTF exporter did not finish ({result})")
    finally:
        for material in layer_materials:
            _remove_unlit_hint(material)
        for obj in context.view_layer.objects:
            obj.select_set(obj in selection)
        context.view_layer.objects.active = active
        scene.frame_set(frame)
    return os.path.abspath(filepath)


def _png_bytes(image):
    if image.packed_file is not None:
        data = bytes(image.packed_file.data)
    else:
        path = bpy.path.abspath(image.filepath)
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise StackExportError(f"cannot read the layer image {path} ({exc.strerror or exc})") from None
    if not data.startswith(b"\x89PNG"):
        raise StackExportError(f"layer image {image.name!r} is not a PNG; the page embeds the layers as PNG")
    return data


def _mesh_in_rest_space(root, obj):
    mesh = obj.data
    count = len(mesh.vertices)
    co = np.empty(count * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    matrix = np.array(root.matrix_world.inverted() @ obj.matrix_world)
    positions = co.reshape(-1, 3).astype(np.float64) @ matrix[:3, :3].T + matrix[:3, 3]
    mesh.calc_loop_triangles()
    triangles = np.empty(len(mesh.loop_triangles) * 3, np.int32)
    mesh.loop_triangles.foreach_get("vertices", triangles)
    return positions, triangles.reshape(-1, 3)


def gather_web_scene(context, root):
    """The stack as ``core.web_export.WebScene``: what the page shows at rest is the camera's frame 1."""
    scene = context.scene
    camera = stack.stack_camera(root, scene)
    if camera is not None and camera.data.type != 'PERSP':
        raise StackExportError("the web page needs a perspective camera (this stack's camera is "
                               f"{camera.data.type.lower()})")
    layers = []
    # Planes behind the background plane never show and the page keeps the frame covered by the farthest layer
    # it has: they are left out.
    background = stack.background_plane(root)
    for obj in _layers(root):
        node = materials.plane_image_node(obj)
        if node is None or obj.strata.depth_m > background.strata.depth_m:
            continue
        positions, triangles = _mesh_in_rest_space(root, obj)
        projection = relief.projection_constants(-obj.location.z, abs(obj.scale.x), abs(obj.scale.y),
                                                 obj.location.x, obj.location.y)
        layers.append(web_export.WebLayer(
            name=obj.name, png=_png_bytes(node.image), positions_m=positions, triangles=triangles,
            projection=projection, opacity=float(obj.strata.opacity), extend=(node.extension == 'EXTEND')))
    if not layers:
        raise StackExportError("the stack has no visible layers to export")
    width_m, height_m, centre_x_m, centre_y_m = planes.plane_size_for(root, 1.0)
    frames, zooms = [], []
    rest_pose, rest_zoom = None, 1.0
    if camera is not None:
        rest_lens_mm = stack.rest_lens_mm(camera, scene)
        animated = camera.animation_data is not None and camera.animation_data.action is not None
        current = scene.frame_current
        try:
            for frame in range(scene.frame_start, scene.frame_end + 1 if animated else scene.frame_start + 1):
                scene.frame_set(frame)
                matrix = root.matrix_world.inverted() @ camera.matrix_world.normalized()
                frames.append([value for row in matrix for value in row])
                zooms.append(float(camera.data.lens) / rest_lens_mm)
        finally:
            scene.frame_set(current)
        rest_pose, rest_zoom = frames[0], zooms[0]
        if not animated:
            frames, zooms = [], []
    settings = root.strata
    return web_export.WebScene(
        width_px=settings.image_width_px, height_px=settings.image_height_px,
        frame_centre=(centre_x_m, centre_y_m), frame_half=(width_m / 2.0, height_m / 2.0), layers=layers,
        fps=scene.render.fps / (scene.render.fps_base or 1.0), camera_frames=frames, camera_zoom=zooms,
        title=f"{root.name} · Strata", **({"rest_pose": rest_pose, "rest_zoom": rest_zoom} if rest_pose else {}))


def export_web_page(context, root, folder):
    """Write ``folder/index.html`` for the stack → its path."""
    try:
        return web_export.write_web_page(bpy.path.abspath(folder), gather_web_scene(context, root))
    except web_export.WebExportError as exc:
        raise StackExportError(str(exc)) from None
