# SPDX-License-Identifier: GPL-3.0-or-later
"""Scene.strata (input, job state) and Object.strata (stack root / layer plane) property groups.

Update callbacks only forward to ``scene/``: geometry in ``planes``, the layer's look in ``materials``.
"""

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty
from bpy.types import PropertyGroup

from .scene import compat, materials, planes, stack


def _relayout(self, context):
    if self.role == 'ROOT':
        planes.relayout(self.id_data)


def _place_layer(self, context):
    if self.role == 'LAYER':
        planes.place_plane(self.id_data)


def _apply_look(self, context):
    if self.role == 'LAYER':
        materials.apply_layer_look(self.id_data)


def _relief_all(self, context):
    if self.role == 'ROOT':
        for obj in stack.stack_layers(self.id_data):
            obj.strata.relief = self.relief_all


def _poll_camera(self, obj):
    return obj.type == 'CAMERA'


class StrataSceneSettings(PropertyGroup):
    # Input
    image_path: StringProperty(
        name="Image File", subtype='FILE_PATH', options=compat.blend_relative_path_options(),
        description="Image to decompose (used when no Blender image is picked)")
    image: PointerProperty(
        name="Blender Image", type=bpy.types.Image,
        description="An image already in Blender (generated or unsaved images are sent as PNG)")
    layers_auto: BoolProperty(
        name="Auto", default=True,
        description="Let the decomposer choose how many layers the image has (1–16); off: ask for Layers")
    layers: IntProperty(name="Layers", default=4, min=1, max=16, description="How many RGBA layers to produce")
    steps: IntProperty(name="Steps", default=50, min=1, max=200,
                       description="Denoising steps of the diffusion model (the CPU decomposer ignores them)")
    resolution: EnumProperty(
        name="Resolution", default='640',
        items=(('640', "640", "The model's 640 px bucket: faster"),
               ('1024', "1024", "The model's 1024 px bucket: more detail, about 4x slower")))
    seed: IntProperty(name="Seed", default=-1, min=-1, description="Random seed; -1 picks a new one each time")
    prompt: StringProperty(name="Prompt", default="",
                           description="What the image shows; empty lets the model caption it")
    depth: BoolProperty(
        name="Depth", default=False,
        description="Also estimate depth per layer on the server (Depth Anything), for the layers' Relief")
    blend_like_editors: BoolProperty(
        name="Blend Like Image Editors", default=True,
        description="Blend layers on sRGB values like PIL, PowerPoint or Photoshop do (textures as Non-Color, view "
                    "transform Raw), so semi-transparent edges match the input. Off: Blender's scene-linear blending")

    # Job state, filled by job_watch.tick() from the background thread's snapshot
    job_id: StringProperty(name="Job")
    job_status: StringProperty(name="Status", description="queued, running, succeeded, failed or canceled")
    job_stage: StringProperty(name="Stage")
    job_step: IntProperty(name="Step", min=0)
    job_total: IntProperty(name="Total", min=0)
    job_progress: FloatProperty(name="Progress", min=0.0, max=1.0, subtype='FACTOR')
    job_message: StringProperty(name="Message")

    active_layer_index: IntProperty(name="Active Layer", min=0)


class StrataObjectSettings(PropertyGroup):
    role: EnumProperty(
        name="Role", default='NONE',
        items=(('NONE', "None", "Not part of a Strata stack"),
               ('ROOT', "Root", "The empty at the rest camera pose that holds a stack"),
               ('LAYER', "Layer", "One image plane of a stack")))
    job_id: StringProperty(name="Job", description="The server job that produced this stack or layer")

    # On the ROOT empty
    server_url: StringProperty(name="Server URL")
    depth_spacing_m: FloatProperty(
        name="Depth Spacing", default=0.5, min=0.001, soft_max=10.0, unit='LENGTH', update=_relayout,
        description="Distance between consecutive layers; each plane is rescaled so the camera view stays exact")
    base_distance_m: FloatProperty(
        name="Front Distance", default=5.0, min=0.01, soft_max=100.0, unit='LENGTH', update=_relayout,
        description="Distance from the rest camera to the front layer")
    relief_all: FloatProperty(
        name="Relief (All Layers)", default=0.0, min=0.0, max=1.0, subtype='FACTOR', update=_relief_all,
        description="Set every layer's Relief at once (each layer can then be changed on its own)")
    image_width_px: IntProperty(name="Width", min=1, default=1, subtype='PIXEL')
    image_height_px: IntProperty(name="Height", min=1, default=1, subtype='PIXEL')
    camera: PointerProperty(name="Camera", type=bpy.types.Object, poll=_poll_camera,
                            description="The camera the stack was fitted to")

    # On each LAYER plane
    layer_index: IntProperty(name="Layer Index", min=0, description="Order in the stack: 0 = back")
    depth_m: FloatProperty(
        name="Depth", default=5.0, min=0.001, unit='LENGTH', update=_place_layer,
        description="Distance from the rest camera; the plane is rescaled so it still fills the camera frame")
    scale: FloatProperty(
        name="Scale", default=1.0, min=0.01, soft_max=4.0, update=_place_layer,
        description="Size relative to the camera fit, about the frame centre (1 = fills the frame from the rest "
                    "camera)")
    relief: FloatProperty(
        name="Relief", default=0.0, min=0.0, max=1.0, subtype='FACTOR', update=_place_layer,
        description="Depth inside the layer from its depth map (decompose with Depth): 0 = flat; 1 = the layer's "
                    "whole slab between its neighbours. The rest camera view stays exact")
    opacity: FloatProperty(name="Opacity", default=1.0, min=0.0, max=1.0, subtype='FACTOR', update=_apply_look)
    hue: FloatProperty(name="Hue", default=0.5, min=0.0, max=1.0, subtype='FACTOR', update=_apply_look,
                       description="0.5 keeps the hue")
    saturation: FloatProperty(name="Saturation", default=1.0, min=0.0, max=2.0, update=_apply_look)
    value: FloatProperty(name="Value", default=1.0, min=0.0, max=2.0, update=_apply_look)
    source_path: StringProperty(name="Source", subtype='FILE_PATH', options=compat.blend_relative_path_options(),
                                description="The layer PNG on disk")
    opaque: BoolProperty(name="Opaque", default=False,
                         description="The layer's image has no transparent pixel: at full opacity and scale its "
                                     "plane hides every plane behind it (set when the plane is made)")


def register():
    bpy.types.Scene.strata = PointerProperty(type=StrataSceneSettings)
    bpy.types.Object.strata = PointerProperty(type=StrataObjectSettings)


def unregister():
    del bpy.types.Object.strata
    del bpy.types.Scene.strata


classes = (StrataSceneSettings, StrataObjectSettings)
