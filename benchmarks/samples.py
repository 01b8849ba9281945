# SPDX-License-Identifier: GPL-3.0-or-later
"""Deterministic layered test images with ground truth, for tests, the demo and the decomposition benchmark.

Every generator returns the composite (H×W×4 uint8, opaque unless asked otherwise) and the ground-truth layers
(full-size straight-alpha H×W×4 uint8, back to front) whose "over" composite it is. Shapes and text are drawn at
4× and box-downsampled, so edges are anti-aliased like real graphics; colours come from a fixed palette of
well-separated flat colours, so "background + a few shapes + text" is a well-defined ~4-layer decomposition.

    composite, layers = make_flat_poster(512, 384, seed=0)
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from inference_server.layers import composite_over, write_png_atomic

SUPERSAMPLE = 4  # shapes and text are drawn at 4× and box-filtered down: anti-aliased edges

# Well-separated, saturated flat colours (sRGB). Backgrounds come from the light or dark end so that
# foreground elements always contrast with them.
PALETTE_RGB = [
    (230, 57, 70),    # red
    (29, 53, 87),     # navy
    (42, 157, 143),   # teal
    (244, 162, 97),   # orange
    (233, 196, 106),  # mustard
    (106, 76, 147),   # purple
    (38, 70, 83),     # slate
    (131, 197, 190),  # mint
    (255, 255, 255),  # white
    (20, 20, 20),     # near black
]
BACKGROUND_RGB = [(241, 236, 226), (250, 250, 250), (222, 235, 247), (38, 38, 48), (16, 42, 67)]

# The DejaVu family: Debian's fonts-dejavu-core (scripts/setup.sh installs it) and matplotlib both ship these files.
DEFAULT_FONT_FILE = "DejaVuSans-Bold.ttf"
WORDS = ["SALE", "NEW", "OPEN", "HELLO", "STRATA", "SUMMER", "50% OFF", "JOIN US"]
PHOTOS = ["astronaut", "coffee", "chelsea", "rocket"]

SAMPLE_KINDS = ("flat", "gradient", "photo", "cutout", "semi", "text")


@dataclass
class Sample:
    """A generated image and the layers it was built from (back to front)."""

    kind: str
    seed: int
    composite: np.ndarray
    layers: list[np.ndarray]
    names: list[str] = field(default_factory=list)


class FontNotFound(RuntimeError):
    """A sample needs a font file this machine does not have; the message says how to install it."""


@cache
def font_path(file_name: str) -> Path:
    """Where ``file_name`` (say ``DejaVuSerif.ttf``) is installed: fontconfig's list of fonts first, then the copy
    bundled with matplotlib. Samples need the same glyphs on every machine, so there is no fallback font."""
    if shutil.which("fc-list"):
        listed = subprocess.run(["fc-list", "--format", r"%{file}\n"], capture_output=True, text=True, check=False)
        for line in listed.stdout.splitlines():
            if Path(line).name == file_name:
                return Path(line)
    try:
        import matplotlib
    except ImportError:
        pass
    else:
        bundled = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / file_name
        if bundled.is_file():
            return bundled
    raise FontNotFound(f"the sample images need the font {file_name}, which neither fontconfig (fc-list) nor "
                       f"matplotlib has here: install the DejaVu fonts (apt install fonts-dejavu-core; "
                       f"scripts/setup.sh does) or pip install matplotlib, which bundles them")


def font(size_px: int, file_name: str = DEFAULT_FONT_FILE) -> ImageFont.FreeTypeFont:
    """The TrueType font ``file_name`` at ``size_px`` (see ``font_path``)."""
    return ImageFont.truetype(str(font_path(file_name)), size_px)


def supersampled_mask(width_px: int, height_px: int, draw_fn) -> np.ndarray:
    """Draw white-on-black at SUPERSAMPLE× with ``draw_fn(draw, scale)``, box-filter down → float alpha in [0, 1]."""
    big = Image.new("L", (width_px * SUPERSAMPLE, height_px * SUPERSAMPLE), 0)
    draw_fn(ImageDraw.Draw(big), SUPERSAMPLE)
    small = big.resize((width_px, height_px), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float64) / 255.0


def flat_layer(color_rgb, alpha: np.ndarray, opacity: float = 1.0) -> np.ndarray:
    """Full-size straight-alpha layer of one flat colour; fully transparent pixels are (0, 0, 0, 0)."""
    height_px, width_px = alpha.shape
    a8 = np.clip(np.rint(alpha * opacity * 255.0), 0, 255).astype(np.uint8)
    rgba = np.zeros((height_px, width_px, 4), np.uint8)
    rgba[..., :3] = np.asarray(color_rgb, np.uint8)
    rgba[..., 3] = a8
    rgba[a8 == 0, :3] = 0
    return rgba


def opaque(rgb: np.ndarray) -> np.ndarray:
    """H×W×3 → H×W×4 uint8 with alpha 255."""
    return np.dstack([rgb.astype(np.uint8), np.full(rgb.shape[:2], 255, np.uint8)])


def flat_background(width_px: int, height_px: int, color_rgb) -> np.ndarray:
    return opaque(np.broadcast_to(np.asarray(color_rgb, np.uint8), (height_px, width_px, 3)))


def gradient_background(width_px: int, height_px: int, color_a_rgb, color_b_rgb, angle_rad: float) -> np.ndarray:
    """Smooth linear gradient from colour a to colour b along ``angle_rad`` (0 = left→right)."""
    ys, xs = np.mgrid[0:height_px, 0:width_px].astype(np.float64)
    proj = xs * np.cos(angle_rad) + ys * np.sin(angle_rad)
    t = (proj - proj.min()) / max(proj.max() - proj.min(), 1e-9)
    rgb = (1 - t)[..., None] * np.asarray(color_a_rgb, np.float64) + t[..., None] * np.asarray(color_b_rgb, np.float64)
    return opaque(np.clip(np.rint(rgb), 0, 255))


def photo_rgb(name: str, width_px: int, height_px: int) -> np.ndarray:
    """One of scikit-image's bundled photos, scaled to cover W×H and centre-cropped (no download needed)."""
    try:
        import skimage.data
    except ImportError:
        raise ImportError("the photo samples come from scikit-image: pip install 'strata[bench]'") from None

    photo = getattr(skimage.data, name)()[..., :3]
    image = Image.fromarray(photo)
    scale = max(width_px / image.width, height_px / image.height)
    resized = image.resize((max(width_px, round(image.width * scale)), max(height_px, round(image.height * scale))),
                           Image.Resampling.LANCZOS)
    left, top = (resized.width - width_px) // 2, (resized.height - height_px) // 2
    return np.asarray(resized.crop((left, top, left + width_px, top + height_px)), dtype=np.uint8)


