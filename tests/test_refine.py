# SPDX-License-Identifier: GPL-3.0-or-later
"""The refine stage: layers at the input's full resolution whose composite equals the input within one level,
for every backend, opaque or transparent inputs; ``strata refine`` on a folder another tool wrote."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.metrics import alpha_iou, rgb_l1
from benchmarks.samples import make_sample
from inference_server.backends.base import CancelToken
from inference_server.backends.cpu import CpuDecomposer
from inference_server.errors import InvalidInput, JobCanceled
from inference_server.layers import Layer, LayerStack, composite_over
from inference_server.params import DecomposeParams
from inference_server.refine import decompose_refined, refine_layers, refine_stack

REPO = Path(__file__).resolve().parents[1]


def worst_error(layers: list[np.ndarray], target: np.ndarray) -> int:
    """Largest difference (0–255) between the layers' composite and the target: colour where the target shows
    (straight, as an image editor displays it), alpha everywhere."""
    composite = composite_over(layers).astype(np.int32)
    target = target.astype(np.int32)
    shows = target[..., 3] > 0
    colour = np.abs(composite[..., :3] - target[..., :3])[shows]
    return int(max(colour.max() if colour.size else 0, np.abs(composite[..., 3] - target[..., 3]).max()))


def downscale(rgba: np.ndarray, width_px: int, height_px: int) -> np.ndarray:
    return np.asarray(Image.fromarray(rgba, "RGBA").resize((width_px, height_px), Image.Resampling.BOX))


def transparent_logo(width_px: int = 240, height_px: int = 160) -> np.ndarray:
    """A logo on transparency: the flat sample's shapes and text without its background."""
    return composite_over(make_sample("flat", width_px, height_px, seed=2).layers[1:])


# ------------------------------------------------------------------------------------------- cpu backend, exact

@pytest.mark.parametrize("kind", ["photo", "semi", "cutout"])
def test_cpu_layers_composite_to_the_input_within_one_level_at_every_pixel(kind):
    image = make_sample(kind, 256, 192, seed=1).composite
    stack = decompose_refined(CpuDecomposer(use_ocr=False), Image.fromarray(image, "RGBA"),
                              DecomposeParams(layers=4, backend="cpu"))
    assert (stack.width_px, stack.height_px) == (256, 192)
    assert worst_error([layer.rgba for layer in stack.layers], image) <= 1
    assert "refine" in stack.timings_s


# ------------------------------------------------------------------------------------------- low-res layers

def test_low_resolution_layers_come_back_sharp_and_exact_at_the_original_size():
    sample = make_sample("flat", 768, 512, seed=4)
    low = [downscale(layer, 256, 171) for layer in sample.layers]
    result = refine_layers(low, sample.composite)
    assert [layer.shape for layer in result.layers] == [(512, 768, 4)] * len(low)
    assert worst_error(result.layers, sample.composite) <= 1
    resized = [np.asarray(Image.fromarray(layer, "RGBA").resize((768, 512), Image.Resampling.LANCZOS)) for layer in low]
    for truth, refined, plain in zip(sample.layers[1:], result.layers[1:], resized[1:], strict=False):
        # edges follow the original: alpha closer to the truth than a plain resize, colours as close (flat
        # layers downscale to their own colour; bench_refine measures jittered, blurred, noisy ones)
        assert alpha_iou(refined, truth) > alpha_iou(plain, truth)
        assert alpha_iou(refined, truth) > 0.97
        assert rgb_l1(refined, truth) <= rgb_l1(plain, truth) + 0.002
    assert any("upsampled from 256×171 px" in note for note in result.notes)


def test_refine_works_in_bands_with_the_same_result_and_reports_progress():
    sample = make_sample("semi", 300, 200, seed=5)
    low = [downscale(layer, 150, 100) for layer in sample.layers]
    whole = refine_layers(low, sample.composite)
    events = []
    banded = refine_layers(low, sample.composite, band_budget_bytes=1, progress=lambda *e: events.append(e))
    for a, b in zip(whole.layers, banded.layers, strict=False):
        # bands stitch seamlessly: the same layers up to a level where a band edge changes a rounding
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert worst_error(banded.layers, sample.composite) <= 1
    steps = [e for e in events if e[0] == "refine" and e[1] > 0]
    assert len(steps) == 200 // 8 and steps[-1] == ("refine", 25, 25)  # 8-row bands: one report each


