# SPDX-License-Identifier: GPL-3.0-or-later
"""bpy-free image helpers of the add-on: format sniffing, PNG encoding, transparent-texel dilation."""

import io

import numpy as np
import pytest
from PIL import Image

from blender_addon.core.image_bytes import InputImageError, dilate_transparent, encode_png_rgba, sniff_image


def _encoded(image, fmt):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_sniff_reads_png_and_jpeg_sizes():
    image = Image.new("RGB", (37, 21), (10, 20, 30))
    assert sniff_image(_encoded(image, "PNG")) == ("PNG", 37, 21)
    assert sniff_image(_encoded(image, "JPEG")) == ("JPEG", 37, 21)
    assert sniff_image(_encoded(image, "WEBP"))[0] == "WEBP"


def test_sniff_rejects_non_images_with_a_teaching_message():
    with pytest.raises(InputImageError, match="notes.txt is not an image Strata can read"):
        sniff_image(b"hello world", name="notes.txt")
    with pytest.raises(InputImageError, match="empty"):
        sniff_image(b"")


def test_encoded_png_reads_back_identically():
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (13, 17, 4), dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(encode_png_rgba(rgba))))
    assert decoded.shape == (13, 17, 4)
    assert np.array_equal(decoded, rgba)


def test_dilation_fills_colour_under_transparent_texels_and_keeps_alpha():
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[2:6, 2:6] = (200, 50, 10, 255)
    out, changed = dilate_transparent(rgba, iterations=2)
    assert changed
    assert np.array_equal(out[..., 3], rgba[..., 3])
    assert tuple(out[1, 3, :3]) == (200, 50, 10)  # one texel out: neighbour colour, not black
    assert tuple(out[2:6, 2:6].reshape(-1, 4)[0]) == (200, 50, 10, 255)
    opaque = np.full((4, 4, 4), 255, np.uint8)
    assert dilate_transparent(opaque) == (opaque, False)
