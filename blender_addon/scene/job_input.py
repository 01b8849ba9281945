# SPDX-License-Identifier: GPL-3.0-or-later
"""What a decomposition job sends, read on the main thread: the input image as bytes the server reads, the job's
parameters from the panel and the preferences, and for a re-decomposition the layer's job and image."""

import os

import bpy

from ..core.client import layers_param
from ..core.image_bytes import InputImageError, encode_png_rgba, linear_to_srgb, rgba8, sniff_image
from ..core.job_runner import layer_file_index
from . import materials


def blender_image_bytes(image):
    """PNG/JPEG bytes of a Blender image: its file when that is what Blender shows, else its pixels as PNG."""
    if not image.is_dirty and image.source == 'FILE':
        if image.packed_file is not None:
            data = bytes(image.packed_file.data)
        else:
            path = bpy.path.abspath(image.filepath, library=image.library)
            data = b""
            if os.path.isfile(path):
                with open(path, "rb") as handle:
                    data = handle.read()
        try:
            sniff_image(data)
            return data, bpy.path.basename(image.filepath) or f"{image.name}.png"
        except InputImageError:
            pass  # a format the server may not read (EXR, ...): send the pixels instead
    width_px, height_px = image.size
    if width_px == 0 or height_px == 0:
        raise InputImageError(f"the Blender image {image.name!r} has no pixels (is its file missing?)")
    rgba = materials.image_pixels(image)
    if image.is_float and image.colorspace_settings.name not in ('sRGB', 'Non-Color'):
        rgba = rgba.copy()
        rgba[..., :3] = linear_to_srgb(rgba[..., :3])  # float buffers hold scene-linear values
    return encode_png_rgba(rgba8(rgba)), f"{image.name}.png"


def input_image(settings):
    """(bytes, file name, stack name, (width_px, height_px) or None) of the image the panel points at."""
    if settings.image is not None:
        data, file_name = blender_image_bytes(settings.image)
        stack_name = settings.image.name
    elif settings.image_path:
        path = bpy.path.abspath(settings.image_path)
        if not os.path.isfile(path):
            raise InputImageError(f"image file not found: {path}")
        with open(path, "rb") as handle:
            data = handle.read()
        file_name = os.path.basename(path)
        stack_name = os.path.splitext(file_name)[0]
    else:
        raise InputImageError("no input image: pick an image file or a Blender image in the Strata panel")
    _, width_px, height_px = sniff_image(data, name=file_name)
    size_px = (width_px, height_px) if width_px and height_px else None
    return data, file_name, stack_name, size_px


def decompose_params(settings, prefs):
    """The job's parameters from the panel (``Scene.strata``) and the add-on preferences."""
    params = {
        "layers": layers_param(settings.layers_auto, settings.layers),
        "num_inference_steps": settings.steps,
        "resolution": int(settings.resolution),
        "prompt": settings.prompt,
        "backend": prefs.backend,
        "preset": prefs.preset,
        "offload": prefs.offload,
    }
    if settings.seed >= 0:
        params["seed"] = settings.seed
    if getattr(settings, "depth", False):
        params["depth"] = True
    return params


def source_job_layer(obj):
    """(job id, layer index in that job) of a plane built from a server job's layer, or (job id, None)."""
    return obj.strata.job_id, layer_file_index(bpy.path.basename(obj.strata.source_path or ""))


def layer_source_png(obj):
    """(PNG bytes of the plane's layer image, '') or (None, why it is missing)."""
    from .view import plane_image

    image = plane_image(obj)
    if image.packed_file is not None:
        return bytes(image.packed_file.data), ""
    path = bpy.path.abspath(obj.strata.source_path or image.filepath)
    if not os.path.isfile(path):
        return None, f"the layer image of '{obj.name}' is missing: {path}"
    with open(path, "rb") as handle:
        return handle.read(), ""
