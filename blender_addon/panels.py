# SPDX-License-Identifier: GPL-3.0-or-later
"""View3D ▸ Sidebar ▸ Strata. Panels only draw properties; ``job_watch.tick()`` fills the job fields."""

from bpy.types import Panel

from . import connection, job_watch, server_setup
from .mixins import StrataPanel
from .scene import stack


class VIEW3D_PT_strata_decompose(StrataPanel, Panel):
    bl_label = "Decompose"
    shows_with = None

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        settings = context.scene.strata
        layout.template_ID(settings, "image", open="image.open")
        row = layout.row()
        row.active = settings.image is None
        row.prop(settings, "image_path")
        row = layout.row(heading="Layers")
        row.prop(settings, "layers_auto", text="Auto")
        sub = row.row()
        sub.active = not settings.layers_auto
        sub.prop(settings, "layers", text="")
        layout.prop(settings, "steps")
        layout.prop(settings, "resolution", expand=True)
        layout.prop(settings, "seed")
        layout.prop(settings, "prompt")
        layout.prop(settings, "depth")
        layout.prop(settings, "blend_like_editors")

        running = job_watch.active() is not None
        row = layout.row(align=True)
        row.scale_y = 1.4
        row.operator("strata.decompose", icon='RENDERLAYERS')
        if running:
            row.operator("strata.cancel", text="", icon='CANCEL')
            label = settings.job_stage or settings.job_status
            if settings.job_total:
                label = f"{label} {settings.job_step}/{settings.job_total}"
            layout.progress(factor=settings.job_progress, type='BAR', text=label)
        elif settings.job_status == 'failed' and settings.job_message:
            box = layout.box()
            box.label(text="Failed", icon='ERROR')
            for line in settings.job_message.splitlines()[:6]:
                box.label(text=line)
        elif settings.job_status == 'succeeded' and settings.job_message:
            box = layout.box()
            for line in settings.job_message.splitlines()[:6]:
                box.label(text=line, icon='INFO')
        elif settings.job_status == 'canceled':
            layout.label(text="Canceled", icon='CANCEL')

        state = connection.server_state()
        row = layout.row()
        row.label(text=f"Server: {state['status']}", icon='LINKED' if state['status'] == 'running' else 'UNLINKED')
        row.operator("strata.restart_server", text="", icon='FILE_REFRESH')
        if state["version_warning"]:
            layout.label(text=state["version_warning"], icon='ERROR')
        if state["status"] == "failed":
            layout.label(text=state["message"].splitlines()[0][:120], icon='ERROR')
        elif state["status"] == "stopped" and not server_setup.server_available(context):
            layout.label(text="No server yet: Install Server in the add-on's preferences", icon='INFO')


class VIEW3D_PT_strata_stack(StrataPanel, Panel):
    bl_label = "Stack"
    shows_with = 'SELECTED_STACK'

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        root = stack.selected_root(context)
        layout.label(text=root.name, icon='EMPTY_AXIS')
        layout.prop(root.strata, "base_distance_m")
        layout.prop(root.strata, "depth_spacing_m")
        layout.prop(root.strata, "relief_all", slider=True)
        layout.prop(root.strata, "camera")
        row = layout.row()
        row.enabled = False
        row.prop(root.strata, "image_width_px")
        row.prop(root.strata, "image_height_px")


classes = (VIEW3D_PT_strata_decompose, VIEW3D_PT_strata_stack)
