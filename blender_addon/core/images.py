"""Image bytes without PIL (Blender's Python has none): sniff the format and size, dilate colours under
transparent texels, encode RGBA as PNG."""

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

    Texture filtering mixes a texel with its neighbours; without this, the arbitrary colour stored under alpha 0
    (often black or a model's noise) bleeds into the edges as dark or coloured fringes. Alpha is untouched.
    Returns (rgba, changed). Works on uint8 or float arrays of shape H×W×4.
    """
    alpha = rgba[..., 3]
    known = alpha > 0
    if known.all() or not known.any():
        return rgba, False
    color = rgba[..., :3].astype(np.float64)
    changed = False
    for _ in range(iterations):
        padded_known = np.pad(known, 1)
        padded_color = np.pad(color * known[..., None], ((1, 1), (1, 1), (0, 0)))
        total = np.zeros_like(color)
        count = np.zeros(known.shape, np.float64)
        for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
            total += padded_color[dy:dy + known.shape[0], dx:dx + known.shape[1]]
            count += padded_known[dy:dy + known.shape[0], dx:dx + known.shape[1]]
        grow = (~known) & (count > 0)
        if not grow.any():
            break
        color[grow] = total[grow] / count[grow][:, None]
        known = known | grow
        changed = True
    out = rgba.copy()
    if np.issubdtype(rgba.dtype, np.integer):
        out[..., :3] = np.clip(np.rint(color), 0, np.iinfo(rgba.dtype).max).astype(rgba.dtype)
    else:
        out[..., :3] = color.astype(rgba.dtype)
    return out, changed


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
