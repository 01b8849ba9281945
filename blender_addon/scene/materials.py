# SPDX-License-Identifier: GPL-3.0-or-later
"""Layer images and the layer material: load (and dilate) a layer PNG, build its shadeless material, apply its look.

The material is TexImage → "Strata HSV" → Emission, mixed with Transparent by alpha × opacity ("Strata Opacity"); the
named nodes are what the rest of the add-on (look, overscan, exports) finds again.
"""

import bpy
import numpy as np

from ..core.image_bytes import dilate_transparent, encode_png_rgba, rgba8
from ..core.job_runner import write_bytes_atomic

HSV_NODE = "Strata HSV"
OPACITY_NODE = "Strata Opacity"
IMAGE_NODE = "Strata Image"


def plane_image_node(obj):
    """The plane material's "Strata Image" texture node that has an image, or None."""
    for slot in obj.material_slots:
        if slot.material is not None and slot.material.node_tree is not None:
            node = slot.material.node_tree.nodes.get(IMAGE_NODE)
            if node is not None and node.image is not None:
                return node
    return None


def apply_layer_look(obj):
    """Write the layer's opacity and hue/saturation/value into its material's named nodes."""
    settings = obj.strata
    for slot in obj.material_slots:
        material = slot.material
        if material is None or material.node_tree is None:
            continue
        nodes = material.node_tree.nodes
        hsv = nodes.get(HSV_NODE)
        if hsv is not None:
            hsv.inputs["Hue"].default_value = settings.hue
            hsv.inputs["Saturation"].default_value = settings.saturation
            hsv.inputs["Value"].default_value = settings.value
        opacity = nodes.get(OPACITY_NODE)
        if opacity is not None:
            opacity.inputs[1].default_value = settings.opacity


def image_pixels(image):
    """A Blender image's RGBA pixels as H×W×4 float32, top row first (bpy's own rows start at the bottom)."""
    width_px, height_px = image.size
    pixels = np.empty(width_px * height_px * 4, np.float32)
    image.pixels.foreach_get(pixels)
    return pixels.reshape(height_px, width_px, 4)[::-1]


def _dilate_image_file(image, abs_path):
    """Give transparent texels their neighbours' colour, rewriting the PNG atomically (see core.image_bytes)."""
    dilated, changed = dilate_transparent(rgba8(image_pixels(image)))
    if changed:
        write_bytes_atomic(abs_path, encode_png_rgba(dilated))
        image.reload()


def load_layer_image(abs_path, name, blend_like_editors=True, pack=False, dilate=True):
    image = bpy.data.images.load(abs_path, check_existing=False)
    if image.size[0] == 0 or image.size[1] == 0:  # Blender loads lazily and does not raise on a broken file
        bpy.data.images.remove(image)
        raise RuntimeError(f"Blender cannot read the layer image {abs_path} (missing or corrupt)")
    image.name = name
    image.alpha_mode = 'STRAIGHT'
    # Non-Color keeps the sRGB-encoded values as they are, so blending happens on them like in image editors;
    # the view transform 'Raw' then writes them out unchanged.
    image.colorspace_settings.name = 'Non-Color' if blend_like_editors else 'sRGB'
    if dilate:
        _dilate_image_file(image, abs_path)
    if bpy.data.filepath:
        try:
            image.filepath = bpy.path.relpath(abs_path)
        except ValueError:  # another drive on Windows: keep it absolute
            pass
    if pack:
        image.pack()
    return image


def image_is_opaque(image):
    """True when every pixel of ``image`` is fully opaque (alpha 1 within half a level of 8 bits)."""
    return bool(image_pixels(image)[..., 3].min() >= 1.0 - 0.5 / 255.0)


def create_layer_material(name, image, interpolation='Closest'):
    """TexImage → "Strata HSV" → Emission, mixed with Transparent by alpha × opacity ("Strata Opacity")."""
    material = bpy.data.materials.new(name)
    if not material.node_tree:  # Blender < 5.0 creates materials without nodes
        material.use_nodes = True
    # BLENDED gives exact soft alpha in EEVEE; parallel planes sort correctly by origin distance.
    material.surface_render_method = 'BLENDED'
    tree = material.node_tree
    nodes, links = tree.nodes, tree.links
    nodes.clear()
    texture = nodes.new("ShaderNodeTexImage")
    texture.name = texture.label = IMAGE_NODE
    texture.image = image
    texture.extension = 'CLIP'
    texture.interpolation = interpolation
    texture.location = (-700, 0)
    hsv = nodes.new("ShaderNodeHueSaturation")
    hsv.name = hsv.label = HSV_NODE
    hsv.location = (-400, 100)
    emission = nodes.new("ShaderNodeEmission")
    emission.inputs["Strength"].default_value = 1.0
    emission.location = (-150, 100)
    transparent = nodes.new("ShaderNodeBsdfTransparent")
    transparent.location = (-150, -100)
    opacity = nodes.new("ShaderNodeMath")
    opacity.name = opacity.label = OPACITY_NODE
    opacity.operation = 'MULTIPLY'
    opacity.use_clamp = True
    opacity.inputs[1].default_value = 1.0
    opacity.location = (-400, -150)
    mix = nodes.new("ShaderNodeMixShader")
    mix.location = (100, 0)
    output = nodes.new("ShaderNodeOutputMaterial")
    output.location = (300, 0)
    links.new(texture.outputs["Color"], hsv.inputs["Color"])
    links.new(hsv.outputs["Color"], emission.inputs["Color"])
    links.new(texture.outputs["Alpha"], opacity.inputs[0])
    links.new(opacity.outputs["Value"], mix.inputs["Fac"])
    links.new(transparent.outputs["BSDF"], mix.inputs[1])
    links.new(emission.outputs["Emission"], mix.inputs[2])
    links.new(mix.outputs["Shader"], output.inputs["Surface"])
    return material
