# SPDX-License-Identifier: GPL-3.0-or-later
"""Build, re-lay-out and remove a camera-exact stack of image planes.

A stack is a ROOT empty placed at the rest camera pose (the camera's world matrix when the stack was built) with
one LAYER plane per image as children at local (0, 0, -depth_m), facing the camera. Each plane is a unit square
scaled by ``core.camera_frame.plane_size_m`` so that it exactly covers the camera frame seen from the rest pose: the
camera view reproduces the original image whatever the depths, while moving the camera gives parallax. The
camera itself is never a parent, so it stays free to be animated.

Which objects form a stack is read by ``stack``; layer images and materials are ``materials``; the render settings
that make the camera view exact are ``render_settings``.

Overscan: a camera move keyed with 'OVERSCAN' coverage stores its poses on the root (``COVER_POSES_KEY``); the
background plane (the farthest; with ``OVERSCAN_LAYERS_KEY`` every plane) then extends beyond its image by the
whole texels ``core.motion.overscan_margins`` asks for, its UVs running past [0, 1] and its texture set to EXTEND,
so the margin repeats the image's edge pixels while the image itself still lands exactly on the rest frame. Every
re-layout recomputes the margins for the new depths.
"""

import logging
import os

import bpy
import numpy as np
from mathutils import Matrix

from ..core import camera_frame, motion
from . import relief as scene_relief
from .materials import create_layer_material, image_is_opaque, load_layer_image, plane_image_node
from .render_settings import configure_render
from .stack import background_plane, find_root, rest_lens_mm, stack_camera, stack_layers

logger = logging.getLogger(__name__)

DEFAULT_CAMERA_NAME = "Strata Camera"
# Custom properties on the stack root: the keyed move's poses (core.motion.encode_cover_poses) and whether every
# layer plane, not only the background, is overscanned.
COVER_POSES_KEY = "strata_cover_poses"
OVERSCAN_LAYERS_KEY = "strata_overscan_layers"


def plane_size_for(root, depth_m):
    """(width_m, height_m, centre_x_m, centre_y_m) of a plane at ``depth_m`` that fills the root's camera frame."""
    settings = root.strata
    camera = stack_camera(root, bpy.context.scene)
    width_px, height_px = settings.image_width_px, settings.image_height_px
    if camera is None:  # no camera: assume Blender's default 50 mm lens on a 36 mm sensor
        width_m, height_m = camera_frame.plane_size_m(depth_m, 36.0, 50.0, width_px, height_px)
        return width_m, height_m, 0.0, 0.0
    data = camera.data
    if data.type == 'ORTHO':
        width_m, height_m = camera_frame.ortho_plane_size_m(data.ortho_scale, width_px, height_px, data.sensor_fit)
    else:
        lens_mm = rest_lens_mm(camera, bpy.context.scene)
        width_m, height_m = camera_frame.plane_size_m(depth_m, data.sensor_width, lens_mm, width_px, height_px,
                                                      data.sensor_fit, data.sensor_height)
    centre_x_m, centre_y_m = camera_frame.shift_offset_m(width_m, height_m, data.shift_x, data.shift_y)
    return width_m, height_m, centre_x_m, centre_y_m


def place_plane(obj):
    """Move a LAYER plane to its depth and rescale it so it still projects exactly onto the camera frame."""
    root = obj.parent
    if root is None or root.strata.role != 'ROOT':
        return
    depth_m = obj.strata.depth_m
    width_m, height_m, centre_x_m, centre_y_m = plane_size_for(root, depth_m)
    obj.matrix_parent_inverse = Matrix.Identity(4)
    obj.location = (centre_x_m, centre_y_m, -depth_m)
    obj.rotation_euler = (0.0, 0.0, 0.0)
    obj.scale = (width_m * obj.strata.scale, height_m * obj.strata.scale, 1.0)
    update_overscan(root)