def pick_colors(rng: np.random.Generator, background_rgb, count: int) -> list[tuple[int, int, int]]:
    """``count`` palette colours, each far from the background and from each other."""
    bg = np.asarray(background_rgb, np.float64)
    candidates = [c for c in PALETTE_RGB if np.abs(np.asarray(c) - bg).sum() > 150]
    order = rng.permutation(len(candidates))
    chosen: list[tuple[int, int, int]] = []
    for index in order:
        color = candidates[index]
        if all(np.abs(np.asarray(color) - np.asarray(c)).sum() > 120 for c in chosen):
            chosen.append(color)
        if len(chosen) == count:
            break
    while len(chosen) < count:  # tiny palettes only; repeat rather than fail
        chosen.append(candidates[order[len(chosen) % len(order)]])
    return chosen


def _shape_alpha(rng: np.random.Generator, width_px: int, height_px: int, kind: str) -> np.ndarray:
    """Anti-aliased ellipse / rounded rectangle / triangle at a random place, 20–45% of the short side."""
    short = min(width_px, height_px)
    size_w = rng.uniform(0.25, 0.5) * short
    size_h = rng.uniform(0.25, 0.5) * short
    cx = rng.uniform(size_w / 2 + 2, width_px - size_w / 2 - 2)
    cy = rng.uniform(size_h / 2 + 2, height_px - size_h / 2 - 2)
    box = (cx - size_w / 2, cy - size_h / 2, cx + size_w / 2, cy + size_h / 2)

    def draw(canvas: ImageDraw.ImageDraw, scale: int) -> None:
        scaled = [v * scale for v in box]
        if kind == "ellipse":
            canvas.ellipse(scaled, fill=255)
        elif kind == "rect":
            canvas.rounded_rectangle(scaled, radius=0.15 * min(size_w, size_h) * scale, fill=255)
        else:
            x0, y0, x1, y1 = scaled
            canvas.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=255)

    return supersampled_mask(width_px, height_px, draw)


def _text_alpha(rng: np.random.Generator, width_px: int, height_px: int, word: str) -> np.ndarray:
    """A word in DejaVu Sans Bold, sized to about 60% of the width (capped by height), at a random place."""
    probe = font(100)
    left, top, right, bottom = probe.getbbox(word)
    size_px = int(min(100 * 0.6 * width_px / max(right - left, 1), 100 * 0.22 * height_px / max(bottom - top, 1)))
    size_px = max(size_px, 6)
    word_font = font(size_px * SUPERSAMPLE)
    left, top, right, bottom = word_font.getbbox(word)
    text_w, text_h = (right - left) / SUPERSAMPLE, (bottom - top) / SUPERSAMPLE
    x = rng.uniform(2, max(width_px - text_w - 2, 3))
    y = rng.uniform(2, max(height_px - text_h - 2, 3))

    def draw(canvas: ImageDraw.ImageDraw, scale: int) -> None:
        canvas.text((x * scale - left, y * scale - top), word, font=word_font, fill=255)

    return supersampled_mask(width_px, height_px, draw)


