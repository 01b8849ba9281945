# SPDX-License-Identifier: GPL-3.0-or-later
"""A bpy-free description of layers placed in a frame: what every exporter writes and what tests compare against.

A ``Layout`` is a W×H frame and its layers, back to front. Each ``PlacedLayer`` is an RGBA image put at
(``x_px``, ``y_px``) — the top-left of the placed image in the frame — and stretched to ``width_px``×``height_px``
(so a layer can be moved, scaled, partly transparent or hidden, and can reach outside the frame). It comes from a
decomposition folder (``Layout.from_stack`` / ``load_job_layout``) or from Blender's recomposed camera view over
HTTP (``Layout.from_json``).

``Layout.render()`` is the reference picture: straight-alpha "over" in sRGB, as PowerPoint and Photoshop blend.
Pixel-grid exporters (PSD) and the render share ``PlacedLayer.raster()``, so they place and resample identically;
PPTX keeps the exact fractional placement and lets the viewer scale.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ImageTooLarge, InvalidInput
from ..image_input import to_8bit_rgba
from ..job_manager import INPUT_NAME, JOB_RECORD_NAME
from ..layers import MANIFEST_NAME, PREVIEW_NAME, LayerStack, OverCompositor, alpha_bbox_px, read_manifest

MAX_LAYOUT_LAYERS = 64
# Frame side limit: PSD allows 30000 px, a PowerPoint slide 56 in; 8192 keeps the float render under ~2 GiB.
MAX_FRAME_SIDE_PX = 8192
MAX_LAYER_IMAGE_PIXELS = 8192 * 8192
MAX_TOTAL_LAYER_PIXELS = 256_000_000  # all layers of one request, decoded: 1 GiB of RGBA
# All layers of one request once placed (cut to their alpha, within the kept area): a tiny PNG stretched over a big
# frame costs this, not its upload size. Measured on 2 cores: 12 full-frame layers at 4096² (201 MP) make a PSD in
# 13 s and 2.8 GB; four 2×2 PNGs stretched to 9000² px (324 MP) would take over a minute and 8+ GB.
MAX_PLACED_LAYER_PIXELS = 220_000_000
# Placement bound in px: generous (a Blender plane near the camera projects huge); rasters are clipped anyway.
MAX_PLACEMENT_PX = 1_000_000
SNAP_PX = 1e-6
MAX_RASTER_PAD_PX = 256
# Bicubic: sharp enough for photos scaled up, with less ringing around hard alpha edges than Lanczos.
RESAMPLE = Image.Resampling.BICUBIC
LAYOUT_KEYS = {"width_px", "height_px", "name", "layers"}
MAX_NAME_CHARS = 255
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
LAYER_KEYS = {"name", "x_px", "y_px", "width_px", "height_px", "opacity", "visible"}
# A server job folder keeps the upload as INPUT_NAME; folders without it (``strata decompose -o``, recursive
# children) use the preview as the original.
ORIGINAL_NAME = INPUT_NAME


def layout_json_schema() -> dict[str, Any]:
    """JSON Schema of the layout JSON that ``Layout.from_json`` accepts (published in the OpenAPI schema).

    Rules a schema cannot say are checked by ``from_json`` alone: one PNG part ``layer_<i>`` per layer, and the
    pixel budgets (``MAX_TOTAL_LAYER_PIXELS``).
    """
    placement = {"type": "number", "minimum": -MAX_PLACEMENT_PX, "maximum": MAX_PLACEMENT_PX}
    size = {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_PLACEMENT_PX}
    side = {"type": "integer", "minimum": 1, "maximum": MAX_FRAME_SIDE_PX}
    name = {"type": "string", "maxLength": MAX_NAME_CHARS}
    layer = {
        "type": "object", "additionalProperties": False, "required": ["x_px", "y_px", "width_px", "height_px"],
        "properties": {
            "name": name, "x_px": placement, "y_px": placement, "width_px": size, "height_px": size,
            "opacity": {"type": "number", "minimum": 0, "maximum": 1, "default": 1},
            "visible": {"type": "boolean", "default": True},
        },
    }
    return {
        "type": "object", "additionalProperties": False, "required": ["width_px", "height_px", "layers"],
        "properties": {
            "width_px": side, "height_px": side, "name": name,
            "layers": {"type": "array", "minItems": 1, "maxItems": MAX_LAYOUT_LAYERS, "items": layer},
        },
    }


@dataclass
class PlacedLayer:
    """An RGBA image placed in the frame; the image is stretched to ``width_px``×``height_px``."""

    name: str
    rgba: np.ndarray
    x_px: float
    y_px: float
    width_px: float
    height_px: float
    opacity: float = 1.0
    visible: bool = True

    def __post_init__(self) -> None:
        if self.rgba.dtype != np.uint8 or self.rgba.ndim != 3 or self.rgba.shape[2] != 4:
            raise ValueError(f"a placed layer's image is h×w×4 uint8, got {self.rgba.shape} {self.rgba.dtype}")
        if self.rgba.shape[0] == 0 or self.rgba.shape[1] == 0:
            raise ValueError(f"layer {self.name!r} has an empty image ({self.rgba.shape[1]}×{self.rgba.shape[0]})")
        if not (self.width_px > 0 and self.height_px > 0):
            raise ValueError(f"layer {self.name!r} needs a positive placed size, got {self.width_px}×{self.height_px}")
        if not 0.0 <= self.opacity <= 1.0:
            raise ValueError(f"layer {self.name!r} opacity must be in [0, 1], got {self.opacity}")

    @property
    def image_width_px(self) -> int:
        return int(self.rgba.shape[1])

    @property
    def image_height_px(self) -> int:
        return int(self.rgba.shape[0])

    @property
    def is_empty(self) -> bool:
        return not self.rgba[..., 3].any()

    def cropped_to_alpha(self) -> PlacedLayer | None:
        """The same layer with its image cut to the pixels with alpha > 0 (placement adjusted), or None if empty."""
        bbox = alpha_bbox_px(self.rgba[..., 3])
        if bbox is None:
            return None
        left, top, width, height = bbox
        if (width, height) == (self.image_width_px, self.image_height_px):
            return self
        scale_x = self.width_px / self.image_width_px
        scale_y = self.height_px / self.image_height_px
        return replace(
            self,
            rgba=self.rgba[top:top + height, left:left + width].copy(),
            x_px=self.x_px + left * scale_x,
            y_px=self.y_px + top * scale_y,
            width_px=width * scale_x,
            height_px=height * scale_y,
        )

    def pixel_rect(self) -> tuple[int, int, int, int]:
        """(left, top, width, height) of the pixels the placed image covers (fractional edges rounded outwards)."""
        left, top = _floor(self.x_px), _floor(self.y_px)
        right, bottom = _ceil(self.x_px + self.width_px), _ceil(self.y_px + self.height_px)
        return left, top, max(1, right - left), max(1, bottom - top)

    def raster(self, clip_px: tuple[int, int, int, int] | None = None) -> tuple[np.ndarray, int, int] | None:
        """The image resampled onto the frame's pixel grid, and the array's (left, top) in the frame.

        Covers ``pixel_rect()``, cut to ``clip_px`` = (left, top, right, bottom) when given (None if nothing
        is left), so a layer scaled far beyond the frame costs only the pixels that are kept.
        Sub-pixel exact, with hard edges like a picture in PowerPoint: the image is resampled from the matching
        fractional source box (edge pixels extended, so no transparent fringe creeps in), then each edge pixel's
        alpha is scaled by how much of it the placed rectangle covers. An image already on the grid (integer
        position, unscaled) is only sliced. Opacity is not applied.
        """
        left, top, width, height = self.pixel_rect()
        right, bottom = left + width, top + height
        if clip_px is not None:
            left, top = max(left, clip_px[0]), max(top, clip_px[1])
            right, bottom = min(right, clip_px[2]), min(bottom, clip_px[3])
            if right <= left or bottom <= top:
                return None
        width, height = right - left, bottom - top
        if (self.x_px, self.y_px) == (round(self.x_px), round(self.y_px)) and \
                (self.width_px, self.height_px) == (self.image_width_px, self.image_height_px):
            column, row = left - round(self.x_px), top - round(self.y_px)
            return self.rgba[row:row + height, column:column + width], left, top
        scale_x = self.image_width_px / self.width_px  # source px per frame px
        scale_y = self.image_height_px / self.height_px
        # The pixel rect overshoots the placed image by under one frame pixel per side; replicate the border
        # so the source box stays inside the array (clamped for layers far thinner than a pixel).
        pad = min(math.ceil(max(scale_x, scale_y)) + 1, MAX_RASTER_PAD_PX)
        padded = np.pad(self.rgba, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        box = (
            min(max(pad + (left - self.x_px) * scale_x, 0.0), padded.shape[1]),
            min(max(pad + (top - self.y_px) * scale_y, 0.0), padded.shape[0]),
            min(max(pad + (left + width - self.x_px) * scale_x, 0.0), padded.shape[1]),
            min(max(pad + (top + height - self.y_px) * scale_y, 0.0), padded.shape[0]),
        )
        # Pillow resizes RGBA premultiplied, so transparent pixels' colour does not bleed into edges.
        image = Image.fromarray(padded, "RGBA").resize((width, height), RESAMPLE, box=box)
        rgba = np.array(image, dtype=np.uint8)
        coverage = (_coverage_1d(left, width, self.x_px, self.width_px)[None, :]
                    * _coverage_1d(top, height, self.y_px, self.height_px)[:, None])
        rgba[..., 3] = np.rint(rgba[..., 3] * coverage).astype(np.uint8)
        return rgba, left, top


def _coverage_1d(first_px: int, count: int, start_px: float, length_px: float) -> np.ndarray:
    """For pixels first_px … first_px+count-1, the fraction of each inside [start_px, start_px + length_px]."""
    edges = np.arange(first_px, first_px + count + 1, dtype=np.float64)
    return np.clip(np.minimum(edges[1:], start_px + length_px) - np.maximum(edges[:-1], start_px), 0.0, 1.0)


def _floor(value_px: float) -> int:
    # Positions computed as sums of scaled floats (0.1 + 0.2) must not gain a pixel from rounding noise.
    nearest = round(value_px)
    return nearest if abs(value_px - nearest) < SNAP_PX else math.floor(value_px)


def _ceil(value_px: float) -> int:
    nearest = round(value_px)
    return nearest if abs(value_px - nearest) < SNAP_PX else math.ceil(value_px)


@dataclass
class Layout:
    """A W×H frame and its placed layers, back to front. ``original`` is the flat source image, if known."""

    width_px: int
    height_px: int
    layers: list[PlacedLayer]
    name: str = "Strata layers"
    original: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not (1 <= self.width_px <= MAX_FRAME_SIDE_PX and 1 <= self.height_px <= MAX_FRAME_SIDE_PX):
            raise ValueError(
                f"frame must be 1..{MAX_FRAME_SIDE_PX} px per side, got {self.width_px}×{self.height_px}")

    @classmethod
    def from_stack(cls, stack: LayerStack, crop_to_bbox: bool = True, name: str = "Strata layers",
                   original: np.ndarray | None = None) -> Layout:
        """Each non-empty layer at its true position; cropped to its alpha bounding box unless told otherwise."""
        placed: list[PlacedLayer] = []
        for layer in stack.layers:
            full = PlacedLayer(layer.name, layer.rgba, 0, 0, stack.width_px, stack.height_px)
            kept = full.cropped_to_alpha() if crop_to_bbox else (None if full.is_empty else full)
            if kept is not None:  # an empty layer has nothing to place
                placed.append(kept)
        return cls(stack.width_px, stack.height_px, placed, name, original)

    @classmethod
    def from_json(cls, data: Any, images: dict[int, bytes]) -> Layout:
        """Build from the HTTP layout JSON and one encoded image (PNG) per layer index. Raises ``InvalidInput``."""
        # 1. Check the frame
        if not isinstance(data, dict):
            raise InvalidInput(f"layout must be a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - LAYOUT_KEYS)
        if unknown:
            raise InvalidInput(f"unknown layout key(s) {unknown}; expected {sorted(LAYOUT_KEYS)}")
        width_px = _frame_side(data, "width_px")
        height_px = _frame_side(data, "height_px")
        name = _name(data.get("name", "Strata layers"), "layout name")
        entries = data.get("layers")
        if not isinstance(entries, list) or not entries:
            raise InvalidInput("layout needs a non-empty 'layers' list (back to front)")
        if len(entries) > MAX_LAYOUT_LAYERS:
            raise InvalidInput(f"layout has {len(entries)} layers; at most {MAX_LAYOUT_LAYERS} are accepted")
        # 2. Check the image parts match the layers one to one
        extra = sorted(index for index in images if not 0 <= index < len(entries))
        if extra:
            raise InvalidInput(
                f"image part(s) {[f'layer_{i}' for i in extra]} have no layout entry "
                f"(the layout has {len(entries)} layers, layer_0..layer_{len(entries) - 1})")
        missing = [index for index in range(len(entries)) if index not in images]
        if missing:
            raise InvalidInput(
                f"missing image part(s) {[f'layer_{i}' for i in missing]}: send one PNG file part "
                f"named layer_<i> per layout layer")
        # 3. Check what the images decode to before decoding any: a small PNG can hold a huge flat image
        total_px = 0
        for index in range(len(entries)):
            with _open_png(images[index], f"layer_{index}") as image:
                total_px += image.width * image.height
        if total_px > MAX_TOTAL_LAYER_PIXELS:
            raise ImageTooLarge(
                f"the layer images hold {total_px / 1e6:.0f} megapixels in all; at most "
                f"{MAX_TOTAL_LAYER_PIXELS / 1e6:.0f} are accepted: send fewer layers or render them smaller")
        # 4. Check each layer and decode its image
        layers = []
        for index, entry in enumerate(entries):
            where = f"layers[{index}]"
            if not isinstance(entry, dict):
                raise InvalidInput(f"{where} must be an object, got {type(entry).__name__}")
            unknown = sorted(set(entry) - LAYER_KEYS)
            if unknown:
                raise InvalidInput(f"{where}: unknown key(s) {unknown}; expected {sorted(LAYER_KEYS)}")
            layer_name = _name(entry.get("name", f"Layer {index}"), f"{where}.name")
            x_px = _number(entry, "x_px", where, -MAX_PLACEMENT_PX, MAX_PLACEMENT_PX)
            y_px = _number(entry, "y_px", where, -MAX_PLACEMENT_PX, MAX_PLACEMENT_PX)
            placed_w = _number(entry, "width_px", where, 0, MAX_PLACEMENT_PX, positive=True)
            placed_h = _number(entry, "height_px", where, 0, MAX_PLACEMENT_PX, positive=True)
            opacity = _number(entry, "opacity", where, 0.0, 1.0, default=1.0)
            visible = entry.get("visible", True)
            if not isinstance(visible, bool):
                raise InvalidInput(f"{where}.visible must be true or false, got {visible!r}")
            rgba = decode_layer_image(images[index], f"layer_{index}")
            layers.append(PlacedLayer(layer_name, rgba, x_px, y_px, placed_w, placed_h, opacity, visible))
        layout = cls(width_px, height_px, layers, name)
        # 5. Check what the layers cost once placed: a 2×2 PNG stretched over a large frame is a few bytes to send
        # and hundreds of megapixels for the PSD to resample, encode and hold.
        placed_px = layout.cropped().placed_pixels()
        if placed_px > MAX_PLACED_LAYER_PIXELS:
            raise ImageTooLarge(
                f"the layers placed in this {width_px}×{height_px} frame cover {placed_px / 1e6:.0f} megapixels in "
                f"all (counting up to half a frame beyond each edge); at most {MAX_PLACED_LAYER_PIXELS / 1e6:.0f} are "
                f"accepted: export a smaller frame, or scale down or drop layers that reach far outside it")
        return layout

    def keep_rect_px(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of what a layered export keeps: the frame and half a frame beyond each edge,
        enough to slide a layer back in, bounded for layers scaled far past the frame."""
        margin_x, margin_y = self.width_px // 2, self.height_px // 2
        return -margin_x, -margin_y, self.width_px + margin_x, self.height_px + margin_y

    def placed_pixels(self) -> int:
        """Frame pixels the layers cover once placed, within ``keep_rect_px()``: what exporting them costs."""
        keep_left, keep_top, keep_right, keep_bottom = self.keep_rect_px()
        total = 0
        for layer in self.layers:
            left, top, width, height = layer.pixel_rect()
            total += (max(0, min(left + width, keep_right) - max(left, keep_left))
                      * max(0, min(top + height, keep_bottom) - max(top, keep_top)))
        return total

    def cropped(self) -> Layout:
        """Every layer cut to its alpha bounding box; fully transparent layers dropped."""
        layers = [cropped for layer in self.layers if (cropped := layer.cropped_to_alpha()) is not None]
        return replace(self, layers=layers)

    def render(self) -> np.ndarray:
        """The flattened frame, H×W×4 uint8 straight alpha (transparent where no visible layer covers it)."""
        compositor = OverCompositor(self.width_px, self.height_px)
        # Cropped first, as the exporters do: resampling a tight image is faster, and Pillow's fixed-point
        # resampler can differ by a few levels at antialiased edges between a tight and a padded source.
        for layer in self.cropped().layers:
            if not layer.visible or layer.opacity <= 0.0:
                continue
            placed = layer.raster((0, 0, self.width_px, self.height_px))
            if placed is not None:
                compositor.add(*placed, opacity=layer.opacity)
        return compositor.result()

    def original_or_render(self) -> np.ndarray:
        return self.original if self.original is not None else self.render()


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_NAME_CHARS:
        raise InvalidInput(f"{where} must be a string of at most {MAX_NAME_CHARS} characters")
    # JSON can carry a lone UTF-16 surrogate (\ud800 escaped), which no file format can encode: make it U+FFFD.
    return _LONE_SURROGATE.sub("\ufffd", value)


