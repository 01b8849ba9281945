# SPDX-License-Identifier: GPL-3.0-or-later
"""Operators: glue between the panel, the bpy-free core and the scene writers.

Each one checks its input, hands slow work to a background thread and reports failures through
``mixins.StrataOperator`` (its ``user_errors``); a failed operator leaves the scene as it was.
"""

from bpy.types import Operator

from . import connection, job_watch
from .core.client import ServerError
from .core.image_bytes import InputImageError
from .core.job_runner import JobRunner
from .core.server_process import ServerStartError, tier_line
from .mixins import StrataOperator
from .preferences import get_preferences
from .scene import planes, stack
from .scene.job_input import decompose_params, input_image
from .user_folders import layer_folder

USER_ERRORS = (ServerError, ServerStartError, InputImageError, OSError, ValueError)


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
