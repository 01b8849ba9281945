# SPDX-License-Identifier: GPL-3.0-or-later
"""Image bytes without PIL (Blender's Python has none): sniff the format and size, dilate colours under
transparent texels, convert float pixels, encode RGBA as PNG."""

from __future__ import annotations

import struct
import zlib

import numpy as np

# Formats the server's Pillow reads; the first bytes of each file.
MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"RIFF", "WEBP"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"GIF8", "GIF"),
)


class InputImageError(ValueError):
    """The bytes given as the input image are not an image the server can read."""


def sniff_image(data: bytes, name: str = "the image") -> tuple[str, int | None, int | None]:
    """→ (format, width_px, height_px); sizes are None where the header is not parsed (only PNG and JPEG are)."""
    if not data:
        raise InputImageError(f"{name} is empty (0 bytes)")
    kind = next((fmt for magic, fmt in MAGIC if data.startswith(magic)), None)
    if kind is None or (kind == "WEBP" and data[8:12] != b"WEBP"):
        raise InputImageError(f"{name} is not an image Strata can read (expected PNG, JPEG, WebP, BMP, TIFF or "
                              f"GIF; it starts with {data[:8]!r})")
    if kind == "PNG":
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise InputImageError(f"{name} is a truncated PNG (no IHDR header)")
        width, height = struct.unpack(">II", data[16:24])
        return kind, width, height
    if kind == "JPEG":
        return (kind, *_jpeg_size(data))
    return kind, None, None


def _jpeg_size(data: bytes) -> tuple[int | None, int | None]:
    offset = 2
    while offset + 9 < len(data):
        if data[offset] != 0xFF:
            offset += 1
            continue
        marker = data[offset + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            offset += 2
            continue
        length = struct.unpack(">H", data[offset + 2:offset + 4])[0]
        # SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC) carry the frame size.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[offset + 5:offset + 9])
            return width, height
        offset += 2 + length
    return None, None


def dilate_transparent(rgba: np.ndarray, iterations: int = 4) -> tuple[np.ndarray, bool]:
    """Give fully transparent texels the mean colour of their visible 4-neighbours, ``iterations`` texels deep.

    Linear texture filtering mixes a texel with its neighbours; without this, the arbitrary colour stored under
    alpha 0 (often black or a model's noise) bleeds into the edges as dark or coloured fringes. Alpha is untouched.
    Only the bounding box of the visible texels (grown by ``iterations``) is processed.
    Returns (rgba, changed). Works on uint8 or float arrays of shape H×W×4.
    """
    known_full = rgba[..., 3] > 0
    if known_full.all() or not known_full.any():
        return rgba, False
    rows, cols = np.nonzero(known_full.any(axis=1))[0], np.nonzero(known_full.any(axis=0))[0]
    y0, y1 = max(rows[0] - iterations, 0), min(rows[-1] + iterations + 1, rgba.shape[0])
    x0, x1 = max(cols[0] - iterations, 0), min(cols[-1] + iterations + 1, rgba.shape[1])
    known = known_full[y0:y1, x0:x1]
    color = rgba[y0:y1, x0:x1, :3].astype(np.float32) * known[..., None]
    weight = known.astype(np.float32)
    changed = False
    for _ in range(iterations):
        total = np.zeros_like(color)
        count = np.zeros_like(weight)
        for target, source in (((slice(1, None), slice(None)), (slice(None, -1), slice(None))),
                               ((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
                               ((slice(None), slice(1, None)), (slice(None), slice(None, -1))),
                               ((slice(None), slice(None, -1)), (slice(None), slice(1, None)))):
            total[target] += color[source]
            count[target] += weight[source]
        grow = (weight == 0) & (count > 0)
        if not grow.any():
            break
        color[grow] = total[grow] / count[grow][:, None]
        weight[grow] = 1.0
        changed = True
    out = rgba.copy()
    filled = weight > 0
    region = out[y0:y1, x0:x1, :3]
    if np.issubdtype(rgba.dtype, np.integer):
        region[filled] = np.clip(np.rint(color[filled]), 0, np.iinfo(rgba.dtype).max).astype(rgba.dtype)
    else:
        region[filled] = color[filled].astype(rgba.dtype)
    return out, changed


def linear_to_srgb(values: np.ndarray) -> np.ndarray:
    """Scene-linear values → sRGB-encoded values (the sRGB transfer curve), both in 0..1."""
    return np.where(values <= 0.0031308, values * 12.92,
                    1.055 * np.power(np.clip(values, 0.0031308, None), 1 / 2.4) - 0.055)


def rgba8(pixels: np.ndarray) -> np.ndarray:
    """Float pixels in 0..1 → uint8 (rounded, clipped)."""
    return np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8)


def encode_png_rgba(rgba: np.ndarray, level: int = 1) -> bytes:
    """H×W×4 uint8 (top row first) → PNG bytes, filter 0, zlib ``level`` (1: layers are big, speed matters)."""
    if rgba.dtype != np.uint8 or rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"expected an H×W×4 uint8 array, got {rgba.shape} {rgba.dtype}")
    height, width = rgba.shape[:2]
    rows = np.concatenate([np.zeros((height, 1), np.uint8), rgba.reshape(height, width * 4)], axis=1)

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit, colour type 6 = RGBA
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), level))
            + chunk(b"IEND", b""))
