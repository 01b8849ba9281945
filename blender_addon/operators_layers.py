# SPDX-License-Identifier: GPL-3.0-or-later
"""Per-layer operators of a stack: select, reorder (depth order follows the layer order), delete.

The layer list (``panels_layers.py``) shows the LAYER planes of one stack, front on top; its active row is
``Scene.strata.active_layer_index``, an index into ``Scene.objects`` (a UIList needs a real collection property), read
by ``scene.stack.active_layer``.
"""

import json

import bpy
from bpy.props import EnumProperty, IntProperty, StringProperty
from bpy.types import Operator

from . import connection, job_watch
from .core.client import ServerError
from .core.job_runner import JobRunner
from .core.server_process import ServerStartError
from .core.view_export import ViewExportError
from .mixins import StrataOperator
from .preferences import get_preferences
from .scene import planes, stack
from .scene.job_input import decompose_params, layer_source_png, source_job_layer
from .scene.stack import active_layer, set_active_layer
from .user_folders import layer_folder


class STRATA_OT_layer_select(StrataOperator, Operator):
    """Select the active layer's plane in the viewport"""
    bl_idname = "strata.layer_select"
    bl_label = "Select Layer Plane"
    bl_options = {'REGISTER', 'UNDO'}
    needs = 'LAYER'

    def run(self, context):
        _, obj = active_layer(context)
        for other in context.selected_objects:
            other.select_set(False)
        if not obj.visible_get():
            return self.refuse(f"'{obj.name}' is hidden in the viewport", 'WARNING')
        obj.select_set(True)
        context.view_layer.objects.active = obj
        return {'FINISHED'}


class STRATA_OT_layer_move(StrataOperator, Operator):
    """Move the layer one step toward the front or the back: it swaps order and depth with its neighbour"""
    bl_idname = "strata.layer_move"
    bl_label = "Move Layer"
    bl_options = {'REGISTER', 'UNDO'}
    needs = 'LAYER'

    direction: EnumProperty(items=(('UP', "Up", "Toward the front (closer to the camera)"),
                                   ('DOWN', "Down", "Toward the back (farther from the camera)")))

    def run(self, context):
        root, obj = active_layer(context)
        layers = stack.stack_layers(root)
        index = layers.index(obj)
        other_index = index + (1 if self.direction == 'UP' else -1)
        if not 0 <= other_index < len(layers):
            return self.refuse(f"'{obj.name}' is already the {'front' if self.direction == 'UP' else 'back'} layer",
                               'INFO')
        other = layers[other_index]
        # Order and depth travel together, so the list order stays the depth order (and the drawing order).
        obj.strata.layer_index, other.strata.layer_index = other.strata.layer_index, obj.strata.layer_index
        obj.strata.depth_m, other.strata.depth_m = other.strata.depth_m, obj.strata.depth_m
        return {'FINISHED'}


class STRATA_OT_layer_delete(StrataOperator, Operator):
    """Delete the layer's plane (undo brings it back); the other layers keep their depths"""
    bl_idname = "strata.layer_delete"
    bl_label = "Delete Layer"
    bl_options = {'REGISTER', 'UNDO'}
    needs = 'LAYER'

    def run(self, context):
        root, obj = active_layer(context)
        name = obj.name
        planes.remove_plane(obj)
        planes.renumber(root)
        count = len(stack.stack_layers(root))
        self.report({'INFO'}, f"Deleted layer '{name}'; {count} left")
        return {'FINISHED'}


class STRATA_OT_layer_reset_look(StrataOperator, Operator):
    """Reset the layer's opacity, hue, saturation and value"""
    bl_idname = "strata.layer_reset_look"
    bl_label = "Reset Colour"
    bl_options = {'REGISTER', 'UNDO'}
    needs = 'LAYER'

    def run(self, context):
        _, obj = active_layer(context)
        settings = obj.strata
        settings.opacity, settings.hue, settings.saturation, settings.value = 1.0, 0.5, 1.0, 1.0
        return {'FINISHED'}


