# SPDX-License-Identifier: GPL-3.0-or-later
"""Sidebar panel: export the whole stack as glTF/GLB or as a web page. Draw only."""

from bpy.types import Panel

from .mixins import StrataPanel


class VIEW3D_PT_strata_export_stack(StrataPanel, Panel):
    bl_label = "Export Stack"
    bl_order = 35

    def draw(self, context):
        row = self.layout.row(align=True)
        row.operator("strata.export_gltf", text="glTF / GLB", icon='EXPORT')
        row.operator("strata.export_web", text="Web Page", icon='WORLD')


classes = (VIEW3D_PT_strata_export_stack,)