def set_cover_poses(root, poses, overscan_layers=False):
    """Remember a move's poses (``core.motion.CoverPose``; empty: none) and size the planes' overscan for them.

    Raises ``motion.MotionError`` (planes unchanged) when a plane cannot be covered, e.g. the camera passes it."""
    previous = (root.get(COVER_POSES_KEY), root.get(OVERSCAN_LAYERS_KEY))
    if poses:
        root[COVER_POSES_KEY] = motion.encode_cover_poses(poses)
        root[OVERSCAN_LAYERS_KEY] = bool(overscan_layers)
    else:
        root.pop(COVER_POSES_KEY, None)
        root.pop(OVERSCAN_LAYERS_KEY, None)
    try:
        update_overscan(root, strict=True)
    except motion.MotionError:
        for key, value in zip((COVER_POSES_KEY, OVERSCAN_LAYERS_KEY), previous, strict=False):
            if value is None:
                root.pop(key, None)
            else:
                root[key] = value
        raise


def cover_poses(root):
    return motion.decode_cover_poses(root.get(COVER_POSES_KEY, ()))


def plane_overscan(root, obj, poses):
    """``core.motion.Overscan`` of one plane for ``poses``, from where the plane is now (moved or scaled too)."""
    depth_m = -obj.location.z
    camera = stack_camera(root, bpy.context.scene)
    if not poses or depth_m <= 0 or (camera is not None and camera.data.type != 'PERSP'):
        return motion.Overscan()
    frame_w, frame_h, centre_x, centre_y = plane_size_for(root, depth_m)
    return motion.overscan_margins(
        poses, depth_m, (obj.location.x, obj.location.y, abs(obj.scale.x), abs(obj.scale.y)),
        (frame_w / (2 * depth_m), frame_h / (2 * depth_m)), (centre_x / depth_m, centre_y / depth_m))


def update_overscan(root, strict=False):
    """Extend the background (or every) plane by what the stored move needs; planes that need none get the plain
    frame-sized quad and CLIP back. Not ``strict`` (a re-layout in a property callback, which cannot report), a plane
    that cannot be covered keeps no overscan and the reason is printed."""
    layers = stack_layers(root)
    poses = cover_poses(root)
    everyone = bool(root.get(OVERSCAN_LAYERS_KEY, False))
    background = background_plane(root)
    margins = {}
    for obj in layers:
        margins[obj.name] = motion.Overscan()
        if poses and (everyone or obj == background):
            try:
                margins[obj.name] = plane_overscan(root, obj, poses)
            except motion.MotionError as e:
                if strict:
                    raise
                logger.warning("no overscan for '%s': %s", obj.name, e)
    for obj in layers:
        set_plane_extent(obj, margins[obj.name])


def set_plane_extent(obj, margins):
    """Shape the plane's quad as its image (the unit square, UV = position + 0.5) plus ``margins`` in whole texels."""
    node = plane_image_node(obj)
    if node is None or obj.type != 'MESH':
        return
    width_px, height_px = node.image.size
    left, right, bottom, top = (0, 0, 0, 0)
    if width_px and height_px:
        left, right, bottom, top = margins.texels(width_px, height_px)
        left, right, bottom, top = left / width_px, right / width_px, bottom / height_px, top / height_px
    # A plane with Relief is a grid shaped by scene/relief (margins included); without, it is the quad below.
    if scene_relief.apply_relief(obj, node, (left, right, bottom, top)):
        node.extension = 'EXTEND' if max(left, right, bottom, top) > 0 else 'CLIP'
        return
    if len(obj.data.vertices) != 4:
        return
    mesh = obj.data
    changed = False
    for vertex in mesh.vertices:
        x = 0.5 + right if vertex.co.x > 0 else -0.5 - left
        y = 0.5 + top if vertex.co.y > 0 else -0.5 - bottom
        if abs(vertex.co.x - x) > 1e-9 or abs(vertex.co.y - y) > 1e-9:
            vertex.co.x, vertex.co.y = x, y
            changed = True
    extension = 'EXTEND' if max(left, right, bottom, top) > 0 else 'CLIP'
    if node.extension != extension:
        node.extension = extension
    if not changed:
        return
    uv_layer = mesh.uv_layers.active
    if uv_layer is not None:
        for loop in mesh.loops:
            co = mesh.vertices[loop.vertex_index].co
            uv_layer.data[loop.index].uv = (co.x + 0.5, co.y + 0.5)
    mesh.update()


