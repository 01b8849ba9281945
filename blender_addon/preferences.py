# SPDX-License-Identifier: GPL-3.0-or-later
"""Add-on preferences: how to reach the server, which backend and model, where layer images go."""

import threading

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty
from bpy.types import AddonPreferences

from . import connection, server_setup
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

LOG_LINES_SHOWN = 6


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
        name="Local GGUF File", subtype='FILE_PATH', default="",
        description="Optional: a GGUF file of the Qwen-Image-Layered transformer already on disk (e.g. a Q8_0 or Q4 "
                    "community build); the model still gives the text encoder and VAE. Empty: the GGUF that "
                    "Download Model fetched, if any")
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
    install_python: StringProperty(
        name="Install Python", subtype='FILE_PATH',
        description="The Python 3.10-3.12 that Install Server builds the server's venv with (empty: Blender's own, "
                    "else the first python3.12/3.11/3.10 on PATH)")
    torch_build: EnumProperty(
        name="Torch", default='AUTO',
        items=(('AUTO', "Automatic", "torch's CUDA build when nvidia-smi finds an NVIDIA GPU, else its CPU build; "
                                     "with Qwen-Image-Layered's libraries"),
               ('CUDA', "CUDA", "torch's CUDA build and Qwen-Image-Layered's libraries (NVIDIA GPUs)"),
               ('CPU', "CPU", "torch's CPU build and Qwen-Image-Layered's libraries (about 1.9 GB)"),
               ('NONE', "None", "The CPU decomposer only: no torch, no Qwen; the smallest env")))
    pip_options: StringProperty(
        name="Pip Options",
        description="Extra pip arguments for Install Server, e.g. '--index-url https://mirror/simple' or "
                    "'--extra-index-url URL --proxy http://proxy:3128' or '--find-links /wheels'")
    gguf_file: StringProperty(
        name="GGUF Transformer",
        description="Optional: OWNER/REPO/FILE.gguf on the Hub; Download Model then fetches this one file for the "
                    "transformer instead of the full bf16 weights")
    pixel_exact: BoolProperty(
        name="Pixel-Exact Textures", default=True,
        description="Closest texture filtering: the camera view reproduces the input pixel for pixel. "
                    "Off: linear filtering, smoother when the camera moves closer")

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "connection", expand=True)
        if self.connection == 'START':
            self.draw_install(layout.box())
            self.draw_model(layout.box())
            layout.label(text="Or a server installed by hand (these win over Install Server's):")
            layout.prop(self, "server_python")
            layout.prop(self, "server_command")
            layout.prop(self, "server_source_dir")
            layout.prop(self, "backend")
            if self.backend != 'cpu':
                python = (bpy.path.abspath(self.server_python) if self.server_python
                          else server_setup.installed_server_python())
                count = detected_gpus(python)
                if count is not None and count >= 2:
                    layout.prop(self, "gpus")
        else:
            layout.prop(self, "server_url")
            layout.prop(self, "server_token")
        layout.prop(self, "preset")
        layout.prop(self, "offload")
        layout.prop(self, "layer_storage")
        layout.prop(self, "pixel_exact")
        version_warning = connection.server_state()["version_warning"]
        if version_warning:
            layout.label(text=version_warning, icon='ERROR')
        layout.operator("strata.restart_server", icon='FILE_REFRESH')

    def draw_install(self, box):
        box.label(text="Server", icon='CONSOLE')
        record = server_setup.installed()
        if record:
            box.label(text=f"Installed: {record.get('server', 'strata')}, Python {record.get('python_version')}, "
                           f"torch: {record.get('torch', '?')}", icon='CHECKMARK')
        else:
            box.label(text="Not installed: Install Server builds it in a venv of its own (1.9 GB with CPU torch)",
                      icon='INFO')
        box.prop(self, "install_python")
        box.prop(self, "torch_build")
        box.prop(self, "pip_options")
        draw_task(box, server_setup.task("install"), "strata.install_server",
                  "Repair / Upgrade Server" if record else "Install Server", "strata.cancel_install")

    def draw_model(self, box):
        box.label(text="Model", icon='FILE_VOLUME')
        done = server_setup.downloaded_model(self)
        task = server_setup.task("download")
        plan = getattr(task, "plan", None) or {}
        if done:
            box.label(text=f"Tier {done.get('tier')}: {done.get('description')} (downloaded)", icon='CHECKMARK')
        elif plan:
            box.label(text=f"Tier {plan.get('tier')}: {plan.get('description')}", icon='INFO')
        else:
            box.label(text="Tier: chosen for this GPU when Download Model starts (see the server's /v1/health)",
                      icon='INFO')
        box.prop(self, "model")
        box.prop(self, "gguf_file")
        draw_task(box, task, "strata.download_model", "Download Model", "strata.cancel_download")
        if self.backend != 'cpu':
            box.prop(self, "vram")
            box.prop(self, "transformer_file")
            tier = connection.server_state().get("tier")
            if tier:
                box.label(text=tier, icon='INFO')


def draw_task(layout, task, operator, text, cancel_operator):
    """The start button, or a progress bar with a cancel button, and the last log lines or the error."""
    snapshot = task.snapshot() if task is not None else None
    row = layout.row(align=True)
    if snapshot is not None and snapshot.status == "running":
        row.progress(factor=snapshot.progress, type='BAR', text=snapshot.stage[:90])
        row.operator(cancel_operator, text="", icon='CANCEL')
    else:
        row.operator(operator, text=text, icon='IMPORT')
    if snapshot is None:
        return
    if snapshot.status == "failed":
        for line in snapshot.error.splitlines()[:4]:
            layout.label(text=line[:160], icon='ERROR')
    elif snapshot.status in ("succeeded", "canceled"):
        layout.label(text=f"{task.name}: {snapshot.status}", icon='CHECKMARK' if snapshot.status == "succeeded"
                     else 'CANCEL')
    column = layout.column(align=True)
    column.scale_y = 0.7
    for line in snapshot.log_tail[-LOG_LINES_SHOWN:]:
        column.label(text=line[:160])


def get_preferences(context=None):
    context = context or bpy.context
    return context.preferences.addons[__package__].preferences


classes = (StrataPreferences,)