def _frame_side(data: dict, key: str) -> int:
    value = data.get(key)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"layout {key} must be an integer number of pixels, got {value!r}")
    if not 1 <= value <= MAX_FRAME_SIDE_PX:
        raise InvalidInput(f"layout {key} must be between 1 and {MAX_FRAME_SIDE_PX}, got {value}")
    return value


def _number(entry: dict, key: str, where: str, low: float, high: float, default: float | None = None,
            positive: bool = False) -> float:
    if key not in entry and default is not None:
        return default
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(f"{where}.{key} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise InvalidInput(f"{where}.{key} must be greater than 0, got {value}")
    if not low <= value <= high:
        raise InvalidInput(f"{where}.{key} must be between {low:g} and {high:g}, got {value}")
    return float(value)


def _open_png(data: bytes, label: str) -> Image.Image:
    """Open (header only) and check one uploaded layer image: a PNG of a sane size."""
    try:
        image = Image.open(io.BytesIO(data))
    except Exception as error:  # Pillow raises several types for undecodable data
        raise InvalidInput(f"{label} is not a readable image ({error}); send a PNG") from None
    if image.format != "PNG":
        image.close()
        raise InvalidInput(f"{label} must be a PNG, got {image.format}")
    width, height = image.size
    if width * height > MAX_LAYER_IMAGE_PIXELS:
        image.close()
        raise ImageTooLarge(f"{label} is {width}×{height}; at most {MAX_LAYER_IMAGE_PIXELS} pixels per layer")
    return image


def decode_layer_image(data: bytes, label: str) -> np.ndarray:
    """Decode one uploaded layer image to h×w×4 uint8, converted as job uploads are (palette with its transparency,
    grey, 16-bit grey scaled to 8 bits); an undecodable one is refused with the reason."""
    with _open_png(data, label) as image:
        try:
            image.load()
            return np.asarray(to_8bit_rgba(image, []), dtype=np.uint8).copy()
        except InvalidInput as error:
            raise InvalidInput(f"{label}: {error}") from None
        except Exception as error:  # Pillow raises several types for a truncated or corrupt stream
            raise InvalidInput(f"{label} could not be decoded ({error}); send a complete PNG") from None


def check_job_folder(folder: str | os.PathLike) -> dict:
    """The manifest of a finished decomposition folder (a server job folder or ``strata decompose -o``'s output).

    Raises ``InvalidInput`` that says what the folder is missing, e.g. a job still running or a deleted layer file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInput(f"{folder} is not a folder; pass a decomposition folder (job folder or decompose -o output)")
    if not (folder / MANIFEST_NAME).is_file():
        state = _job_state(folder)
        if state is not None and state.get("status") not in (None, "succeeded"):
            raise InvalidInput(f"{folder}: job status is {state.get('status')!r}; only a succeeded job can be exported")
        raise InvalidInput(
            f"{folder} has no {MANIFEST_NAME}: not a finished decomposition folder "
            f"(expected layer_00.png…, {PREVIEW_NAME} and {MANIFEST_NAME})")
    try:
        manifest = read_manifest(folder)
        files = [entry["file"] for entry in manifest["layers"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InvalidInput(f"{folder / MANIFEST_NAME} is not a readable layer manifest ({error})") from None
    missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        raise InvalidInput(f"{folder}: the manifest lists {missing} but the file(s) are missing")
    return manifest


def load_job_layout(folder: str | os.PathLike, crop_to_bbox: bool = True) -> Layout:
    """The layout of a finished decomposition folder, with its original image (or preview) for "with original"."""
    folder = Path(folder)
    check_job_folder(folder)
    try:
        stack = LayerStack.load(folder)
    except (OSError, ValueError, KeyError) as error:
        raise InvalidInput(f"{folder}: cannot read the decomposition ({error})") from None
    original = None
    for file_name in (ORIGINAL_NAME, PREVIEW_NAME):
        if (folder / file_name).is_file():
            with Image.open(folder / file_name) as image:
                original = np.asarray(image.convert("RGBA"), dtype=np.uint8).copy()
            break
    return Layout.from_stack(stack, crop_to_bbox=crop_to_bbox, name=_job_name(folder, stack), original=original)


def _job_state(folder: Path) -> dict | None:
    try:
        state = json.loads((folder / JOB_RECORD_NAME).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _job_name(folder: Path, stack: LayerStack) -> str:
    if stack.parent:
        return f"{folder.name} (layer {stack.parent.get('layer')} of {stack.parent.get('job')})"
    return folder.name


def safe_file_stem(name: str, fallback: str = "strata") -> str:
    """A file name stem without path separators or control characters, for Content-Disposition and the CLI."""
    stem = "".join(c if c.isalnum() or c in "-_. " else "_" for c in name).strip(" ._")
    return stem[:80] or fallback