def relayout(root):
    """Recompute every plane of a stack from the root's base distance and depth spacing."""
    layers = stack_layers(root)
    distances_m = camera_frame.layer_distances_m(len(layers), root.strata.base_distance_m, root.strata.depth_spacing_m)
    for obj, distance_m in zip(layers, distances_m, strict=False):
        # Its update callback (which runs on every assignment, same value or not) moves and rescales the plane and
        # sizes the overscan for the new depths.
        obj.strata.depth_m = distance_m
    camera = stack_camera(root)
    if camera is not None and distances_m:
        camera.data.clip_start, camera.data.clip_end = camera_frame.clip_range_m(
            distances_m, camera.data.clip_start, camera.data.clip_end)


def _unit_plane_mesh(name):
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata([(-0.5, -0.5, 0.0), (0.5, -0.5, 0.0), (0.5, 0.5, 0.0), (-0.5, 0.5, 0.0)], [], [(0, 1, 2, 3)])
    uv_layer = mesh.uv_layers.new(name="UVMap")
    for loop in mesh.loops:
        x, y, _ = mesh.vertices[loop.vertex_index].co
        uv_layer.data[loop.index].uv = (x + 0.5, y + 0.5)
    mesh.update()
    return mesh


def create_layer_plane(root, image_path, name, layer_index, depth_m, blend_like_editors=True, pack=False,
                       interpolation='Closest'):
    """One LAYER plane of ``root``'s stack, showing ``image_path`` (absolute or //relative)."""
    abs_path = bpy.path.abspath(image_path)
    # Closest sampling reads one texel per sample, so the colour under alpha 0 never shows: no dilation needed.
    image = load_layer_image(abs_path, f"{root.name} {layer_index:02d}", blend_like_editors, pack,
                             dilate=(interpolation != 'Closest'))
    material = create_layer_material(f"Strata {name}", image, interpolation)
    mesh = _unit_plane_mesh(f"Strata {name}")
    mesh.materials.append(material)
    obj = bpy.data.objects.new(name, mesh)
    for collection in root.users_collection:
        collection.objects.link(obj)
    obj.parent = root
    # Shadeless emitters: they must not light or shadow anything else in the scene.
    obj.visible_shadow = False
    obj.visible_diffuse = False
    obj.visible_glossy = False
    settings = obj.strata
    settings.role = 'LAYER'
    settings.layer_index = layer_index
    settings.job_id = root.strata.job_id
    settings.source_path = image.filepath
    settings.opaque = image_is_opaque(image)
    settings.depth_m = depth_m  # its update callback places the plane
    return obj


def renumber(root):
    """Layer indices 0..n-1 in the current back → front order (after a delete or a replacement)."""
    for index, obj in enumerate(stack_layers(root)):
        obj.strata.layer_index = index


def replace_with_substack(obj, job_id, layer_paths, names):
    """Replace a layer plane by one plane per sub-layer at (about) its depth; later layers move up in the order."""
    root = find_root(obj)
    settings = obj.strata
    index, count = settings.layer_index, len(layer_paths)
    depths_m = camera_frame.substack_depths_m(settings.depth_m, root.strata.depth_spacing_m, count)
    look = (settings.opacity, settings.hue, settings.saturation, settings.value)
    hidden = (obj.hide_viewport, obj.hide_render)
    for other in stack_layers(root):
        if other.strata.layer_index > index:
            other.strata.layer_index += count - 1
    blend_like_editors = bpy.context.scene.strata.blend_like_editors
    created = []
    for offset, (path, name, depth_m) in enumerate(zip(layer_paths, names, depths_m, strict=False)):
        plane = create_layer_plane(root, path, f"{obj.name} / {name}", index + offset, depth_m,
                                   blend_like_editors)
        plane.strata.job_id = job_id
        plane.strata.opacity, plane.strata.hue, plane.strata.saturation, plane.strata.value = look
        plane.hide_viewport, plane.hide_render = hidden
        created.append(plane)
    remove_plane(obj)
    renumber(root)
    return created