def test_refine_stops_when_canceled():
    sample = make_sample("flat", 200, 120, seed=1)
    token = CancelToken()

    def cancel_after_first(stage, step, total):
        if step >= 1:
            token.cancel()

    with pytest.raises(JobCanceled):
        refine_layers(sample.layers, sample.composite, progress=cancel_after_first, cancel=token,
                      band_budget_bytes=1)


def test_layers_of_another_image_are_refused_with_the_reason():
    sample = make_sample("flat", 300, 200, seed=1)
    with pytest.raises(InvalidInput, match="aspect ratios differ"):
        refine_layers([downscale(layer, 100, 100) for layer in sample.layers], sample.composite)


# ------------------------------------------------------------------------------------------- auto

def test_auto_drops_empty_and_repeated_layers_with_a_note_each():
    sample = make_sample("flat", 240, 160, seed=3)
    empty = np.zeros_like(sample.layers[0])
    stack = LayerStack([Layer(sample.layers[0], "Background"), Layer(empty, "Nothing"),
                        Layer(sample.layers[1], "Shape"), Layer(sample.layers[1].copy(), "Shape again"),
                        Layer(sample.composite.copy(), "Everything"), Layer(sample.layers[3], "Text")])
    refined = refine_stack(stack, sample.composite, auto=True)
    assert [layer.name for layer in refined.layers] == ["Background", "Shape again", "Text"]
    notes = "\n".join(refined.notes)
    assert "'Nothing'): empty" in notes
    assert "'Everything'): it repeats the whole composite" in notes
    assert "merged layer 2 ('Shape') into layer 3 ('Shape again')" in notes
    assert worst_error([layer.rgba for layer in refined.layers], sample.composite) <= 1


def test_params_accept_auto_layers():
    assert DecomposeParams.from_dict({"layers": "auto"}).layers == "auto"
    with pytest.raises(InvalidInput, match='integer or "auto"'):
        DecomposeParams.from_dict({"layers": "many"})


def test_auto_on_the_cpu_backend_returns_what_the_image_has():
    image = make_sample("text", 256, 160, seed=2).composite
    stack = decompose_refined(CpuDecomposer(use_ocr=False), Image.fromarray(image, "RGBA"),
                              DecomposeParams(layers="auto", backend="cpu"))
    assert stack.params["layers"] == "auto"
    assert 1 <= len(stack.layers) <= 6
    assert all(layer.coverage >= 0.001 for layer in stack.layers)
    assert worst_error([layer.rgba for layer in stack.layers], image) <= 1


# ------------------------------------------------------------------------------------------- transparent inputs

def test_a_transparent_logo_decomposes_into_layers_that_keep_its_alpha_on_the_cpu_backend():
    logo = transparent_logo()
    assert (logo[..., 3] == 0).mean() > 0.5  # mostly transparent
    stack = decompose_refined(CpuDecomposer(use_ocr=False), Image.fromarray(logo, "RGBA"),
                              DecomposeParams(layers=3, backend="cpu"))
    layers = [layer.rgba for layer in stack.layers]
    assert worst_error(layers, logo) <= 1
    assert (composite_over(layers)[..., 3][logo[..., 3] == 0] == 0).all()  # the surround stays transparent
    assert (layers[0][..., 3] < 255).any()  # the bottom layer is not forced opaque


def test_low_resolution_layers_of_a_transparent_input_keep_its_alpha():
    layers = make_sample("cutout", 480, 320, seed=1).layers[1:]
    logo = composite_over(layers)
    result = refine_layers([downscale(layer, 240, 160) for layer in layers], logo)
    assert worst_error(result.layers, logo) <= 1
    assert (result.layers[0][..., 3] == 0).any()


# ------------------------------------------------------------------------------------------- strata refine

