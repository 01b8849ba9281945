# SPDX-License-Identifier: GPL-3.0-or-later
"""Turn whatever a user uploads into one straight-alpha RGBA image, or a clear error that says why not.

Every check that can be made from the header (format, size) is made before a single pixel is decoded, so a
decompression bomb (a few KB that claim 100 000 × 100 000 pixels) costs nothing. Then the whole file is decoded
(PIL is lazy: without a full ``load()`` a truncated file would only fail later, inside a backend).

``load_image`` returns the image and a list of notes (conversions done), which go into the job's manifest so the
user can see that, say, a CMYK JPEG was converted or only the first frame of a GIF was used.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import ImageTooLarge, InvalidInput

DEFAULT_MAX_PIXELS = 40_000_000
# 16 px: the Qwen model sees an image through its VAE (×8) and 2×2 patches, so 16×16 px is one token. Anything
# smaller carries less than one token of information once resized to the 640/1024 bucket, and the CPU decomposer's
# colour clustering has too few pixels to split into layers.
MIN_SIDE_PX = 16
# The Qwen pipeline resizes to a fixed area keeping the aspect ratio and rounds each side to a multiple of 32;
# beyond 16:1 the short side rounds to a sliver (or to zero).
MAX_ASPECT_RATIO = 16.0
# Formats we decode. Others that PIL can open are refused on purpose: EPS runs Ghostscript, and the rarer
# decoders see far less fuzzing than these.
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")  # JPEG includes MPO (camera JPEGs)
FORMAT_NAMES = "PNG, JPEG, WebP, GIF, BMP or TIFF"

# Magic bytes of things people commonly send by mistake, for a more helpful "not an image" message.
_KNOWN_NON_IMAGES = (
    (b"%PDF", "a PDF document"),
    (b"<svg", "an SVG drawing (vector; export it to PNG first)"),
    (b"<?xml", "an XML/SVG file (vector; export it to PNG first)"),
    (b"8BPS", "a Photoshop PSD file (flatten and export it to PNG first)"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"%!PS", "a PostScript/EPS file"),
)


_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def _sniff_image_format(head: bytes) -> str | None:
    """The format a file claims by its first bytes, so a broken PNG is called a broken PNG, not "not an image"."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    for magic, name in _IMAGE_MAGIC:
        if head.startswith(magic):
            return name
    return None


def _corrupt(format_name: str, exc: BaseException) -> InvalidInput:
    detail = "its header is invalid" if isinstance(exc, UnidentifiedImageError) else f"{type(exc).__name__}: {exc}"
    return InvalidInput(
        f"the {format_name} file is truncated or corrupt and could not be decoded ({detail}); re-export or "
        f"re-download it"
    )


def _describe_non_image(head: bytes) -> str:
    stripped = head.lstrip()
    for magic, what in _KNOWN_NON_IMAGES:
        if stripped.startswith(magic):
            return what
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        return "a HEIC/AVIF photo (convert it to JPEG or PNG first)"
    if not head:
        return "empty (0 bytes)"
    return f"not a recognisable image (first bytes: {head[:8].hex(' ')})"


def _open(data: bytes | str | os.PathLike, max_pixels: int) -> ImageFile.ImageFile:
    source: io.BytesIO | Path
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        source = io.BytesIO(raw)
        head = raw[:16]
        where = "the uploaded file"
    else:
        path = Path(data)
        if not path.is_file():
            raise InvalidInput(f"{path}: no such file")
        with open(path, "rb") as handle:
            head = handle.read(16)
        source = path
        where = str(path)
    try:
        with warnings.catch_warnings():
            # PIL warns above its own MAX_IMAGE_PIXELS and raises above twice that; our limit is checked below,
            # so neither should escape as a warning or a generic error.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source, formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(
            f"{where} declares more pixels than this server accepts ({exc}); the limit is "
            f"{max_pixels / 1e6:.0f} MP"
        ) from None
    except Exception as exc:  # untrusted bytes: any decoder failure means "not a readable image"
        claimed = _sniff_image_format(head)
        if claimed is not None:
            raise _corrupt(claimed, exc) from None
        if isinstance(exc, UnidentifiedImageError):
            raise InvalidInput(f"{where} is {_describe_non_image(head)}; send a {FORMAT_NAMES} image") from None
        raise InvalidInput(f"{where} could not be read as an image ({type(exc).__name__}: {exc})") from None
    return image


def _check_size(width_px: int, height_px: int, max_pixels: int) -> None:
    if width_px <= 0 or height_px <= 0:
        raise InvalidInput(f"the image is {width_px}×{height_px} px: it has no pixels")
    if width_px * height_px > max_pixels:
        raise ImageTooLarge(
            f"the image is {width_px}×{height_px} px ({width_px * height_px / 1e6:.1f} MP); this server accepts up "
            f"to {max_pixels / 1e6:.0f} MP. Downscale it (the model works at 640 or 1024 px anyway) or start the "
            f"server with a larger --max-pixels"
        )
    if min(width_px, height_px) < MIN_SIDE_PX:
        raise InvalidInput(
            f"the image is {width_px}×{height_px} px; each side must be at least {MIN_SIDE_PX} px to split into layers"
        )
    ratio = max(width_px, height_px) / min(width_px, height_px)
    if ratio > MAX_ASPECT_RATIO:
        raise InvalidInput(
            f"the image is {width_px}×{height_px} px (aspect ratio {ratio:.1f}:1); the longest side may be at most "
            f"{MAX_ASPECT_RATIO:.0f}× the shortest. Crop it into smaller pieces"
        )