def ensure_camera(context, root_name):
    """The scene camera, or a new one looking along +Y from the origin if the scene has none."""
    scene = context.scene
    if scene.camera is not None:
        return scene.camera
    data = bpy.data.cameras.new(DEFAULT_CAMERA_NAME)
    camera = bpy.data.objects.new(DEFAULT_CAMERA_NAME, data)
    scene.collection.objects.link(camera)
    camera.location = (0.0, 0.0, 0.0)
    camera.rotation_euler = (np.pi / 2, 0.0, 0.0)
    # matrix_world is only recomputed by a depsgraph update; build_stack reads it right away.
    camera.matrix_world = camera.matrix_basis.copy()
    scene.camera = camera
    return camera


def remove_plane(obj):
    """Delete a stack's object and, when nothing else uses them, its mesh, materials and their images."""
    mesh = obj.data if obj.type == 'MESH' else None
    materials = [slot.material for slot in obj.material_slots if slot.material is not None]
    bpy.data.objects.remove(obj)
    if mesh is not None and mesh.users == 0:
        bpy.data.meshes.remove(mesh)
    for material in materials:
        nodes = material.node_tree.nodes if material.node_tree else ()
        images = [node.image for node in nodes if node.type == 'TEX_IMAGE' and node.image]
        if material.users == 0:
            bpy.data.materials.remove(material)
        for image in images:
            if image.users == 0:
                bpy.data.images.remove(image)


def remove_stack(root):
    """Delete a stack: its planes, their meshes, materials and images, the root and its (then empty) collection."""
    collections = [c for c in root.users_collection if c.name.startswith("Strata ")]
    for obj in [*stack_layers(root), root]:
        remove_plane(obj)
    for collection in collections:
        if not collection.all_objects:
            bpy.data.collections.remove(collection)


def build_stack(context, layer_paths, names, job_id, server_url, name, image_size_px=None, base_distance_m=5.0,
                depth_spacing_m=0.5, blend_like_editors=True, pack=False, interpolation='Closest'):
    """Create collection, root empty, one plane per layer (back → front) and fit camera and render → root."""
    if not layer_paths:
        raise ValueError("a stack needs at least one layer image")
    if len(names) != len(layer_paths):
        raise ValueError(f"{len(names)} names for {len(layer_paths)} layer images")
    for path in layer_paths:
        if not os.path.isfile(bpy.path.abspath(path)):
            raise FileNotFoundError(f"layer image not found: {path}")
    scene = context.scene
    camera = ensure_camera(context, name)

    collection = bpy.data.collections.new(f"Strata {name}")
    scene.collection.children.link(collection)
    root = bpy.data.objects.new(f"{name} Root", None)
    root.empty_display_type = 'PLAIN_AXES'
    collection.objects.link(root)
    # The rest camera pose without scale: planes sit in camera space, the camera stays free to move afterwards.
    location, rotation, _ = camera.matrix_world.decompose()
    root.matrix_world = Matrix.LocRotScale(location, rotation, None)

    if image_size_px is None:
        probe = bpy.data.images.load(bpy.path.abspath(layer_paths[0]), check_existing=False)
        image_size_px = tuple(probe.size)
        bpy.data.images.remove(probe)
    width_px, height_px = int(image_size_px[0]), int(image_size_px[1])
    settings = root.strata
    settings.role = 'ROOT'
    settings.job_id = job_id
    settings.server_url = server_url
    settings.camera = camera
    settings.image_width_px, settings.image_height_px = width_px, height_px
    settings.base_distance_m = base_distance_m
    settings.depth_spacing_m = depth_spacing_m

    # The camera fits the frame by the render size, so set it before sizing planes.
    configure_render(scene, width_px, height_px, len(layer_paths), blend_like_editors,
                     pixel_exact=(interpolation == 'Closest'))
    distances_m = camera_frame.layer_distances_m(len(layer_paths), base_distance_m, depth_spacing_m)
    try:
        for index, (path, layer_name, distance_m) in enumerate(zip(layer_paths, names, distances_m, strict=False)):
            create_layer_plane(root, path, layer_name, index, distance_m, blend_like_editors, pack, interpolation)
    except Exception:
        remove_stack(root)  # no half-built stack: the scene keeps only what was there before
        raise
    relayout(root)
    return root
