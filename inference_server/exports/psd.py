# SPDX-License-Identifier: GPL-3.0-or-later
"""Layout → Photoshop PSD: one named pixel layer per layer, offsets, opacity, hidden layers, and the merged image.

Built with psd-tools (``PSDImage.new`` + ``PixelLayer.frompil``). Choices:
- An RGBA document, so the merged image keeps the frame's transparency (psd-tools writes it on save from its own
  composite of the layers, with a transparent backdrop).
- Pixel layers have no transform in PSD, so a scaled layer is resampled to its placed pixel size by
  ``PlacedLayer.raster()`` — the same call ``Layout.render()`` uses, so the PSD matches the reference render.
- Each layer is cut to its alpha bounding box and keeps its true offset, even where it reaches outside the canvas
  (up to half a frame beyond each edge): Photoshop keeps off-canvas pixels, so moving a layer back in loses nothing.
- Opacity is the layer's opacity (0–255), not baked into its pixels; hidden layers are stored hidden.
"""

from __future__ import annotations

import io
import os

from PIL import Image
from psd_tools import PSDImage
from psd_tools.api.layers import PixelLayer
from psd_tools.constants import Compression

from ..layers import write_bytes_atomic
from .export_layout import Layout

MAX_PSD_LAYER_NAME_CHARS = 255


def build_psd(layout: Layout) -> PSDImage:
    # RLE for the merged image too (psd-tools defaults it to raw: 4 bytes a pixel, most of a flat poster's file).
    psd = PSDImage.new("RGBA", (layout.width_px, layout.height_px), color=0, compression=Compression.RLE)
    psd.background_color = None  # transparent backdrop for the merged image
    # Photoshop marks "the merged image's first extra channel is its transparency" with a negative layer count;
    # psd-tools keeps that sign in this flag but has no public setter for a new document. Without it readers take
    # the 4th channel for a spare alpha channel and show the merged image opaque.
    psd._merged_alpha = True
    # frompil appends above the previous layer: back-to-front order is the stacking order.
    # Off-canvas pixels are kept up to half a frame beyond each edge (Layout.keep_rect_px).
    clip_px = layout.keep_rect_px()
    for layer in layout.cropped().layers:
        placed = layer.raster(clip_px)
        if placed is None:
            continue  # entirely outside the kept area
        rgba, left, top = placed
        pixel_layer = PixelLayer.frompil(Image.fromarray(rgba, "RGBA"), psd, "Layer", top=top, left=left)
        # The name setter writes the Unicode name block Photoshop reads (frompil only writes the legacy
        # Mac Roman name, which cannot hold e.g. "№" and then fails on save).
        pixel_layer.name = layer.name[:MAX_PSD_LAYER_NAME_CHARS]
        pixel_layer.opacity = round(layer.opacity * 255)
        pixel_layer.visible = layer.visible
    return psd


def psd_bytes(layout: Layout) -> bytes:
    buffer = io.BytesIO()
    build_psd(layout).save(buffer)
    return buffer.getvalue()


def write_psd(layout: Layout, path: str | os.PathLike) -> None:
    write_bytes_atomic(path, psd_bytes(layout))