class STRATA_OT_redecompose_layer(StrataOperator, Operator):
    """Decompose the selected layer again into sub-layers (on the server) and replace its plane with them"""
    bl_idname = "strata.redecompose_layer"
    bl_label = "Re-Decompose Layer"
    bl_options = {'REGISTER', 'UNDO'}
    needs, idle_only, user_errors = 'LAYER', True, (ServerStartError, OSError, ViewExportError)

    layers: IntProperty(name="Sub-Layers", default=3, min=1, max=16,
                        description="How many layers to split this layer into")

    def run(self, context):
        _, obj = active_layer(context)
        prefs = get_preferences(context)
        params = decompose_params(context.scene.strata, prefs)
        params["layers"] = self.layers
        job_id, layer_index = source_job_layer(obj)
        plane_name = obj.name
        server = connection.settings_from_preferences(prefs)
        connection.check_settings(server)
        # Read on the main thread (bpy); only sent when the stack's job is not on the server any more.
        image_bytes, missing = layer_source_png(obj)
        if missing and not (job_id and layer_index is not None):
            raise OSError(missing)

        def choose_input(client):
            """On the job's thread, once the server is up: a recursive job when the layer's job is on this server
            (no re-upload), else the layer image."""
            if job_id and layer_index is not None and _job_on_server(client, job_id):
                return None, {"parent_job": job_id, "parent_layer": layer_index}
            if image_bytes is None:
                raise ServerError(f"{missing}, and its job {job_id} is not on this server")
            return image_bytes, {}

        def on_success(target, result):
            bpy.ops.strata.replace_layer_with_stack(
                plane=plane_name, job_id=result.job_id,
                layers_json=json.dumps({"paths": result.layer_paths, "names": result.names}))

        client = connection.running_client(server)
        # Starting the server (when it is not running, e.g. in a reopened file) takes seconds: on the job's thread.
        runner = JobRunner(lambda: client or connection.ensure_client(server), None, params, layer_folder(),
                           file_name=f"{bpy.path.clean_name(plane_name)}.png", choose_input=choose_input).start()
        job_watch.watch(runner, context.scene, on_success, label="Re-decompose")
        self.report({'INFO'}, f"Re-decomposing '{plane_name}' into {self.layers} layers")
        return {'FINISHED'}


def _job_on_server(client, job_id):
    try:
        return client.status(job_id).get("status") == "succeeded"
    except ServerError as e:
        if e.status == 404:
            return False
        raise


class STRATA_OT_replace_layer_with_stack(StrataOperator, Operator):
    """Replace a layer plane by the layers of a finished (re-)decomposition (one undo step)"""
    bl_idname = "strata.replace_layer_with_stack"
    bl_label = "Replace Layer With Sub-Layers"
    bl_options = {'REGISTER', 'UNDO', 'INTERNAL'}

    plane: StringProperty(name="Plane")
    job_id: StringProperty(name="Job")
    layers_json: StringProperty(name="Layers", description='{"paths": [...], "names": [...]}')

    def run(self, context):
        obj = bpy.data.objects.get(self.plane)
        if obj is None or obj.strata.role != 'LAYER' or stack.find_root(obj) is None:
            return self.refuse(f"layer plane '{self.plane}' is gone; the sub-layers are in the Strata folder")
        layers = json.loads(self.layers_json)
        created = planes.replace_with_substack(obj, self.job_id, layers["paths"], layers["names"])
        set_active_layer(context, created[-1])
        self.report({'INFO'}, f"Replaced '{self.plane}' with {len(created)} sub-layers")
        return {'FINISHED'}


classes = (STRATA_OT_layer_select, STRATA_OT_layer_move, STRATA_OT_layer_delete, STRATA_OT_layer_reset_look,
           STRATA_OT_redecompose_layer, STRATA_OT_replace_layer_with_stack)