def strata(*args, timeout_s=120):
    return subprocess.run([sys.executable, "-m", "inference_server", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout_s)


def test_strata_refine_turns_another_tools_low_res_folder_into_a_full_resolution_one(tmp_path):
    sample = make_sample("gradient", 600, 400, seed=2)
    original = tmp_path / "poster.png"
    Image.fromarray(sample.composite, "RGBA").save(original)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    for index, layer in enumerate(sample.layers):  # another tool's names, no manifest
        Image.fromarray(downscale(layer, 300, 200), "RGBA").save(theirs / f"{index:02d}-part.png")
    out = tmp_path / "refined"

    result = strata("refine", theirs, "--image", original, "-o", out, "--quiet")
    assert result.returncode == 0, result.stderr
    assert "wrote 4 refined layers (600×400 px)" in result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert [entry["file"] for entry in manifest["layers"]] == [f"layer_{i:02d}.png" for i in range(4)]
    assert [entry["name"] for entry in manifest["layers"]] == [f"{i:02d}-part" for i in range(4)]
    assert manifest["width_px"] == 600 and manifest["height_px"] == 400
    layers = [np.asarray(Image.open(out / f"layer_{i:02d}.png")) for i in range(4)]
    assert worst_error(layers, sample.composite) <= 1
    with Image.open(out / "preview.png") as preview:
        assert np.abs(np.asarray(preview).astype(int) - sample.composite.astype(int)).max() <= 1
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporaries

    again = strata("refine", theirs, "--image", original, "-o", out)
    assert again.returncode == 2 and "already holds a decomposition" in again.stderr


def test_strata_refine_says_why_it_cannot(tmp_path):
    original = tmp_path / "poster.png"
    Image.fromarray(make_sample("flat", 300, 200, seed=1).composite, "RGBA").save(original)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = strata("refine", empty, "--image", original, "-o", tmp_path / "out")
    assert result.returncode == 2 and "holds no layers" in result.stderr and "Traceback" not in result.stderr
    square = tmp_path / "square"
    square.mkdir()
    Image.new("RGBA", (100, 100)).save(square / "layer_00.png")
    result = strata("refine", square, "--image", original, "-o", tmp_path / "out")
    assert result.returncode == 2 and "aspect ratios differ" in result.stderr


# ------------------------------------------------------------------------------------------- exports keep alpha

def test_pptx_and_psd_exports_keep_a_transparent_stack_transparent(tmp_path):
    from inference_server.exports.export_layout import Layout
    from inference_server.exports.pptx import write_pptx
    from inference_server.exports.psd import write_psd

    logo = transparent_logo()
    stack = decompose_refined(CpuDecomposer(use_ocr=False), Image.fromarray(logo, "RGBA"),
                              DecomposeParams(layers=3, backend="cpu"))
    layout = Layout.from_stack(stack)
    write_pptx(layout, tmp_path / "logo.pptx")
    write_psd(layout, tmp_path / "logo.psd")

    # PPTX, read as a zip of PNGs (not through python-pptx): every picture keeps an alpha channel with holes
    with zipfile.ZipFile(tmp_path / "logo.pptx") as archive:
        media = [name for name in archive.namelist() if name.startswith("ppt/media/")]
        assert len(media) == len(layout.layers)
        for name in media:
            with Image.open(io.BytesIO(archive.read(name))) as picture:
                assert picture.mode == "RGBA"
                assert (np.asarray(picture)[..., 3] < 255).any()

    # PSD, read by Pillow's own PSD decoder (not psd-tools, which wrote it): the merged image is transparent
    # where the logo is, and each layer carries its transparency
    with Image.open(tmp_path / "logo.psd") as psd:
        merged = np.asarray(psd.convert("RGBA"))
        assert psd.mode == "RGBA"
        assert np.abs(merged[..., 3].astype(int) - logo[..., 3].astype(int)).max() <= 1
        assert len(psd.layers) == len(layout.layers)
        for index in range(1, len(psd.layers) + 1):
            psd.seek(index)
            assert psd.mode == "RGBA" and (np.asarray(psd)[..., 3] < 255).any()