def to_8bit_rgba(image: Image.Image, notes: list[str]) -> Image.Image:
    """Any Pillow mode as 8-bit RGBA (palette transparency kept, high bit depth scaled); ``notes`` says what changed."""
    mode = image.mode
    if mode == "RGBA":
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if mode == "F":
            low, high = (0.0, 1.0) if values.min() >= 0.0 and values.max() <= 1.0 else (values.min(), values.max())
        elif mode == "I" and (values.min() < 0 or values.max() > 65535):
            low, high = values.min(), values.max()
        else:
            low, high = 0.0, 65535.0
        scaled = (values - low) / max(high - low, 1e-12) * 255.0
        gray = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
        notes.append(f"converted {mode} ({'float' if mode == 'F' else 'high bit depth'}) grayscale to 8-bit")
        return Image.fromarray(gray, "L").convert("RGBA")
    if mode == "CMYK":
        notes.append("converted CMYK to RGB")
        return _cmyk_to_rgb(image, notes).convert("RGBA")
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        notes.append(f"converted palette image to RGBA{' (kept its transparency)' if has_alpha else ''}")
        return image.convert("RGBA")
    if mode in ("1", "L", "LA", "La", "RGB", "RGBa", "RGBX"):
        if mode not in ("RGB", "RGBX"):
            notes.append(f"converted mode {mode!r} to RGBA")
        return image.convert("RGBA")
    # YCbCr, LAB, HSV and anything else PIL can convert: via RGB.
    try:
        converted = image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise InvalidInput(f"unsupported pixel mode {mode!r} ({exc}); send an 8-bit RGB or RGBA image") from None
    notes.append(f"converted mode {mode!r} to RGB")
    return converted.convert("RGBA")


def _cmyk_to_rgb(image: Image.Image, notes: list[str]) -> Image.Image:
    """Use the embedded ICC profile when there is one (print CMYK is not a simple inversion), else PIL's formula."""
    icc = image.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms

            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
            if converted is None:  # only an in-place conversion returns nothing; this one is not in place
                raise ValueError("the colour conversion returned no image")
        except Exception as exc:  # a broken profile is common in the wild; fall back to the plain conversion
            notes.append(f"the embedded ICC profile could not be used ({exc}); colours converted without it")
        else:
            notes.append("used the embedded ICC profile")
            return converted
    return image.convert("RGB")


def load_image(
    data: bytes | str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[Image.Image, list[str]]:
    """Decode ``data`` (bytes or a path) into an RGBA image, returning ``(image, notes)``.

    Raises InvalidInput (400) for anything that is not a usable image and ImageTooLarge (413) above ``max_pixels``.
    """
    notes: list[str] = []
    opened = _open(data, max_pixels)
    image: Image.Image = opened  # becomes the rotated copy after step 4
    try:
        # 1. Check the declared size before decoding anything.
        _check_size(image.width, image.height, max_pixels)
        # 2. Animated images: the first frame (the one already selected after open).
        if getattr(image, "is_animated", False):
            notes.append(f"animated {image.format} with {getattr(image, 'n_frames', '?')} frames: used the first frame")
            image.seek(0)
        # 3. Decode every pixel now, so a truncated or corrupt file fails here and not inside a backend. Pillow
        # reads 16-bit-per-channel colour PNGs straight into 8-bit RGB(A); only the tile's raw mode says so.
        raw_mode = opened.tile[0].args if opened.tile else None
        if isinstance(raw_mode, str) and raw_mode.startswith(("RGB;16", "RGBA;16")):
            notes.append("reduced 16-bit colour to 8-bit per channel")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image.load()
        except Image.DecompressionBombError as exc:
            raise ImageTooLarge(f"the image is too large to decode safely ({exc})") from None
        except Exception as exc:  # untrusted bytes: any decoder failure means a broken file
            raise _corrupt(image.format or "image", exc) from None
        # 4. EXIF orientation: a phone photo shot in portrait is stored sideways with a rotation tag.
        orientation = _exif_orientation(image)
        if orientation not in (None, 1):
            try:
                rotated = ImageOps.exif_transpose(image)
            except Exception as exc:  # broken EXIF blocks are common; keep the pixels as stored
                notes.append(f"could not apply EXIF orientation {orientation} ({exc}); used the image as stored")
            else:
                if rotated is not None:
                    image = rotated
                    notes.append(f"applied EXIF orientation {orientation} (rotated/flipped to display orientation)")
            _check_size(image.width, image.height, max_pixels)
        # 5. One pixel format for every backend: 8-bit straight-alpha RGBA.
        rgba = to_8bit_rgba(image, notes)
    except BaseException:
        image.close()
        raise
    if rgba is not image:
        image.close()
    return rgba, notes


def _exif_orientation(image: Image.Image) -> int | None:
    try:
        return image.getexif().get(0x0112)
    except Exception:
        return None