def _feathered_cutout(rng: np.random.Generator, width_px: int, height_px: int) -> np.ndarray:
    """A photo patch inside a soft-edged ellipse (feather radius ~3% of the short side): a "cut-out" layer."""
    photo = photo_rgb(PHOTOS[int(rng.integers(len(PHOTOS)))], width_px, height_px)
    short = min(width_px, height_px)
    alpha = _shape_alpha(rng, width_px, height_px, "ellipse")
    feather_px = max(1.0, 0.03 * short)
    blurred = Image.fromarray(np.rint(alpha * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(feather_px))
    a8 = np.asarray(blurred, dtype=np.uint8)
    rgba = np.dstack([photo, a8])
    rgba[a8 == 0, :3] = 0
    return rgba


def make_sample(kind: str = "flat", width_px: int = 512, height_px: int = 384, seed: int = 0) -> Sample:
    """One layered image of the given kind (see SAMPLE_KINDS):

    - ``flat``: flat background, two opaque anti-aliased shapes, a word of text (4 layers);
    - ``gradient``: like flat on a two-colour linear gradient;
    - ``photo``: a scikit-image photo background, one shape and text;
    - ``cutout``: flat background, a feathered photo cut-out, a shape, text;
    - ``semi``: flat background, an opaque shape, a semi-transparent (α 0.3–0.8) shape over it, text;
    - ``text``: flat background and two words.
    """
    if kind not in SAMPLE_KINDS:
        raise ValueError(f"sample kind must be one of {', '.join(SAMPLE_KINDS)}, got {kind!r}")
    if width_px < 8 or height_px < 8:
        raise ValueError(f"samples need at least 8×8 pixels, got {width_px}×{height_px}")
    # Separate stream per kind so that adding a kind never changes the others.
    rng = np.random.default_rng([seed, SAMPLE_KINDS.index(kind)])
    background_rgb = BACKGROUND_RGB[int(rng.integers(len(BACKGROUND_RGB)))]
    colors = pick_colors(rng, background_rgb, 4)
    shape_kinds = ["ellipse", "rect", "triangle"]
    word = WORDS[int(rng.integers(len(WORDS)))]

    layers: list[np.ndarray] = []
    names: list[str] = []
    if kind == "gradient":
        other = pick_colors(rng, (128, 128, 128), 1)[0]
        mix = tuple(int(0.5 * a + 0.5 * b) for a, b in zip(background_rgb, other, strict=False))
        layers.append(gradient_background(width_px, height_px, background_rgb, mix, rng.uniform(0, np.pi)))
        names.append("Background")
    elif kind == "photo":
        layers.append(opaque(photo_rgb(PHOTOS[int(rng.integers(len(PHOTOS)))], width_px, height_px)))
        names.append("Background")
    else:
        layers.append(flat_background(width_px, height_px, background_rgb))
        names.append("Background")

    if kind in ("flat", "gradient"):
        for index in range(2):
            shape = shape_kinds[int(rng.integers(3))]
            layers.append(flat_layer(colors[index], _shape_alpha(rng, width_px, height_px, shape)))
            names.append(f"Shape {shape}")
    elif kind == "photo":
        shape = shape_kinds[int(rng.integers(3))]
        layers.append(flat_layer(colors[0], _shape_alpha(rng, width_px, height_px, shape)))
        names.append(f"Shape {shape}")
    elif kind == "cutout":
        layers.append(_feathered_cutout(rng, width_px, height_px))
        names.append("Cut-out")
        shape = shape_kinds[int(rng.integers(3))]
        layers.append(flat_layer(colors[0], _shape_alpha(rng, width_px, height_px, shape)))
        names.append(f"Shape {shape}")
    elif kind == "semi":
        shape = shape_kinds[int(rng.integers(3))]
        layers.append(flat_layer(colors[0], _shape_alpha(rng, width_px, height_px, shape)))
        names.append(f"Shape {shape}")
        opacity = float(rng.uniform(0.3, 0.8))
        layers.append(flat_layer(colors[1], _shape_alpha(rng, width_px, height_px, "ellipse"), opacity))
        names.append(f"Translucent ellipse ({opacity:.0%})")
    elif kind == "text":
        other_word = WORDS[(WORDS.index(word) + 1 + int(rng.integers(len(WORDS) - 1))) % len(WORDS)]
        layers.append(flat_layer(colors[1], _text_alpha(rng, width_px, height_px, other_word)))
        names.append(f"Text '{other_word}'")

    text_color = colors[3] if kind != "photo" else (255, 255, 255)
    layers.append(flat_layer(text_color, _text_alpha(rng, width_px, height_px, word)))
    names.append(f"Text '{word}'")
    return Sample(kind=kind, seed=seed, composite=composite_over(layers), layers=layers, names=names)


def make_flat_poster(width_px: int = 512, height_px: int = 384, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """The standard input image: flat background, two anti-aliased shapes and a word (4 layers, back→front).

    Returns (opaque composite H×W×4 uint8, ground-truth layers).
    """
    sample = make_sample("flat", width_px, height_px, seed)
    return sample.composite, sample.layers


def save_sample(path: str | os.PathLike, kind: str = "flat", width_px: int = 512, height_px: int = 384,
                seed: int = 0) -> Path:
    """Write a sample's composite as a PNG (atomically) and return the path."""
    path = Path(path)
    write_png_atomic(path, make_sample(kind, width_px, height_px, seed).composite)
    return path
