"""Add-on preferences: how to reach the server, which backend and model, where layer images go."""

import threading

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty
from bpy.types import AddonPreferences

from .core.server_process import count_cuda_gpus, default_python

# GPUs the server's Python sees, per interpreter path: probed once in the background (importing torch takes
# seconds), so the preferences offer the multi-GPU choice only where there are two GPUs or more.
_gpu_counts = {}
_gpu_lock = threading.Lock()


def detected_gpus(python_path):
    """The GPU count for ``python_path``, or None while it is being probed (or cannot be)."""
    if not python_path:
        return None
    with _gpu_lock:
        if python_path in _gpu_counts:
            return _gpu_counts[python_path]
        _gpu_counts[python_path] = None

    def probe():
        count = count_cuda_gpus(python_path)
        with _gpu_lock:
            _gpu_counts[python_path] = count

    threading.Thread(target=probe, name="strata-gpu-probe", daemon=True).start()
    return None


class StrataPreferences(AddonPreferences):
    bl_idname = __package__

    connection: EnumProperty(
        name="Server", default='START',
        items=(('START', "Start Locally", "The add-on starts the server on first use and stops it at quit"),
               ('URL', "Running Server", "Connect to a server that is already running (URL and token)")))
    server_python: StringProperty(
        name="Server Python", subtype='FILE_PATH', default=default_python(),
        description="The python executable of the venv where the Strata server is installed "
                    "(default: env STRATA_SERVER_PYTHON)")
    server_command: StringProperty(
        name="Full Command",
        description="Instead of the Python path: the command that runs the server CLI, e.g. "
                    "'/opt/strata/bin/strata' (serve arguments are appended)")
    server_source_dir: StringProperty(
        name="Source Folder", subtype='DIR_PATH',
        description="Optional: the folder holding the inference_server package when it is not installed in that venv "
                    "(becomes the working folder and PYTHONPATH)")
    server_url: StringProperty(name="URL", default="http://127.0.0.1:8765")
    server_token: StringProperty(name="Token", subtype='PASSWORD')
    backend: EnumProperty(
        name="Backend", default='auto',
        items=(('auto', "Auto", "Qwen-Image-Layered when a CUDA GPU and its weights are present, else CPU"),
               ('cpu', "CPU", "The embedded CPU decomposer: fast, best on flat graphics"),
               ('qwen', "Qwen", "Qwen-Image-Layered on the GPU")))
    model: StringProperty(name="Model", default="",
                          description="Model id or local folder for Qwen-Image-Layered (empty: server default)")
    preset: EnumProperty(
        name="Preset", default='exact',
        items=(('exact', "Exact", "Model card settings"), ('stock', "Stock", "diffusers defaults"),
               ('fast', "Fast", "Faster, slightly lower quality"), ('lowvram', "Low VRAM", "For smaller GPUs")))
    offload: EnumProperty(
        name="Offload", default='none',
        items=(('none', "None", ""), ('model', "Model", "Move whole models to the GPU when used"),
               ('sequential', "Sequential", "Lowest memory, slowest"), ('group', "Group", "Offload block groups")))
    gpus: EnumProperty(
        name="GPUs", default='ONE',
        items=(('ONE', "One GPU", "The first GPU runs the whole job"),
               ('ALL', "All GPUs", "Two GPUs run the two guidance passes of every step at the same time "
                                   "(CFG-parallel: about twice as fast, same result); 4 or more also split each "
                                   "pass (Ulysses). Every GPU holds the whole model")))
    layer_storage: EnumProperty(
        name="Layer Images", default='FILES',
        items=(('FILES', "Next to the .blend", "//strata/<job>/layer_XX.png, relative to the .blend (a per-user "
                                               "folder while the file is unsaved)"),
               ('PACKED', "Packed", "Packed into the .blend")))
    pixel_exact: BoolProperty(
        name="Pixel-Exact Textures", default=True,
        description="Closest texture filtering: the camera view reproduces the input pixel for pixel. "
                    "Off: linear filtering, smoother when the camera moves closer")

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "connection", expand=True)
        if self.connection == 'START':
            layout.prop(self, "server_python")
            if not self.server_python and not self.server_command:
                layout.label(text="Set the python of the venv where the Strata server is installed", icon='INFO')
            layout.prop(self, "server_command")
            layout.prop(self, "server_source_dir")
            layout.prop(self, "backend")
            layout.prop(self, "model")
            if self.backend != 'cpu':
                count = detected_gpus(bpy.path.abspath(self.server_python) if self.server_python else "")
                if count is not None and count >= 2:
                    layout.prop(self, "gpus")
        else:
            layout.prop(self, "server_url")
            layout.prop(self, "server_token")
        layout.prop(self, "preset")
        layout.prop(self, "offload")
        layout.prop(self, "layer_storage")
        layout.prop(self, "pixel_exact")
        layout.operator("strata.restart_server", icon='FILE_REFRESH')


def get_preferences(context=None):
    context = context or bpy.context
    return context.preferences.addons[__package__].preferences


classes = (StrataPreferences,)
