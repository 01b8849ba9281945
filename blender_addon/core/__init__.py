# SPDX-License-Identifier: GPL-3.0-or-later
"""bpy-free logic of the Strata add-on: HTTP client, server process, jobs and camera/plane math.

Nothing here imports bpy or mathutils, so ``import blender_addon.core`` works in plain CPython and is tested with
plain pytest. The Blender glue (``scene/``, ``operators.py``, ...) consumes these modules.
"""
