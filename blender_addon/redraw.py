# SPDX-License-Identifier: GPL-3.0-or-later
"""Redraw what shows a background task's progress: a timer's tick changes properties, Blender repaints on request."""

import bpy


def tag_redraw(area_type):
    """Ask the areas of ``area_type`` ('VIEW_3D', 'PREFERENCES') in every open window to redraw (none headless)."""
    for window in getattr(bpy.context.window_manager, "windows", ()):
        for area in window.screen.areas:
            if area.type == area_type:
                area.tag_redraw()
