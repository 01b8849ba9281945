# SPDX-License-Identifier: GPL-3.0-or-later
"""Strata: decompose an image into RGBA layers with a local server and stack them as camera-exact image planes.

Nothing runs at import: ``register()`` imports the Blender modules listed in ``_modules`` and registers each one's
``classes`` (then calls its optional ``register()``); ``unregister()`` walks them in reverse.
"""

import importlib
from types import ModuleType

_modules = ("properties", "preferences", "connection", "operators", "panels", "job_watch", "operators_layers",
            "operators_animation", "panels_layers", "server_setup", "operators_setup", "operators_stack_export",
            "panels_stack_export")

_loaded: list[ModuleType] = []


def register():
    import bpy

    for name in _modules:
        module = importlib.import_module(f".{name}", __package__)
        for cls in getattr(module, "classes", ()):
            bpy.utils.register_class(cls)
        if hasattr(module, "register"):
            module.register()
        _loaded.append(module)


def unregister():
    import bpy

    while _loaded:
        module = _loaded.pop()
        if hasattr(module, "unregister"):
            module.unregister()
        for cls in reversed(getattr(module, "classes", ())):
            bpy.utils.unregister_class(cls)
