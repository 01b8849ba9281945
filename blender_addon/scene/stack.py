"""Stack queries: which objects form a Strata stack, in which order, and which camera it was fitted to.

A stack is a ROOT empty with LAYER planes as children (see ``planes``); these functions only read the scene.
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
    """The plane that fills the frame behind everything: the farthest (the lowest layer index among equals)."""
    layers = stack_layers(root)
    return max(layers, key=lambda obj: (obj.strata.depth_m, -obj.strata.layer_index)) if layers else None
