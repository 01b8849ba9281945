# SPDX-License-Identifier: GPL-3.0-or-later
"""Exports of a decomposition or of Blender's recomposed view: PowerPoint, Photoshop PSD, and a zip of PNGs.

``layout.Layout`` is the bpy-free model every exporter takes; ``Layout.render()`` is the picture they must match.
``inference_server.api.export_routes`` serves them over HTTP, ``cli.add_parser`` adds ``strata export``.
"""
