"""Install Server and Download Model: start the bpy-free background task, report, return at once."""

import bpy
from bpy.types import Operator

from . import server_setup
from .preferences import get_preferences


class STRATA_OT_install_server(Operator):
    """Install (or repair and upgrade) the Strata server in a venv of its own: Python, torch, the server package.
    Runs in the background; the previous server stays in use until the new one works"""
    bl_idname = "strata.install_server"
    bl_label = "Install Server"

    @classmethod
    def poll(cls, context):
        if server_setup.running("install"):
            cls.poll_message_set("The server install is running")
            return False
        return True

    def execute(self, context):
        if not bpy.app.online_access:
            self.report({'ERROR'}, "Blender is set to work offline: allow online access (Preferences ▸ System ▸ "
                                   "Network) to install the server's packages")
            return {'CANCELLED'}
        try:
            server_setup.start_install(get_preferences(context))
        except (RuntimeError, OSError) as e:
            self.report({'ERROR'}, str(e))
            return {'CANCELLED'}
        self.report({'INFO'}, "Installing the Strata server in the background (see the add-on preferences)")
        return {'FINISHED'}


class STRATA_OT_cancel_install(Operator):
    """Stop the server install; the server in use (if any) stays as it was"""
    bl_idname = "strata.cancel_install"
    bl_label = "Cancel Install"

    @classmethod
    def poll(cls, context):
        return server_setup.running("install")

    def execute(self, context):
        server_setup.cancel("install")
        return {'FINISHED'}


class STRATA_OT_download_model(Operator):
    """Download the Qwen-Image-Layered weights the chosen tier needs (resumes an interrupted download)"""
    bl_idname = "strata.download_model"
    bl_label = "Download Model"

    @classmethod
    def poll(cls, context):
        if server_setup.running("download"):
            cls.poll_message_set("The model download is running")
            return False
        return True

    def execute(self, context):
        if not bpy.app.online_access:
            self.report({'ERROR'}, "Blender is set to work offline: allow online access (Preferences ▸ System ▸ "
                                   "Network) to download the model")
            return {'CANCELLED'}
        try:
            server_setup.start_download(get_preferences(context))
        except (RuntimeError, OSError) as e:
            self.report({'ERROR'}, str(e))
            return {'CANCELLED'}
        self.report({'INFO'}, "Downloading the model in the background (see the add-on preferences)")
        return {'FINISHED'}


class STRATA_OT_cancel_download(Operator):
    """Stop the model download; what is downloaded so far is kept and the next download resumes it"""
    bl_idname = "strata.cancel_download"
    bl_label = "Cancel Download"

    @classmethod
    def poll(cls, context):
        return server_setup.running("download")

    def execute(self, context):
        server_setup.cancel("download")
        return {'FINISHED'}


classes = (STRATA_OT_install_server, STRATA_OT_cancel_install, STRATA_OT_download_model, STRATA_OT_cancel_download)
