# SPDX-License-Identifier: GPL-3.0-or-later
"""The few bpy APIs that differ between Blender 4.2 (``blender_version_min``) and 5.0, in one place.

Checked with the PyPI bpy 4.5.15 and 5.0.1 modules, and Blender's API docs for 4.2-4.3:
- Animation: actions have slots and channel bags from 4.4 (``bpy_extras.anim_utils.action_get_channelbag_for_slot``),
  and 5.0 removed ``Action.fcurves``; 4.2-4.3 only have ``Action.fcurves``.
- Output format: 5.0 added ``ImageFormatSettings.media_type`` ('IMAGE'/'VIDEO') and allows ``file_format='FFMPEG'``
  only with media type 'VIDEO'; before, 'FFMPEG' was just another file format.
- EEVEE's engine id: 'BLENDER_EEVEE_NEXT' in 4.2-4.5, 'BLENDER_EEVEE' again in 5.0.
- Path properties: the 'PATH_SUPPORTS_BLEND_RELATIVE' option is 4.5+; on 4.2 naming it fails the add-on's
  registration (found by running the tests on bpy 4.2.23).
"""

import bpy
from bpy_extras import anim_utils


def action_fcurves(id_data):
    """The F-curve collection animating ``id_data`` (its action slot's channel bag on 4.4+), or None."""
    anim = id_data.animation_data
    if anim is None or anim.action is None:
        return None
    if hasattr(anim_utils, "action_get_channelbag_for_slot"):  # Blender 4.4+
        channelbag = anim_utils.action_get_channelbag_for_slot(anim.action, anim.action_slot)
        return channelbag.fcurves if channelbag is not None else None
    return anim.action.fcurves  # Blender 4.2-4.3: one set of F-curves per action


def output_format(image_settings):
    """(media type, file format) of render output settings, restorable with ``set_output_format``."""
    return getattr(image_settings, "media_type", None), image_settings.file_format


def set_output_format(image_settings, file_format, media_type=None):
    """Set the render output's file format ('PNG', 'FFMPEG', ...), and on 5.0+ the media type it needs."""
    if hasattr(image_settings, "media_type"):
        image_settings.media_type = media_type or ('VIDEO' if file_format == 'FFMPEG' else 'IMAGE')
    image_settings.file_format = file_format


def eevee_engine_id():
    """'BLENDER_EEVEE_NEXT' on Blender 4.2-4.5, 'BLENDER_EEVEE' on 5.0+."""
    return 'BLENDER_EEVEE' if bpy.app.version >= (5, 0, 0) else 'BLENDER_EEVEE_NEXT'


def blend_relative_path_options():
    """Options of a FILE_PATH property that may hold a //relative path: the 4.5+ flag that says so, else none."""
    return {'PATH_SUPPORTS_BLEND_RELATIVE'} if bpy.app.version >= (4, 5, 0) else set()
