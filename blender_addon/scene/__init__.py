# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender writers of the core results: stack queries (stack.py), planes (planes.py), their materials (materials.py),
render settings (render_settings.py), relief, camera motion (animation.py) and exports (view.py, stack_export.py)."""
