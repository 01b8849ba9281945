# SPDX-License-Identifier: GPL-3.0-or-later
"""Layout → PowerPoint: one slide, one picture per layer at its true position, back to front.

Choices:
- Slide size: the frame's pixel size at 96 dpi (1 px = 9525 EMU), so a 1024 px wide image makes a 10.67 in slide and
  pictures are 1:1. PowerPoint accepts slides of 1 to 56 inches per side; a frame outside that is scaled uniformly
  (aspect kept) to fit, and a frame too elongated to fit at all is refused with the reason.
- Each picture is the layer cut to its alpha bounding box (pixels unchanged, PNG), placed with its exact fractional
  position and size in EMU; PowerPoint does the scaling, so nothing is resampled twice.
- Opacity is written as ``<a:alphaModFix amt="…"/>`` on the picture's blip (python-pptx has no API for it). That is
  what PowerPoint itself writes for Format Picture → Transparency, so the layer's pixels stay intact and the user can
  change the transparency later; LibreOffice honours it too. Baking opacity into the PNG alpha would lose that.
- Hidden layers are kept as hidden shapes (``cNvPr hidden="1"``, PowerPoint's Selection Pane eye), not dropped.
- Shape names are the layer names, so the Selection Pane lists the layers by name.
"""

from __future__ import annotations

import io
import os
import re

from lxml import etree
from pptx import Presentation
from pptx.oxml.ns import qn
from pptx.util import Emu

from ..errors import InvalidInput
from ..layers import png_bytes, write_bytes_atomic
from .export_layout import Layout, PlacedLayer

EMU_PER_INCH = 914400
EMU_PER_PX_96DPI = 9525
MIN_SLIDE_EMU = 1 * EMU_PER_INCH
MAX_SLIDE_EMU = 56 * EMU_PER_INCH
BLANK_SLIDE_LAYOUT = 6  # "Blank" in python-pptx's default template
PNG_COMPRESS_LEVEL = 6  # a file people keep and send: smaller beats faster here
# XML 1.0 cannot hold C0 control characters (other than tab, LF, CR), lone surrogates or U+FFFE/U+FFFF; names come
# from users (Blender object names, the layout JSON), so those characters become U+FFFD instead of failing the export.
_NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    return _NOT_XML_CHAR.sub("\ufffd", text)


def emu_per_px(width_px: int, height_px: int) -> float:
    """EMU per frame pixel: 96 dpi unless that puts a slide side outside PowerPoint's 1–56 in."""
    scale = float(EMU_PER_PX_96DPI)
    if max(width_px, height_px) * scale > MAX_SLIDE_EMU:
        scale = MAX_SLIDE_EMU / max(width_px, height_px)
    if min(width_px, height_px) * scale < MIN_SLIDE_EMU:
        scale = MIN_SLIDE_EMU / min(width_px, height_px)
    if max(width_px, height_px) * scale > MAX_SLIDE_EMU + 0.5:
        raise InvalidInput(
            f"a {width_px}×{height_px} frame is too elongated for a PowerPoint slide (each side must be 1–56 in, "
            f"an aspect ratio of at most 56:1)")
    return scale


def build_presentation(layout: Layout, with_original: bool = False):
    """A python-pptx ``Presentation``: optionally a slide with the original, then the layered slide."""
    scale = emu_per_px(layout.width_px, layout.height_px)
    presentation = Presentation()
    presentation.slide_width = Emu(round(layout.width_px * scale))
    presentation.slide_height = Emu(round(layout.height_px * scale))
    presentation.core_properties.title = xml_text(layout.name)
    blank = presentation.slide_layouts[BLANK_SLIDE_LAYOUT]

    if with_original:
        slide = presentation.slides.add_slide(blank)
        picture = slide.shapes.add_picture(
            io.BytesIO(png_bytes(layout.original_or_render(), PNG_COMPRESS_LEVEL)), 0, 0,
            presentation.slide_width, presentation.slide_height)
        picture.name = "Original"

    slide = presentation.slides.add_slide(blank)
    # add_picture appends to the shape tree, and later shapes draw on top: back-to-front order is z-order.
    for layer in layout.cropped().layers:
        _add_layer_picture(slide, layer, scale)
    return presentation


def _add_layer_picture(slide, layer: PlacedLayer, scale: float) -> None:
    left, top = round(layer.x_px * scale), round(layer.y_px * scale)
    width = max(1, round((layer.x_px + layer.width_px) * scale) - left)
    height = max(1, round((layer.y_px + layer.height_px) * scale) - top)
    picture = slide.shapes.add_picture(
        io.BytesIO(png_bytes(layer.rgba, PNG_COMPRESS_LEVEL)), Emu(left), Emu(top), Emu(width), Emu(height))
    picture.name = xml_text(layer.name)
    c_nv_pr = picture._element.nvPicPr.cNvPr
    c_nv_pr.set("descr", picture.name)
    if not layer.visible:
        c_nv_pr.set("hidden", "1")
    if layer.opacity < 1.0:
        _set_picture_opacity(picture, layer.opacity)


def _set_picture_opacity(picture, opacity: float) -> None:
    blip = picture._element.blipFill.find(qn("a:blip"))
    amount = etree.Element(qn("a:alphaModFix"), amt=str(round(opacity * 100000)))
    # Schema order: colour/alpha effects come before the blip's optional extLst.
    ext_list = blip.find(qn("a:extLst"))
    if ext_list is not None:
        ext_list.addprevious(amount)
    else:
        blip.append(amount)


def pptx_bytes(layout: Layout, with_original: bool = False) -> bytes:
    buffer = io.BytesIO()
    build_presentation(layout, with_original).save(buffer)
    return buffer.getvalue()


def write_pptx(layout: Layout, path: str | os.PathLike, with_original: bool = False) -> None:
    write_bytes_atomic(path, pptx_bytes(layout, with_original))
