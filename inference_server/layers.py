# SPDX-License-Identifier: GPL-3.0-or-later
"""The layer stack: ordered straight-alpha RGBA layers, their composite, and the job folder on disk.

A job folder holds ``layer_00.png`` (back) … ``layer_NN.png`` (front), ``preview.png`` (the composite) and
``manifest.json``. Every file is written atomically (temporary file in the same folder, then ``os.replace``),
so a crash never leaves a half-written layer behind.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .params import AUTO_LAYERS, params_that_ran

MANIFEST_FORMAT = "strata.layers/1"
MANIFEST_NAME = "manifest.json"
PREVIEW_NAME = "preview.png"


def layer_file_name(index: int) -> str:
    return f"layer_{index:02d}.png"


@dataclass
class Layer:
    """One straight-alpha RGBA layer, the full size of the image (H×W×4 uint8)."""

    rgba: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        if self.rgba.dtype != np.uint8 or self.rgba.ndim != 3 or self.rgba.shape[2] != 4:
            raise ValueError(f"a layer is H×W×4 uint8, got {self.rgba.shape} {self.rgba.dtype}")

    @property
    def bbox_px(self) -> tuple[int, int, int, int] | None:
        """(x, y, width, height) of the pixels with alpha > 0, or None for an empty layer."""
        return alpha_bbox_px(self.rgba[..., 3])

    @property
    def coverage(self) -> float:
        """Mean alpha in [0, 1]: how much of the image this layer covers."""
        return float(self.rgba[..., 3].mean() / 255.0)

    def to_image(self) -> Image.Image:
        return Image.fromarray(self.rgba, "RGBA")

    @classmethod
    def from_image(cls, image: Image.Image, name: str = "") -> Layer:
        return cls(np.asarray(image.convert("RGBA"), dtype=np.uint8).copy(), name)


def alpha_bbox_px(alpha: np.ndarray) -> tuple[int, int, int, int] | None:
    if alpha.size == 0:
        return None
    # (max, not any: on a layer's strided alpha channel numpy's any is twice as slow, the rows found the same)
    rows = np.flatnonzero(alpha.max(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(alpha[rows[0]:rows[-1] + 1].max(axis=0))  # (the columns of the rows that have any)
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def composite_over(layers_rgba: list[np.ndarray]) -> np.ndarray:
    """Straight-alpha "over" of back-to-front layers, in the image's own (sRGB) space, as PIL and PowerPoint do.

    Returns H×W×4 uint8 with straight alpha. Works in float64 so rounding happens once, at the end.
    """
    if not layers_rgba:
        raise ValueError("cannot composite an empty list of layers")
    height, width = layers_rgba[0].shape[:2]
    compositor = OverCompositor(width, height)
    for rgba in layers_rgba:
        if rgba.shape[:2] != (height, width):
            raise ValueError(f"layer size {rgba.shape[1]}×{rgba.shape[0]} differs from {width}×{height}")
        compositor.add(rgba)
    return compositor.result()


class OverCompositor:
    """Accumulates straight-alpha "over" one layer at a time, each at an offset and clipped to the frame.

    The one implementation of "over": ``composite_over`` uses it for full-frame layers, the exporters' layout
    render for placed (offset, scaled, partly transparent) ones, so only the covered region is touched.
    """

    def __init__(self, width_px: int, height_px: int) -> None:
        self.width_px, self.height_px = int(width_px), int(height_px)
        self._premul = np.zeros((self.height_px, self.width_px, 3), np.float64)
        self._alpha = np.zeros((self.height_px, self.width_px), np.float64)

    def add(self, rgba: np.ndarray, left_px: int = 0, top_px: int = 0, opacity: float = 1.0) -> None:
        """Put ``rgba`` (h×w×4 uint8, straight alpha) over the result with its top-left at (left_px, top_px)."""
        height, width = rgba.shape[:2]
        x0, y0 = max(left_px, 0), max(top_px, 0)
        x1, y1 = min(left_px + width, self.width_px), min(top_px + height, self.height_px)
        if x1 <= x0 or y1 <= y0:
            return  # entirely outside the frame
        patch = rgba[y0 - top_px:y1 - top_px, x0 - left_px:x1 - left_px]
        alpha = patch[..., 3].astype(np.float64) / 255.0 * float(opacity)
        color = patch[..., :3].astype(np.float64) / 255.0
        # In place, term by term the same: colour · α + what is below · (1 − α), one temporary fewer per term.
        remains = 1.0 - alpha
        premul = self._premul[y0:y1, x0:x1]
        premul *= remains[..., None]
        color *= alpha[..., None]
        premul += color
        out_alpha = self._alpha[y0:y1, x0:x1]
        out_alpha *= remains
        out_alpha += alpha

    def result(self) -> np.ndarray:
        safe_alpha = np.where(self._alpha > 0, self._alpha, 1.0)
        result = np.empty((self.height_px, self.width_px, 4), np.float64)
        np.divide(self._premul, safe_alpha[..., None], out=result[..., :3])
        result[..., 3] = self._alpha
        # (In place: the same numbers as clip(rint(result · 255)), without three temporaries of the frame's size.)
        result *= 255.0
        np.rint(result, out=result)
        np.clip(result, 0, 255, out=result)
        return result.astype(np.uint8)


@dataclass
class LayerStack:
    """Layers back to front, plus what produced them (the manifest's fields)."""

    layers: list[Layer]
    backend: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    timings_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    parent: dict[str, Any] | None = None  # {"job": id, "layer": k} for a recursive decomposition

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError("a layer stack needs at least one layer")
        shapes = {layer.rgba.shape for layer in self.layers}
        if len(shapes) != 1:
            raise ValueError(f"all layers must have the same size, got {sorted(shapes)}")
        for index, layer in enumerate(self.layers):
            if not layer.name:
                layer.name = "Background" if index == 0 else f"Layer {index}"

    @property
    def width_px(self) -> int:
        return int(self.layers[0].rgba.shape[1])

    @property
    def height_px(self) -> int:
        return int(self.layers[0].rgba.shape[0])

    def composite(self) -> np.ndarray:
        return composite_over([layer.rgba for layer in self.layers])

    def manifest(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "width_px": self.width_px,
            "height_px": self.height_px,
            "backend": self.backend,
            "params": params_that_ran(self.params, self.backend),
            # What was asked for (a count, or "auto": the backend chose) and what came back.
            "layer_count": {"requested": self.params.get("layers"), "returned": len(self.layers),
                            "chosen_by_backend": self.params.get("layers") == AUTO_LAYERS},
            "seed": self.seed,
            "timings_s": {k: round(v, 4) for k, v in self.timings_s.items()},
            "notes": list(self.notes),
            "parent": self.parent,
            "preview": PREVIEW_NAME,
            "layers": [
                {
                    "index": index,
                    "name": layer.name,
                    "file": layer_file_name(index),
                    "bbox_px": list(layer.bbox_px) if layer.bbox_px else None,
                    "coverage": round(layer.coverage, 5),
                }
                for index, layer in enumerate(self.layers)
            ],
        }

    def save(self, folder: str | os.PathLike, extra_manifest: dict[str, Any] | None = None) -> Path:
        """Write layers, preview and manifest (last, so a manifest on disk means a complete job)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for index, layer in enumerate(self.layers):
            write_png_atomic(folder / layer_file_name(index), layer.rgba)
        write_png_atomic(folder / PREVIEW_NAME, self.composite())
        manifest = self.manifest()
        if extra_manifest:
            manifest.update(extra_manifest)
        write_manifest(folder, manifest)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> LayerStack:
        folder = Path(folder)
        manifest_path = folder / MANIFEST_NAME
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{folder} has no {MANIFEST_NAME}: not a finished decomposition folder")
        manifest = read_manifest(folder)
        if manifest.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"{manifest_path}: expected format {MANIFEST_FORMAT!r}, got {manifest.get('format')!r}")
        layers = []
        for entry in manifest["layers"]:
            with Image.open(folder / entry["file"]) as image:
                layers.append(Layer.from_image(image, entry.get("name", "")))
        return cls(
            layers=layers,
            backend=manifest.get("backend", ""),
            params=manifest.get("params", {}),
            seed=manifest.get("seed"),
            timings_s=manifest.get("timings_s", {}),
            notes=manifest.get("notes", []),
            parent=manifest.get("parent"),
        )


def load_layer_files(folder: str | os.PathLike) -> tuple[list[np.ndarray], list[str], dict[str, Any] | None]:
    """Layers of any layer folder, back to front, each at its own size: ours (the manifest's order and names), or
    another tool's ``layer_*.png`` / ``*.png`` files in name order. Returns (rgba arrays, names, manifest or None).
    Raises FileNotFoundError when there are no layers, ValueError for a file that is not a readable image."""
    folder = Path(folder)
    manifest = None
    if (folder / MANIFEST_NAME).is_file():
        manifest = read_manifest(folder)
        entries = [(folder / entry["file"], entry.get("name", "")) for entry in manifest.get("layers", [])]
    else:
        files = sorted(folder.glob("layer_*.png")) or sorted(p for p in folder.glob("*.png") if p.name != PREVIEW_NAME)
        entries = [(path, path.stem) for path in files]
    if not entries:
        raise FileNotFoundError(f"{folder} holds no layers (no {MANIFEST_NAME}, no layer_*.png or *.png files)")
    layers, names = [], []
    for path, name in entries:
        try:
            with Image.open(path) as image:
                layers.append(np.asarray(image.convert("RGBA"), dtype=np.uint8).copy())
        except (OSError, Image.DecompressionBombError) as exc:
            raise ValueError(f"{path} is not a readable image ({exc})") from None
        names.append(name)
    return layers, names, manifest


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``manifest.json`` of a decomposition folder (OSError when unreadable, ValueError when not JSON)."""
    return json.loads((Path(folder) / MANIFEST_NAME).read_text("utf-8"))


def write_manifest(folder: str | os.PathLike, manifest: dict[str, Any]) -> None:
    write_bytes_atomic(Path(folder) / MANIFEST_NAME, json.dumps(manifest, indent=2).encode("utf-8"))


def link_child(folder: str | os.PathLike, layer: int, child: str) -> None:
    """Keep the tree on disk: the manifest in ``folder`` lists ``child`` (a server job id, or the folder of
    ``strata decompose --layer``) under the layer it was decomposed from, once. Raises OSError / ValueError."""
    manifest = read_manifest(folder)
    children = manifest.setdefault("children", {}).setdefault(str(layer), [])
    if child not in children:
        children.append(child)
        write_manifest(folder, manifest)


def process_umask() -> int:
    """The process umask, read without changing it where the OS says (os.umask can only be read by setting it,
    which races with threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file beside ``path``, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes 0600 files: give the result the mode any new file gets
            os.fchmod(fd, 0o666 & ~process_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise


def png_bytes(rgba: np.ndarray, compress_level: int = 1) -> bytes:
    buffer = io.BytesIO()
    # compress_level 1 by default: layers are large and rewritten often; size matters less than time here.
    # Files handed to people (exports) pass a higher level.
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def write_png_atomic(path: str | os.PathLike, rgba: np.ndarray) -> None:
    write_bytes_atomic(path, png_bytes(rgba))


class Stopwatch:
    """Collects per-stage seconds for the manifest's ``timings_s``."""

    def __init__(self) -> None:
        self.timings_s: dict[str, float] = {}
        self._stage: str | None = None
        self._start = 0.0

    def start(self, stage: str) -> None:
        self.stop()
        self._stage, self._start = stage, time.perf_counter()

    def stop(self) -> None:
        if self._stage is not None:
            self.timings_s[self._stage] = self.timings_s.get(self._stage, 0.0) + time.perf_counter() - self._start
            self._stage = None
