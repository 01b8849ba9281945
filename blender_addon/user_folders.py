# SPDX-License-Identifier: GPL-3.0-or-later
"""Where the add-on keeps files: its per-user folder (the installed server, downloaded models, the server's job data,
layers of unsaved files) and the folders beside a saved .blend that layers and outputs go to."""

import os

import bpy


def user_folder(name=""):
    """The extension's per-user folder, or the folder ``name`` inside it, created if missing (a Blender user folder
    when the add-on is loaded as a legacy add-on, not an extension). Never /tmp: it survives a reboot."""
    try:
        return bpy.utils.extension_path_user(__package__, path=name, create=True)
    except (ValueError, KeyError, RuntimeError):  # loaded as a legacy add-on, not an extension
        return bpy.utils.user_resource('DATAFILES', path=os.path.join("strata", name) if name else "strata",
                                       create=True)


def server_data_folder():
    """The local server's job data and log."""
    return user_folder("server")


def layer_folder():
    """Where downloaded layers go: //strata next to a saved .blend, else the per-user folder."""
    if bpy.data.filepath:
        return os.path.join(os.path.dirname(bpy.path.abspath("//")), "strata")
    return user_folder("layers")


def output_folder(kind):
    """Where a preview or an export of ``kind`` goes by default: //strata_<kind> beside the .blend, or the per-user
    folder while the file is unsaved."""
    if bpy.data.filepath:
        return bpy.path.abspath(f"//strata_{kind}")
    return os.path.join(user_folder(), kind)
