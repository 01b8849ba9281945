# SPDX-License-Identifier: GPL-3.0-or-later
"""Operators that export the whole stack: glTF/GLB (Blender's exporter) and a self-contained web page."""

import os

from bpy.props import StringProperty
from bpy.types import Operator
from bpy_extras.io_utils import ExportHelper

from .core.web_export import PAGE_NAME
from .mixins import StrataOperator
from .scene import stack_export
from .scene.stack import context_root


class STRATA_OT_export_gltf(StrataOperator, ExportHelper, Operator):
    """Export the stack (planes with their textures and alpha, relief, the camera and its move) as glTF/GLB, for
    three.js, Godot, Unreal or another Blender"""

    bl_idname = "strata.export_gltf"
    bl_label = "Export Stack as glTF"
    filename_ext = ".glb"
    needs, user_errors, error_prefix = 'STACK', (stack_export.StackExportError, OSError), "glTF export failed: "
    filter_glob: StringProperty(default="*.glb;*.gltf", options={'HIDDEN'})

    def check(self, context):
        # Keep a .gltf the user typed; anything else becomes .glb.
        if self.filepath.lower().endswith(".gltf"):
            return False
        return super().check(context)

    def run(self, context):
        path = stack_export.export_gltf(context, context_root(context), self.filepath)
        self.report({'INFO'}, f"Exported the stack to {path}")
        return {'FINISHED'}


class STRATA_OT_export_web(StrataOperator, Operator):
    """Write the stack as a web page (index.html, self-contained: open it from disk, no network) that plays the
    layers as a parallax scene following the pointer, the wheel or the camera move"""

    bl_idname = "strata.export_web"
    bl_label = "Export Stack as Web Page"
    needs, user_errors, error_prefix = 'STACK', (stack_export.StackExportError, OSError), "Web page export failed: "
    directory: StringProperty(name="Folder", subtype='DIR_PATH',
                              description="Folder for index.html (created if missing)")

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {'RUNNING_MODAL'}

    def run(self, context):
        if not self.directory:
            return self.refuse("Choose a folder for the web page")
        path = stack_export.export_web_page(context, context_root(context), self.directory)
        size_mib = os.path.getsize(path) / 2**20
        self.report({'INFO'}, f"Wrote {os.path.join(self.directory, PAGE_NAME)} ({size_mib:.1f} MiB); open it in a "
                              f"browser")
        return {'FINISHED'}


classes = (STRATA_OT_export_gltf, STRATA_OT_export_web)
