# SPDX-License-Identifier: GPL-3.0-or-later
"""Stack queries: which objects form a Strata stack, in which order, which camera it was fitted to, and which stack
and layer the UI works on.

A stack is a ROOT empty with LAYER planes as children (see ``planes``). Everything here reads the scene, except
``set_active_layer``, which only points the layer list at a plane. Panels and operators ask these functions instead
of walking ``context`` themselves, so "the stack the UI works on" means the same thing everywhere.
"""

from . import compat


def find_root(obj):
    """The ROOT empty of the stack ``obj`` belongs to (obj itself, or a parent), or None."""
    while obj is not None:
        if obj.strata.role == 'ROOT':
            return obj
        obj = obj.parent
    return None


def stack_layers(root):
    """The LAYER planes of a stack, back → front."""
    return sorted((child for child in root.children if child.strata.role == 'LAYER'),
                  key=lambda obj: obj.strata.layer_index)


def stack_camera(root, scene=None):
    camera = root.strata.camera
    if camera is None and scene is not None:
        camera = scene.camera
    return camera


def rest_lens_mm(camera, scene):
    """The focal length of the rest pose: an animated lens (a Strata camera move) is read at the first frame,
    which is the rest pose, so planes re-laid-out while scrubbing the move still fit the rest camera."""
    fcurves = compat.action_fcurves(camera.data) if scene is not None else None
    fcurve = fcurves.find("lens") if fcurves is not None else None
    if fcurve is not None:
        return float(fcurve.evaluate(scene.frame_start))
    return float(camera.data.lens)


def background_plane(root):
    """The plane that fills the frame behind everything: the nearest one that hides every plane behind it (an
    opaque image at full opacity and scale, rendered), else the farthest (the lowest layer index among equals).

    The planes behind an opaque one never show from the rest camera (a Photoshop document's white sheet under
    a coloured ground), so a move is covered, and its amplitude measured, against the opaque one."""
    layers = sorted(stack_layers(root), key=lambda obj: (obj.strata.depth_m, -obj.strata.layer_index))
    if not layers:
        return None
    hiding = [obj for obj in layers if obj.strata.opaque and obj.strata.opacity >= 1.0 and obj.strata.scale >= 1.0
              and not obj.hide_render]
    return hiding[0] if hiding else layers[-1]


def scene_roots(scene):
    """Every stack root of ``scene``."""
    return [obj for obj in scene.objects if obj.strata.role == 'ROOT']


def selected_root(context):
    """The stack of the active object, or None (the Stack panel and Re-Layout act on a selected stack only)."""
    return find_root(context.object)


def context_root(context):
    """The stack the UI works on: the active object's stack, else the scene's only (or first) stack."""
    root = find_root(context.active_object) if context.active_object else None
    if root is not None:
        return root
    roots = scene_roots(context.scene)
    return roots[0] if roots else None


def active_layer(context):
    """(root, plane) the layer operators act on: the layer list's active row (``Scene.strata.active_layer_index``
    indexes ``Scene.objects``; the list filters it to one stack), else the active object if it is a layer plane."""
    objects = context.scene.objects
    index = context.scene.strata.active_layer_index
    obj = objects[index] if 0 <= index < len(objects) else None
    if obj is None or obj.strata.role != 'LAYER':
        obj = context.active_object
    if obj is None or obj.strata.role != 'LAYER':
        return None, None
    root = find_root(obj)
    return (root, obj) if root is not None else (None, None)


def set_active_layer(context, obj):
    """Point the layer list at ``obj``."""
    for index, candidate in enumerate(context.scene.objects):
        if candidate == obj:
            context.scene.strata.active_layer_index = index
            return
