# SPDX-License-Identifier: GPL-3.0-or-later
"""Operators: glue between the panel, the bpy-free core and the scene writers.

Each one checks its input, hands slow work to a background thread and reports failures through
``mixins.StrataOperator`` (its ``user_errors``); a failed operator leaves the scene as it was.
"""

import os

import bpy
import numpy as np
from bpy.types import Operator

from . import connection, job_watch
from .core.client import ServerError, layers_param
from .core.image_bytes import InputImageError, encode_png_rgba, sniff_image
from .core.job_runner import JobRunner
from .core.server_process import ServerStartError, tier_line
from .mixins import StrataOperator
from .preferences import get_preferences
from .scene import planes, stack
from .user_folders import layer_folder

USER_ERRORS = (ServerError, ServerStartError, InputImageError, OSError, ValueError)


def _linear_to_srgb(values):
    return np.where(values <= 0.0031308, values * 12.92, 1.055 * np.power(np.clip(values, 0.0031308, None), 1 / 2.4)
                    - 0.055)


def blender_image_bytes(image):
    """PNG/JPEG bytes of a Blender image: its file when that is what Blender shows, else its pixels as PNG."""
    if not image.is_dirty and image.source == 'FILE':
        if image.packed_file is not None:
            data = bytes(image.packed_file.data)
        else:
            path = bpy.path.abspath(image.filepath, library=image.library)
            data = open(path, "rb").read() if os.path.isfile(path) else b""
        try:
            sniff_image(data)
            return data, bpy.path.basename(image.filepath) or f"{image.name}.png"
        except InputImageError:
            pass  # a format the server may not read (EXR, ...): send the pixels instead
    width_px, height_px = image.size
    if width_px == 0 or height_px == 0:
        raise InputImageError(f"the Blender image {image.name!r} has no pixels (is its file missing?)")
    pixels = np.empty(width_px * height_px * 4, np.float32)
    image.pixels.foreach_get(pixels)
    rgba = pixels.reshape(height_px, width_px, 4)
    if image.is_float and image.colorspace_settings.name not in ('sRGB', 'Non-Color'):
        rgba = rgba.copy()
        rgba[..., :3] = _linear_to_srgb(rgba[..., :3])  # float buffers hold scene-linear values
    data = encode_png_rgba(np.clip(np.rint(rgba * 255.0), 0, 255).astype(np.uint8)[::-1])
    return data, f"{image.name}.png"


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


class STRATA_OT_decompose(StrataOperator, Operator):
    """Decompose the image into layers on the Strata server and stack them as camera-exact planes"""
    bl_idname = "strata.decompose"
    bl_label = "Decompose"
    bl_options = {'REGISTER'}
    needs, idle_only, user_errors = 'SCENE', True, USER_ERRORS

    def run(self, context):
        scene = context.scene
        settings = scene.strata
        prefs = get_preferences(context)
        data, file_name, stack_name, size_px = input_image(settings)
        params = decompose_params(settings, prefs)
        server = connection.settings_from_preferences(prefs)
        connection.check_settings(server)
        crashed = connection.crashed_message() if server["connection"] == 'START' else ""
        if crashed:
            raise ServerError(crashed)
        # With a server known to be up, submit here so that refusals (busy, queue full, bad image) show at once;
        # otherwise the background thread starts the server first and submits then.
        client = connection.running_client(server)
        version_warning = connection.server_version_warning(client) if client is not None else ""
        job_id = client.submit(data, params, file_name) if client is not None else ""

        build_options = {
            "name": stack_name,
            "image_size_px": size_px,
            "blend_like_editors": settings.blend_like_editors,
            "pack": prefs.layer_storage == 'PACKED',
            "interpolation": 'Closest' if prefs.pixel_exact else 'Linear',
        }

        def connect():
            return client if client is not None else connection.ensure_client(server)

        def on_success(target, result):
            size = build_options["image_size_px"] or (result.width_px, result.height_px)
            root = planes.build_stack(target, result.layer_paths, result.names, result.job_id, result.server_url,
                                      build_options["name"], image_size_px=size,
                                      blend_like_editors=build_options["blend_like_editors"],
                                      pack=build_options["pack"], interpolation=build_options["interpolation"])
            # Done in the scene the job was started from, which may not be the active one any more.
            target.scene.strata.active_layer_index = 0
            return root

        runner = JobRunner(connect, data, params, layer_folder(), job_id=job_id, file_name=file_name).start()
        job_watch.watch(runner, scene, on_success)
        count = "as many layers as it finds" if settings.layers_auto else f"{settings.layers} layers"
        if version_warning:
            self.report({'WARNING'}, version_warning)
        self.report({'INFO'}, f"Decomposing {file_name} into {count}")
        return {'FINISHED'}


class STRATA_OT_cancel(StrataOperator, Operator):
    """Cancel the running decomposition"""
    bl_idname = "strata.cancel"
    bl_label = "Cancel"
    needs = 'JOB'

    def run(self, context):
        job_watch.cancel()
        self.report({'INFO'}, "Canceling the Strata job")
        return {'FINISHED'}


class STRATA_OT_restart_server(StrataOperator, Operator):
    """Stop the local Strata server and start a fresh one (or check the configured running server)"""
    bl_idname = "strata.restart_server"
    bl_label = "Restart Server"
    user_errors = (ServerStartError,)

    def run(self, context):
        prefs = get_preferences(context)
        server = connection.settings_from_preferences(prefs)
        if server["connection"] == 'URL':
            client = connection.running_client(server)
            try:
                health = client.health()
            except ServerError as e:
                return self.refuse(f"{e} (this server was started elsewhere: restart it there)")
            version_warning = connection.record_version(client.url, health)
            if version_warning:
                self.report({'WARNING'}, version_warning)
            tier = tier_line(health)
            self.report({'INFO'}, f"Strata server at {server['url']} is up ({health.get('backend')} backend)"
                                  + (f"; {tier}" if tier else ""))
            return {'FINISHED'}
        connection.check_settings(server)
        connection.restart_server(server)
        self.report({'INFO'}, "Restarting the Strata server")
        return {'FINISHED'}


class STRATA_OT_relayout(StrataOperator, Operator):
    """Recompute the planes of the active stack from its depth settings"""
    bl_idname = "strata.relayout"
    bl_label = "Re-Layout Stack"
    bl_options = {'REGISTER', 'UNDO'}
    needs = 'SELECTED_STACK'

    def run(self, context):
        planes.relayout(stack.selected_root(context))
        return {'FINISHED'}


classes = (STRATA_OT_decompose, STRATA_OT_cancel, STRATA_OT_restart_server, STRATA_OT_relayout)
