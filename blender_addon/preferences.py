"""Add-on preferences: how to reach the server, which backend and model, where layer images go."""

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty
from bpy.types import AddonPreferences

from . import connection
from .core.server_process import default_python


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
    vram: EnumProperty(
        name="GPU Memory", default='auto',
        description="VRAM tier of the Qwen backend; the server says which tier it chose and why (shown below)",
        items=(('auto', "Auto", "From the GPU's free memory, the RAM and whether the card computes in fp8"),
               ('80', "80 GB", "bf16 transformer and text encoder, all on the GPU"),
               ('24', "24 GB", "8-bit transformer (fp8 on RTX 40xx and newer, else int8), 8-bit text encoder"),
               ('16', "16 GB", "4-bit transformer, 8-bit text encoder"),
               ('12', "12 GB", "4-bit transformer and text encoder; blocks that do not fit stream from RAM"),
               ('8', "8 GB", "4-bit, most transformer blocks stream from RAM (slowest)")))
    transformer_file: StringProperty(
        name="Transformer GGUF", subtype='FILE_PATH', default="",
        description="Optional: a GGUF file of the Qwen-Image-Layered transformer (e.g. a Q8_0 or Q4 community "
                    "build); the model above still gives the text encoder and VAE")
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
                layout.prop(self, "vram")
                layout.prop(self, "transformer_file")
                tier = connection.server_state().get("tier")
                if tier:
                    layout.label(text=tier, icon='INFO')
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
