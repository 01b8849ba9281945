# SPDX-License-Identifier: GPL-3.0-or-later
"""Image input: every hostile or unusual file either becomes a correct RGBA image (and the notes say what was
converted) or is refused with a specific 4xx message — through ``load_image`` and through the HTTP API."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import missing_tool, png_bytes_of, sample_image, wait_client
from hostile import corpus, raw_png
from PIL import Image

from inference_server.errors import ImageTooLarge, InvalidInput, StrataError
from inference_server.image_input import load_image

CASES = corpus()


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_load_image_accepts_or_explains(case):
    if case.status == 200:
        image, notes = load_image(case.data)
        assert image.mode == "RGBA" and image.size == case.size
        assert notes == [] if case.words is None else case.words in " ".join(notes), notes
    else:
        with pytest.raises(StrataError) as caught:
            load_image(case.data)
        assert caught.value.http_status == case.status
        assert case.words in str(caught.value)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_api_answers_each_hostile_file_without_a_server_error(client, case):
    response = client.post("/v1/jobs", files={"image": ("upload", case.data, "application/octet-stream")},
                           data={"params": json.dumps({"layers": 2})})
    if case.status == 200:
        assert response.status_code == 202, response.text
        record = wait_client(client, response.json()["id"])
        assert record["status"] == "succeeded", record
        manifest = client.get(f"/v1/jobs/{record['id']}/manifest").json()
        assert (manifest["width_px"], manifest["height_px"]) == case.size
        if case.words is not None:
            assert case.words in " ".join(manifest["notes"]), "the manifest must say what conversion was done"
    else:
        assert response.status_code == case.status, response.text
        assert case.words in response.json()["detail"]


def test_bomb_is_refused_before_decoding():
    # 7000×7000 gray = 49 MB of pixels from a ~50 KB file; refusing must not cost a decode.
    bomb = next(case for case in CASES if case.name == "decompression_bomb_49MP")
    assert len(bomb.data) < 200_000
    started = time.perf_counter()
    with pytest.raises(ImageTooLarge, match="--max-pixels"):
        load_image(bomb.data)
    assert time.perf_counter() - started < 0.5


def test_pixel_limit_is_configurable():
    image = png_bytes_of(sample_image(100, 100))
    with pytest.raises(ImageTooLarge, match="accepts up to 0 MP"):
        load_image(image, max_pixels=5_000)
    assert load_image(image, max_pixels=10_000)[0].size == (100, 100)


def test_palette_transparency_survives_as_alpha():
    case = next(case for case in CASES if case.name == "palette_transparency")
    rgba = np.asarray(load_image(case.data)[0])
    assert rgba[0, 0, 3] == 0, "the transparent palette entry must become alpha 0"
    assert tuple(rgba[16, 16]) == (200, 30, 30, 255)


def test_first_frame_of_an_animation_is_used():
    for name in ("animated_gif", "animated_webp"):
        case = next(case for case in CASES if case.name == name)
        red, green, blue, _ = np.asarray(load_image(case.data)[0])[16, 16].astype(int)
        assert red > 200 and green < 50 and blue < 50, f"{name}: expected the first (red) frame"


def test_exif_orientation_is_applied():
    case = next(case for case in CASES if case.name == "exif_rotated_jpeg")
    image = load_image(case.data)[0]
    # Stored 48×32 with "rotate 90° clockwise": displayed 32×48, the stored left column (read bottom to top) becomes
    # the top row. JPEG is lossy: the right turn is within a few levels, the wrong ones are far off.
    stored = np.asarray(Image.open(io.BytesIO(case.data)).convert("RGB")).astype(int)
    shown = np.asarray(image)[..., :3].astype(int)
    assert shown.shape == (48, 32, 3)
    assert np.abs(shown - np.rot90(stored, k=-1)).mean() < 2
    for wrong in (np.rot90(stored, k=1), np.flipud(np.rot90(stored, k=-1))):
        assert np.abs(shown - wrong).mean() > 20


def test_sixteen_bit_gray_keeps_its_range():
    case = next(case for case in CASES if case.name == "gray16_png")
    gray = np.asarray(load_image(case.data)[0])[..., 0]
    assert gray.min() == 0 and gray.max() == 255, "16-bit values must be scaled, not clipped or truncated"


def test_sixteen_bit_rgb_is_scaled():
    case = next(case for case in CASES if case.name == "rgb16_png")
    rgba = np.asarray(load_image(case.data)[0])
    assert abs(int(rgba[0, 0, 0]) - round(40000 / 257)) <= 1


# A print CMYK profile from Ghostscript's data files (Debian's libgs-common, installed by scripts/setup.sh).
CMYK_PROFILE = Path("/usr/share/color/icc/ghostscript/default_cmyk.icc")


def test_cmyk_without_a_profile_uses_the_plain_formula():
    # Cyan, magenta, yellow, black ink at full strength, and no ink at all.
    inks = [(255, 0, 0, 0), (0, 255, 0, 0), (0, 0, 255, 0), (0, 0, 0, 255), (0, 0, 0, 0)]
    cmyk = Image.new("CMYK", (80, 16))
    for index, ink in enumerate(inks):
        cmyk.paste(ink, (index * 16, 0, index * 16 + 16, 16))
    image, notes = load_image(png_bytes_of(cmyk, "TIFF"))
    centres = [tuple(np.asarray(image)[8, index * 16 + 8, :3]) for index in range(len(inks))]
    assert centres == [(0, 255, 255), (255, 0, 255), (255, 255, 0), (0, 0, 0), (255, 255, 255)]
    assert "converted CMYK to RGB" in notes and not any("ICC" in note for note in notes)


def test_cmyk_with_its_icc_profile_round_trips_to_the_original_colours():
    from PIL import ImageCms

    if not CMYK_PROFILE.exists():
        missing_tool(f"no CMYK ICC profile at {CMYK_PROFILE}: apt-get install -y libgs-common")
    # Muted colours, inside the print gamut (saturated screen reds and blues are not, and would not round-trip).
    original = 70 + np.asarray(sample_image(96, 64)).astype(int) * 120 // 255
    profile = ImageCms.ImageCmsProfile(str(CMYK_PROFILE))
    cmyk = ImageCms.profileToProfile(Image.fromarray(original.astype(np.uint8)), ImageCms.createProfile("sRGB"),
                                     profile, outputMode="CMYK")
    data = png_bytes_of(cmyk, "TIFF", icc_profile=profile.tobytes())
    image, notes = load_image(data)
    through_profile = np.abs(np.asarray(image)[..., :3].astype(int) - original).mean()
    naive = np.abs(np.asarray(cmyk.convert("RGB")).astype(int) - original).mean()
    assert "used the embedded ICC profile" in notes
    # Print CMYK is not an inversion: the profile gets the colours back, the plain formula does not.
    assert through_profile < 6 and naive > 3 * through_profile, (through_profile, naive)


def test_cmyk_with_a_broken_profile_says_so_and_still_converts():
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))
    image, notes = load_image(png_bytes_of(cmyk, "TIFF", icc_profile=b"not an ICC profile at all" * 8))
    assert tuple(np.asarray(image)[5, 5, :3]) == (255, 0, 0)
    assert any("ICC profile could not be used" in note for note in notes), notes


def test_path_input_and_missing_file(tmp_path):
    path = tmp_path / "in.png"
    path.write_bytes(png_bytes_of(sample_image()))
    assert load_image(path)[0].size == (96, 64)
    with pytest.raises(InvalidInput, match="no such file"):
        load_image(tmp_path / "missing.png")


def test_minimum_side_is_16_px():
    assert load_image(png_bytes_of(Image.new("RGB", (16, 16))))[0].size == (16, 16)
    with pytest.raises(InvalidInput, match="15×16 px; each side must be at least 16 px"):
        load_image(png_bytes_of(Image.new("RGB", (15, 16))))


def test_raw_png_helper_round_trips():
    rows = b"".join(b"\x00" + bytes(range(16)) for _ in range(16))
    assert np.asarray(Image.open(io.BytesIO(raw_png(16, 16, 8, 0, rows=rows))))[3, 5] == 5
