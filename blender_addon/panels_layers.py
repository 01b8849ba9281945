# SPDX-License-Identifier: GPL-3.0-or-later
"""Sidebar panels: the stack's layer list and per-layer look, camera motion, camera-view export. Draw only."""

from bpy.types import Panel, UIList

from .mixins import StrataPanel
from .scene.relief import depth_map_path as has_depth_map
from .scene.stack import active_layer, context_root


class STRATA_UL_layers(UIList):
    """The LAYER planes of the stack the UI works on, front layer on top (like an image editor's layer list)."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        settings = item.strata
        row = layout.row(align=True)
        row.prop(item, "name", text="", emboss=False, icon='IMAGE_PLANE')
        sub = row.row(align=True)
        sub.alignment = 'RIGHT'
        sub.label(text=f"{settings.depth_m:.2f} m")
        row.prop(item, "hide_viewport", text="", emboss=False)
        row.prop(item, "hide_render", text="", emboss=False)

    def filter_items(self, context, data, propname):
        shown, order = layer_rows(getattr(data, propname), context_root(context))
        return [self.bitflag_filter_item if visible else 0 for visible in shown], order


def layer_rows(objects, root):
    """Which of ``objects`` the layer list shows (the LAYER planes of ``root``) and each item's display position:
    front layer (highest layer_index) first, the rest after them."""
    shown = [root is not None and obj.strata.role == 'LAYER' and obj.parent == root for obj in objects]
    layers = sorted(((objects[i].strata.layer_index, i) for i, visible in enumerate(shown) if visible), reverse=True)
    order = [0] * len(objects)
    for position, (_, index) in enumerate(layers):
        order[index] = position
    position = len(layers)
    for index, visible in enumerate(shown):
        if not visible:
            order[index] = position
            position += 1
    return shown, order


class VIEW3D_PT_strata_layers(StrataPanel, Panel):
    bl_label = "Layers"
    bl_order = 10

    def draw(self, context):
        layout = self.layout
        root = context_root(context)
        layout.label(text=root.name, icon='EMPTY_AXIS')
        row = layout.row()
        row.template_list("STRATA_UL_layers", "", context.scene, "objects", context.scene.strata,
                          "active_layer_index", rows=5)
        column = row.column(align=True)
        column.operator("strata.layer_move", text="", icon='TRIA_UP').direction = 'UP'
        column.operator("strata.layer_move", text="", icon='TRIA_DOWN').direction = 'DOWN'
        column.separator()
        column.operator("strata.layer_select", text="", icon='RESTRICT_SELECT_OFF')
        column.operator("strata.layer_delete", text="", icon='X')

        _, obj = active_layer(context)
        if obj is None:
            layout.label(text="Pick a layer in the list", icon='INFO')
            return
        settings = obj.strata
        layout.use_property_split = True
        column = layout.column()
        column.prop(settings, "depth_m")
        column.prop(settings, "scale")
        column.prop(settings, "relief", slider=True)
        if settings.relief > 0 and not has_depth_map(obj):
            column.label(text="No depth map: decompose with Depth on", icon='INFO')
        column.prop(settings, "opacity", slider=True)
        column.prop(settings, "hue", slider=True)
        column.prop(settings, "saturation", slider=True)
        column.prop(settings, "value", slider=True)
        row = layout.row(align=True)
        row.operator("strata.layer_reset_look", icon='LOOP_BACK')
        row.operator("strata.redecompose_layer", icon='RENDERLAYERS')


class VIEW3D_PT_strata_motion(StrataPanel, Panel):
    bl_label = "Camera Motion"
    bl_order = 20

    def draw(self, context):
        layout = self.layout
        layout.operator_menu_enum("strata.animate_camera", "preset", text="Animate Camera", icon='CAMERA_DATA')
        row = layout.row(align=True)
        row.operator("strata.clear_camera_animation", icon='X')
        row.operator("strata.render_preview", icon='RENDER_ANIMATION')
        scene = context.scene
        layout.label(text=f"Frames {scene.frame_start}–{scene.frame_end}; adjust the move in the Adjust Last "
                          f"Operation panel", icon='INFO')


class VIEW3D_PT_strata_export_view(StrataPanel, Panel):
    bl_label = "Export Camera View"
    bl_order = 30

    def draw(self, context):
        row = self.layout.row(align=True)
        row.operator("strata.export_view", text="PowerPoint", icon='EXPORT').kind = 'PPTX'
        row.operator("strata.export_view", text="Photoshop", icon='EXPORT').kind = 'PSD'


classes = (STRATA_UL_layers, VIEW3D_PT_strata_layers, VIEW3D_PT_strata_motion, VIEW3D_PT_strata_export_view)
