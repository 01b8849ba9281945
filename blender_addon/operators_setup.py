# SPDX-License-Identifier: GPL-3.0-or-later
"""Install Server and Download Model: start the bpy-free background task, report, return at once."""

import bpy
from bpy.types import Operator

from . import server_setup
from .mixins import StrataOperator
from .preferences import get_preferences


class _StartTask(StrataOperator):
    """Start ``server_setup.start_<kind>`` unless it runs already; online access is required."""
    kind = ""
    online_for = ""  # what online access is needed for, for the message
    started = ""
    user_errors = (RuntimeError, OSError)

    @classmethod
    def poll(cls, context):
        if server_setup.running(cls.kind):
            cls.poll_message_set(f"The {cls.kind} is running")
            return False
        return True

    def run(self, context):
        if not bpy.app.online_access:
            return self.refuse(f"Blender is set to work offline: allow online access (Preferences ▸ System ▸ "
                               f"Network) to {self.online_for}")
        start = server_setup.start_install if self.kind == "install" else server_setup.start_download
        start(get_preferences(context))
        self.report({'INFO'}, f"{self.started} in the background (see the add-on preferences)")
        return {'FINISHED'}


class _CancelTask(StrataOperator):
    kind = ""

    @classmethod
    def poll(cls, context):
        return server_setup.running(cls.kind)

    def run(self, context):
        server_setup.cancel(self.kind)
        return {'FINISHED'}


class STRATA_OT_install_server(_StartTask, Operator):
    """Install (or repair and upgrade) the Strata server in a venv of its own: Python, torch, the server package.
    Runs in the background; the previous server stays in use until the new one works"""
    bl_idname = "strata.install_server"
    bl_label = "Install Server"
    kind, online_for, started = "install", "install the server's packages", "Installing the Strata server"


class STRATA_OT_cancel_install(_CancelTask, Operator):
    """Stop the server install; the server in use (if any) stays as it was"""
    bl_idname = "strata.cancel_install"
    bl_label = "Cancel Install"
    kind = "install"


class STRATA_OT_download_model(_StartTask, Operator):
    """Download the Qwen-Image-Layered weights the chosen tier needs (resumes an interrupted download)"""
    bl_idname = "strata.download_model"
    bl_label = "Download Model"
    kind, online_for, started = "download", "download the model", "Downloading the model"


class STRATA_OT_cancel_download(_CancelTask, Operator):
    """Stop the model download; what is downloaded so far is kept and the next download resumes it"""
    bl_idname = "strata.cancel_download"
    bl_label = "Cancel Download"
    kind = "download"


classes = (STRATA_OT_install_server, STRATA_OT_cancel_install, STRATA_OT_download_model, STRATA_OT_cancel_download)
