# SPDX-License-Identifier: GPL-3.0-or-later
"""A corpus of hostile and unusual image files, generated at test time (no binaries in the repository).

``corpus()`` returns ``HostileCase`` entries: the bytes, and what a user should get — either the image accepted
(with a word expected in the conversion notes and the expected size) or an HTTP status with words of the message.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass
class HostileCase:
    name: str
    data: bytes
    status: int  # 200 = accepted
    # In the error message (rejected), or in the notes (accepted); None: accepted as it is, with no notes at all.
    words: str | None
    size: tuple[int, int] | None = None  # (width, height) after loading, for accepted cases


def _save(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def raw_png(width_px: int, height_px: int, bit_depth: int, color_type: int, rows: bytes | None = None,
            idat: bytes | None = None) -> bytes:
    """A PNG written by hand, for what PIL will not write (16-bit RGB) or must never see written (bombs)."""
    header = struct.pack(">IIBBBBB", width_px, height_px, bit_depth, color_type, 0, 0, 0)
    if idat is None:
        idat = zlib.compress(rows or b"", 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _bomb_png(width_px: int, height_px: int) -> bytes:
    """A real decompression bomb: valid 8-bit gray PNG of zeros, a few KB on disk, width×height bytes decoded."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width_px + 1)  # filter byte + pixels
    parts = [compressor.compress(row * 64) for _ in range(height_px // 64)]
    parts.append(compressor.compress(row * (height_px % 64)))
    parts.append(compressor.flush())
    return raw_png(width_px, height_px, 8, 0, idat=b"".join(parts))


def _gradient(width_px: int = 48, height_px: int = 32) -> Image.Image:
    y, x = np.mgrid[0:height_px, 0:width_px]
    rgb = np.stack([x * 5 % 256, y * 7 % 256, (x + y) * 3 % 256], axis=2).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def _animated(format: str) -> bytes:
    frames = [Image.new("RGB", (32, 32), color) for color in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    return _save(frames[0], format, save_all=True, append_images=frames[1:], duration=100, loop=0)


def _exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    return _save(_gradient(48, 32), "JPEG", exif=exif.tobytes(), quality=90)


def _palette_with_transparency() -> bytes:
    image = Image.new("P", (32, 32), 0)
    image.putpalette([255, 255, 255, 200, 30, 30] + [0] * 762)
    image.paste(1, (8, 8, 24, 24))
    return _save(image, "PNG", transparency=0)


def corpus() -> list[HostileCase]:
    png = _save(_gradient(), "PNG")
    jpeg = _save(_gradient(), "JPEG", quality=90)
    gray16_rows = b"".join(b"\x00" + np.linspace(0, 65535, 32).astype(">u2").tobytes() for _ in range(32))
    rgb16_rows = b"".join(b"\x00" + np.full((32, 3), 40000, ">u2").tobytes() for _ in range(32))
    return [
        # rejected, with a reason a user can act on
        HostileCase("empty", b"", 400, "empty"),
        HostileCase("text", b"hello, I am not a picture", 400, "not a recognisable image"),
        HostileCase("pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", 400, "PDF"),
        HostileCase("svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', 400, "SVG"),
        HostileCase("truncated_png", png[: len(png) // 2], 400, "truncated"),
        HostileCase("truncated_jpeg", jpeg[: len(jpeg) // 2], 400, "truncated"),
        HostileCase("png_header_only", png[:33], 400, "truncated"),
        HostileCase("png_bad_crc", png[:40] + bytes([png[40] ^ 0xFF]) + png[41:], 400, "corrupt"),
        HostileCase("decompression_bomb_49MP", _bomb_png(7000, 7000), 413, "40 MP"),
        HostileCase("bomb_header_400MP", raw_png(20000, 20000, 8, 0, idat=b"x"), 413, "MP"),
        HostileCase("zero_width", raw_png(0, 10, 8, 0, idat=b"x"), 400, "truncated or corrupt"),
        HostileCase("one_pixel", _save(Image.new("RGB", (1, 1)), "PNG"), 400, "at least 16 px"),
        HostileCase("sliver_2000x20", _save(Image.new("RGB", (2000, 20)), "PNG"), 400, "aspect ratio"),
        HostileCase("bmp_huge_header", _save(Image.new("RGB", (16, 16)), "BMP")[:18] + struct.pack("<ii", 30000, 30000)
                    + _save(Image.new("RGB", (16, 16)), "BMP")[26:], 413, "MP"),
        HostileCase("eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", 400, "PostScript"),
        # accepted, converted, and the conversion said in the notes
        HostileCase("gray16_png", raw_png(32, 32, 16, 0, rows=gray16_rows), 200, "8-bit", (32, 32)),
        HostileCase("rgb16_png", raw_png(32, 32, 16, 2, rows=rgb16_rows), 200, "16-bit colour", (32, 32)),
        HostileCase("float_tiff", _save(Image.fromarray(np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)),
                                                        "TIFF"), 200, "float", (32, 32)),
        HostileCase("cmyk_jpeg", _save(_gradient().convert("CMYK"), "JPEG"), 200, "CMYK", (48, 32)),
        HostileCase("palette_transparency", _palette_with_transparency(), 200, "transparency", (32, 32)),
        HostileCase("animated_gif", _animated("GIF"), 200, "first frame", (32, 32)),
        HostileCase("animated_webp", _animated("WEBP"), 200, "first frame", (32, 32)),
        HostileCase("exif_rotated_jpeg", _exif_rotated_jpeg(), 200, "EXIF orientation 6", (32, 48)),
        HostileCase("one_bit", _save(Image.new("1", (32, 32), 1), "PNG"), 200, "'1'", (32, 32)),
        HostileCase("gray_alpha", _save(Image.new("LA", (32, 32), (100, 50)), "PNG"), 200, "'LA'", (32, 32)),
        HostileCase("trailing_garbage_png", png + b"\x00garbage" * 100, 200, None, (48, 32)),
    ]
