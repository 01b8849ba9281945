# SPDX-License-Identifier: GPL-3.0-or-later
"""A held-out set of layered images for the decomposition benchmark: kinds of element and layout that
``benchmarks.samples`` never makes (and the CPU decomposer was not tuned on), with ground-truth layers.

What differs from ``samples``: 5–7 layers per image; several texts in DejaVu Serif / Mono / Sans Bold at different
sizes and colours, one of them rotated; two shapes of the *same* colour at different depths with another shape
between them; thin lines and outlined rings (strokes of 2–4 px); rounded badges with a soft drop shadow (one layer:
shadow and badge, as a design tool's layer effect); gradient-filled shapes; small flat icons over a photo; small
elements cut off by the image's edge. Sizes scale with the image, so it runs at 1024² as well as at 512 px.

    sample = make_heldout_sample("depth", 1024, 1024, seed=0)   # sample.composite, sample.layers (back→front)
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from inference_server.layers import composite_over

from .samples import (
    BACKGROUND_RGB,
    PHOTOS,
    SUPERSAMPLE,
    Sample,
    flat_background,
    flat_layer,
    font,
    gradient_background,
    opaque,
    photo_rgb,
    pick_colors,
    supersampled_mask,
)

HELDOUT_KINDS = ("typeset", "depth", "badge", "icons")

FONT_FILES = ["DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif-Bold.ttf",
              "DejaVuSansMono-Bold.ttf", "DejaVuSans.ttf"]
PHRASES = ["Grand Opening", "LIMITED", "Jazz Night", "free entry", "since 1998", "TICKETS", "Workshop",
           "10:00-18:00", "Book now", "MARKET"]


def _text_alpha(rng, width_px: int, height_px: int, phrase: str, font_name: str, height_share: float,
                angle_deg: float = 0.0, anchor=None) -> np.ndarray:
    """A phrase whose cap height is about ``height_share`` of the image height, rotated by ``angle_deg``,
    at ``anchor`` (centre, px) or a random place where it fits."""
    size_px = max(8, int(height_share * height_px))
    while True:
        phrase_font = font(size_px * SUPERSAMPLE, font_name)
        left, top, right, bottom = phrase_font.getbbox(phrase)
        if (right - left) / SUPERSAMPLE <= 0.8 * width_px or size_px <= 8:
            break
        size_px = int(size_px * 0.85)
    # Pillow's FreeType boxes are whole pixels (typed as float for its other layouts).
    tile = Image.new("L", (int(right - left) + 8 * SUPERSAMPLE, int(bottom - top) + 8 * SUPERSAMPLE), 0)
    ImageDraw.Draw(tile).text((4 * SUPERSAMPLE - left, 4 * SUPERSAMPLE - top), phrase, font=phrase_font, fill=255)
    if angle_deg:
        tile = tile.rotate(angle_deg, resample=Image.Resampling.BICUBIC, expand=True)
    tile_w, tile_h = tile.width / SUPERSAMPLE, tile.height / SUPERSAMPLE
    if anchor is None:
        anchor = (rng.uniform(tile_w / 2, max(width_px - tile_w / 2, tile_w / 2 + 1)),
                  rng.uniform(tile_h / 2, max(height_px - tile_h / 2, tile_h / 2 + 1)))
    big = Image.new("L", (width_px * SUPERSAMPLE, height_px * SUPERSAMPLE), 0)
    big.paste(tile, (int(anchor[0] * SUPERSAMPLE - tile.width / 2), int(anchor[1] * SUPERSAMPLE - tile.height / 2)))
    return np.asarray(big.resize((width_px, height_px), Image.Resampling.BOX), np.float64) / 255.0


def shape_mask(width_px: int, height_px: int, kind: str, box, stroke_px: float = 0.0) -> np.ndarray:
    """Anti-aliased shape in ``box`` (x0, y0, x1, y1 px, may extend past the frame); ``stroke_px`` > 0 draws
    only its outline that thick."""

    def draw(canvas: ImageDraw.ImageDraw, scale: int) -> None:
        x0, y0, x1, y1 = [v * scale for v in box]
        width = max(1, int(round(stroke_px * scale))) if stroke_px else 0
        fill = None if stroke_px else 255
        outline = 255 if stroke_px else None
        if kind == "ellipse":
            canvas.ellipse((x0, y0, x1, y1), fill=fill, outline=outline, width=width)
        elif kind == "rect":
            canvas.rounded_rectangle((x0, y0, x1, y1), radius=0.12 * min(x1 - x0, y1 - y0), fill=fill,
                                     outline=outline, width=width)
        elif kind == "pill":
            canvas.rounded_rectangle((x0, y0, x1, y1), radius=0.5 * min(x1 - x0, y1 - y0), fill=fill,
                                     outline=outline, width=width)
        elif kind == "star":
            cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, min(x1 - x0, y1 - y0) / 2
            points = [(cx + (r if i % 2 == 0 else 0.45 * r) * np.sin(i * np.pi / 5),
                       cy - (r if i % 2 == 0 else 0.45 * r) * np.cos(i * np.pi / 5)) for i in range(10)]
            canvas.polygon(points, fill=fill, outline=outline, width=width)
        else:  # "line": from (x0, y0) to (x1, y1)
            canvas.line((x0, y0, x1, y1), fill=255, width=max(1, int(round(stroke_px * scale))))

    return supersampled_mask(width_px, height_px, draw)


def _random_box(rng, width_px: int, height_px: int, low: float, high: float, aspect=(0.7, 1.4)):
    short = min(width_px, height_px)
    size_w = rng.uniform(low, high) * short
    size_h = size_w * rng.uniform(*aspect)
    cx = rng.uniform(size_w / 2 + 2, width_px - size_w / 2 - 2)
    cy = rng.uniform(size_h / 2 + 2, height_px - size_h / 2 - 2)
    return (cx - size_w / 2, cy - size_h / 2, cx + size_w / 2, cy + size_h / 2)


def gradient_layer(alpha: np.ndarray, color_a, color_b, angle_rad: float) -> np.ndarray:
    """A shape filled with a linear gradient across its own bounding box."""
    height_px, width_px = alpha.shape
    ys, xs = np.nonzero(alpha > 0)
    if not ys.size:
        return np.zeros((height_px, width_px, 4), np.uint8)
    # Stretch the gradient over the shape's box rather than the whole frame, so the shape shows all of it.
    grid_y, grid_x = np.mgrid[0:height_px, 0:width_px].astype(np.float64)
    proj = grid_x * np.cos(angle_rad) + grid_y * np.sin(angle_rad)
    inside = proj[ys, xs]
    t = np.clip((proj - inside.min()) / max(inside.max() - inside.min(), 1e-9), 0, 1)[..., None]
    fill = (1 - t) * np.asarray(color_a, np.float64) + t * np.asarray(color_b, np.float64)
    a8 = np.clip(np.rint(alpha * 255), 0, 255).astype(np.uint8)
    rgba = np.dstack([np.clip(np.rint(fill), 0, 255).astype(np.uint8), a8])
    rgba[a8 == 0, :3] = 0
    return rgba


def _badge_with_shadow(rng, width_px: int, height_px: int, color_rgb, box) -> np.ndarray:
    """A rounded badge over its soft drop shadow (black, ~45% at most, offset down-right), as one layer."""
    short = min(width_px, height_px)
    badge = shape_mask(width_px, height_px, "pill", box)
    offset = 0.012 * short
    shadow_box = (box[0] + offset, box[1] + offset, box[2] + offset, box[3] + offset)
    shadow = shape_mask(width_px, height_px, "pill", shadow_box)
    blurred = Image.fromarray(np.rint(shadow * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.012 * short))
    shadow_alpha = np.asarray(blurred, np.float64) / 255.0 * rng.uniform(0.35, 0.55)
    return composite_over([flat_layer((0, 0, 0), shadow_alpha), flat_layer(color_rgb, badge)])


def make_heldout_sample(kind: str = "depth", width_px: int = 1024, height_px: int = 1024, seed: int = 0) -> Sample:
    """One held-out layered image (see HELDOUT_KINDS), back to front:

    - ``typeset``: flat background, a thin rule, 4 texts (serif / mono / bold, one rotated ±8–25°), 6 layers;
    - ``depth``: flat or gradient background, shape A, shape B over it, shape C of A's *colour* over B, an outlined
      ring, a small element cut off by the frame's edge, 6 layers;
    - ``badge``: gradient background, a gradient-filled shape, a pill badge with a soft drop shadow, text on the
      badge, a thin line, a second text, 6 layers;
    - ``icons``: a photo, 3 small flat icons (star, circle, pill) scattered over it, a caption bar and its text,
      7 layers.
    """
    if kind not in HELDOUT_KINDS:
        raise ValueError(f"held-out sample kind must be one of {', '.join(HELDOUT_KINDS)}, got {kind!r}")
    if width_px < 64 or height_px < 64:
        raise ValueError(f"held-out samples need at least 64×64 pixels, got {width_px}×{height_px}")
    rng = np.random.default_rng([seed, 1000 + HELDOUT_KINDS.index(kind)])
    w, h = width_px, height_px
    short = min(w, h)
    background_rgb = BACKGROUND_RGB[int(rng.integers(len(BACKGROUND_RGB)))]
    colors = pick_colors(rng, background_rgb, 5)
    phrases = list(rng.permutation(PHRASES))
    fonts = list(rng.permutation(FONT_FILES))
    layers: list[np.ndarray] = []
    names: list[str] = []

    def add(rgba: np.ndarray, name: str) -> None:
        layers.append(rgba)
        names.append(name)

    if kind == "typeset":
        add(flat_background(w, h, background_rgb), "Background")
        y = rng.uniform(0.15, 0.85) * h
        add(flat_layer(colors[4], shape_mask(w, h, "line", (0.06 * w, y, 0.94 * w, y + rng.uniform(-0.05, 0.05) * h),
                                     stroke_px=max(1.5, 0.004 * short))), "Rule")
        for index in range(4):
            angle = float(rng.choice([-1, 1]) * rng.uniform(8, 25)) if index == 3 else 0.0
            share = rng.uniform(0.04, 0.11)
            add(flat_layer(colors[index], _text_alpha(rng, w, h, str(phrases[index]), str(fonts[index]), share, angle)),
                f"Text '{phrases[index]}'")
    elif kind == "depth":
        if rng.uniform() < 0.5:
            add(flat_background(w, h, background_rgb), "Background")
        else:
            other = pick_colors(rng, (128, 128, 128), 1)[0]
            mix = tuple(int(0.6 * a + 0.4 * b) for a, b in zip(background_rgb, other, strict=False))
            add(gradient_background(w, h, background_rgb, mix, rng.uniform(0, np.pi)), "Background")
        box_a = _random_box(rng, w, h, 0.3, 0.45)
        cx, cy = (box_a[0] + box_a[2]) / 2, (box_a[1] + box_a[3]) / 2
        size_b = rng.uniform(0.25, 0.35) * short
        bx, by = cx + rng.uniform(0.15, 0.3) * short * rng.choice([-1, 1]), cy + rng.uniform(0.1, 0.25) * short
        box_b = (bx - size_b / 2, by - size_b / 2, bx + size_b / 2, by + size_b / 2)
        size_c = rng.uniform(0.18, 0.26) * short
        qx, qy = bx + rng.uniform(0.1, 0.2) * short * rng.choice([-1, 1]), by + rng.uniform(0.08, 0.15) * short
        box_c = (qx - size_c / 2, qy - size_c / 2, qx + size_c / 2, qy + size_c / 2)
        kinds = list(rng.permutation(["ellipse", "rect", "star"]))
        add(flat_layer(colors[0], shape_mask(w, h, str(kinds[0]), box_a)), f"Shape A {kinds[0]}")
        add(flat_layer(colors[1], shape_mask(w, h, str(kinds[1]), box_b)), f"Shape B {kinds[1]}")
        add(flat_layer(colors[0], shape_mask(w, h, str(kinds[2]), box_c)), f"Shape C {kinds[2]} (A's colour)")
        ring = _random_box(rng, w, h, 0.2, 0.3, aspect=(1.0, 1.0))
        add(flat_layer(colors[2], shape_mask(w, h, "ellipse", ring, stroke_px=max(2.0, 0.006 * short))), "Ring")
        corner_x = rng.choice([-0.04, 0.92]) * w
        corner_y = rng.choice([-0.04, 0.92]) * h
        add(flat_layer(colors[3], shape_mask(w, h, "ellipse", (corner_x, corner_y, corner_x + 0.12 * short,
                                                         corner_y + 0.12 * short))), "Edge dot")
    elif kind == "badge":
        other = pick_colors(rng, (128, 128, 128), 1)[0]
        mix = tuple(int(0.5 * a + 0.5 * b) for a, b in zip(background_rgb, other, strict=False))
        add(gradient_background(w, h, background_rgb, mix, rng.uniform(0, np.pi)), "Background")
        box = _random_box(rng, w, h, 0.35, 0.5)
        add(gradient_layer(shape_mask(w, h, "rect", box), colors[0], colors[1], rng.uniform(0, np.pi)),
            "Gradient shape")
        bw, bh = rng.uniform(0.35, 0.5) * w, rng.uniform(0.1, 0.14) * h
        bx, by = rng.uniform(0.05 * w, 0.95 * w - bw), rng.uniform(0.05 * h, 0.95 * h - bh)
        add(_badge_with_shadow(rng, w, h, colors[2], (bx, by, bx + bw, by + bh)), "Badge")
        text_rgb = (255, 255, 255) if np.mean(colors[2]) < 150 else (20, 20, 20)
        add(flat_layer(text_rgb, _text_alpha(rng, w, h, str(phrases[0]), "DejaVuSans-Bold.ttf", 0.55 * bh / h,
                                         anchor=(bx + bw / 2, by + bh / 2))), f"Text '{phrases[0]}'")
        y = rng.uniform(0.05, 0.95) * h
        line = shape_mask(w, h, "line", (0.1 * w, y, 0.9 * w, y), stroke_px=max(2.0, 0.003 * short))
        add(flat_layer(colors[3], line), "Line")
        add(flat_layer(colors[4], _text_alpha(rng, w, h, str(phrases[1]), str(fonts[0]), rng.uniform(0.04, 0.07))),
            f"Text '{phrases[1]}'")
    else:  # icons
        add(opaque(photo_rgb(PHOTOS[int(rng.integers(len(PHOTOS)))], w, h)), "Background")
        for index, icon in enumerate(["star", "ellipse", "pill"]):
            box = _random_box(rng, w, h, 0.07, 0.12, aspect=(0.5, 1.0) if icon == "pill" else (1.0, 1.0))
            add(flat_layer(colors[index], shape_mask(w, h, icon, box)), f"Icon {icon}")
        bar_top = rng.uniform(0.75, 0.85) * h
        bar_rgb = (20, 20, 20) if rng.uniform() < 0.5 else (250, 250, 250)
        add(flat_layer(bar_rgb, shape_mask(w, h, "rect", (-0.05 * w, bar_top, 1.05 * w, bar_top + 0.1 * h)), 0.8),
            "Caption bar (80%)")
        text_rgb = (250, 250, 250) if bar_rgb[0] < 128 else (20, 20, 20)
        add(flat_layer(text_rgb, _text_alpha(rng, w, h, str(phrases[0]), str(fonts[0]), 0.05,
                                         anchor=(w / 2, bar_top + 0.05 * h))), f"Text '{phrases[0]}'")
        add(flat_layer(colors[3], _text_alpha(rng, w, h, str(phrases[1]), "DejaVuSans-Bold.ttf", 0.06,
                                          anchor=(rng.uniform(0.3, 0.7) * w, rng.uniform(0.1, 0.25) * h))),
            f"Text '{phrases[1]}'")
    return Sample(kind=kind, seed=seed, composite=composite_over(layers), layers=layers, names=names)
