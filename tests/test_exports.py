# SPDX-License-Identifier: GPL-3.0-or-later
"""Exports: the files a user opens in PowerPoint/Photoshop show the layers where they were, named, in order.

Every exporter is checked against ``Layout.render()``; the PowerPoint file is also rendered by LibreOffice.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import missing_tool, png_bytes_of
from PIL import Image
from pptx import Presentation
from pptx.oxml.ns import qn
from psd_tools import PSDImage

from benchmarks.samples import make_flat_poster
from inference_server.cli import main as strata_main
from inference_server.errors import ImageTooLarge, InvalidInput
from inference_server.exports.archive import archive_bytes, write_archive
from inference_server.exports.export_layout import Layout, PlacedLayer, load_job_layout
from inference_server.exports.pptx import build_presentation, emu_per_px, pptx_bytes, write_pptx
from inference_server.exports.psd import psd_bytes, write_psd
from inference_server.layers import Layer, LayerStack, png_bytes

WIDTH_PX, HEIGHT_PX = 320, 240
NAMES = ["Paper", "Shape A", "Shape B", "Title"]
# LibreOffice 7.4 vs Layout.render(), measured: the poster as decomposed 73.5 dB (max error 1 level); the edited
# poster 35.9 dB. LibreOffice snaps pictures to whole pixels while Layout.render() places them sub-pixel exact
# (as PowerPoint does at any zoom), so the 0.4 px offset and the 1.5× rescale differ along vertical edges only.
MIN_LIBREOFFICE_PSNR_DB = {"unedited": 70.0, "edited": 34.5}
MAX_EDGE_PIXELS_FRACTION = 0.015  # pixels off by more than 8 levels (of 255), edited poster: measured 0.6 %


def over_white(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[..., 3:].astype(np.float64) / 255.0
    return rgba[..., :3].astype(np.float64) * alpha + 255.0 * (1.0 - alpha)


def premultiplied(rgba: np.ndarray) -> np.ndarray:
    return rgba[..., :3].astype(np.float64) * rgba[..., 3:].astype(np.float64) / 255.0


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def poster_stack() -> LayerStack:
    _, layers = make_flat_poster(WIDTH_PX, HEIGHT_PX, seed=3)
    assert len(layers) == len(NAMES)
    return LayerStack([Layer(rgba, name) for rgba, name in zip(layers, NAMES, strict=False)], backend="test")


@pytest.fixture(scope="module")
def edited_layout(poster_stack) -> Layout:
    """The poster as a user might leave it in Blender: moved, scaled, half transparent, one layer hidden."""
    layout = Layout.from_stack(poster_stack)
    paper, shape_a, shape_b, title = layout.layers
    return replace(layout, layers=[
        paper,
        replace(shape_a, x_px=shape_a.x_px + 30.4, y_px=shape_a.y_px - 12.0,
                width_px=shape_a.width_px * 1.5, height_px=shape_a.height_px * 1.25),
        replace(shape_b, opacity=0.5, x_px=-20.0),  # half transparent and partly off the left edge
        replace(title, visible=False),
    ])


def test_from_stack_crops_each_layer_and_renders_the_original(poster_stack):
    layout = Layout.from_stack(poster_stack)
    assert [layer.name for layer in layout.layers] == NAMES
    for placed, layer in zip(layout.layers, poster_stack.layers, strict=False):
        x, y, w, h = layer.bbox_px
        assert (placed.x_px, placed.y_px, placed.width_px, placed.height_px) == (x, y, w, h)
        assert placed.rgba.shape[:2] == (h, w)
    np.testing.assert_array_equal(layout.render(), poster_stack.composite())


def test_from_stack_skips_empty_layers(poster_stack):
    empty = Layer(np.zeros((HEIGHT_PX, WIDTH_PX, 4), np.uint8), "Nothing")
    stack = LayerStack([*poster_stack.layers[:2], empty, *poster_stack.layers[2:]])
    assert "Nothing" not in [layer.name for layer in Layout.from_stack(stack).layers]


def test_render_honours_position_scale_opacity_and_visibility():
    white = np.full((10, 10, 4), 255, np.uint8)
    red = np.zeros((2, 2, 4), np.uint8)
    red[..., 0], red[..., 3] = 255, 255
    layout = Layout(10, 10, [
        PlacedLayer("bg", white, 0, 0, 10, 10),
        PlacedLayer("red", red, 4, 2, 4, 6),  # 2×2 stretched to 4×6 at (4, 2)
        PlacedLayer("hidden", red, 0, 0, 10, 10, visible=False),
    ])
    out = layout.render()
    inside = out[2:8, 4:8]
    assert (inside == [255, 0, 0, 255]).all()
    outside = np.ones((10, 10), bool)
    outside[2:8, 4:8] = False
    assert (out[outside] == [255, 255, 255, 255]).all()
    half = replace(layout, layers=[layout.layers[0], replace(layout.layers[1], opacity=0.5)]).render()
    np.testing.assert_array_equal(half[4, 5], [255, 128, 128, 255])


def test_render_places_sub_pixel_with_hard_edges():
    white = np.full((4, 4, 4), 255, np.uint8)
    out = Layout(10, 6, [PlacedLayer("w", white, 2.5, 1, 4, 4)]).render()
    np.testing.assert_array_equal(out[2, :, 3], [0, 0, 128, 255, 255, 255, 128, 0, 0, 0])
    # Scaled up to fill the frame, a background stays opaque right to the frame's edges (no soft fringe).
    _, layers = make_flat_poster(80, 60, seed=0)
    background = PlacedLayer("bg", layers[0], 0, 0, WIDTH_PX, HEIGHT_PX)
    assert (Layout(WIDTH_PX, HEIGHT_PX, [background]).render()[..., 3] == 255).all()
    psd = PSDImage.open(io.BytesIO(psd_bytes(Layout(WIDTH_PX, HEIGHT_PX, [background]))))
    assert (np.asarray(psd.composite())[..., 3] == 255).all()


def test_a_layer_scaled_far_past_the_frame_costs_only_the_kept_pixels():
    dot = np.zeros((8, 8, 4), np.uint8)
    dot[..., 1], dot[..., 3] = 200, 255
    huge = PlacedLayer("huge", dot, -400_000, -300_000, 900_000, 700_000)  # 8 px shown 100 000× larger
    layout = Layout(64, 48, [huge])
    assert (layout.render() == [0, 200, 0, 255]).all()
    psd = PSDImage.open(io.BytesIO(psd_bytes(layout)))
    assert (psd[0].left, psd[0].top, psd[0].width, psd[0].height) == (-32, -24, 128, 96)  # half a frame around


def layout_json(layout: Layout) -> tuple[dict, dict[int, bytes]]:
    data = {"width_px": layout.width_px, "height_px": layout.height_px, "name": layout.name, "layers": [
        {"name": layer.name, "x_px": layer.x_px, "y_px": layer.y_px, "width_px": layer.width_px,
         "height_px": layer.height_px, "opacity": layer.opacity, "visible": layer.visible}
        for layer in layout.layers]}
    return data, {index: png_bytes(layer.rgba) for index, layer in enumerate(layout.layers)}


def test_from_json_round_trips(edited_layout):
    data, images = layout_json(edited_layout)
    parsed = Layout.from_json(data, images)
    np.testing.assert_array_equal(parsed.render(), edited_layout.render())
    assert [layer.visible for layer in parsed.layers] == [True, True, True, False]


@pytest.mark.parametrize("mutate, message", [
    (lambda d, i: i.pop(2), "missing image part(s) ['layer_2']"),
    (lambda d, i: i.update({7: i[0]}), "image part(s) ['layer_7'] have no layout entry"),
    (lambda d, i: d["layers"][1].update(opacity=1.5), "layers[1].opacity must be between 0 and 1, got 1.5"),
    (lambda d, i: d["layers"][0].update(width_px=0), "layers[0].width_px must be greater than 0"),
    (lambda d, i: d["layers"][0].update(x_px="left"), "layers[0].x_px must be a finite number"),
    (lambda d, i: d["layers"][0].update(visible="yes"), "layers[0].visible must be true or false"),
    (lambda d, i: d["layers"][0].update(colour=1), "layers[0]: unknown key(s) ['colour']"),
    (lambda d, i: d.update(width_px=0), "layout width_px must be between 1 and 8192, got 0"),
    (lambda d, i: d.update(height_px=2.5), "layout height_px must be an integer number of pixels"),
    (lambda d, i: d.update(layers=[]), "non-empty 'layers' list"),
    (lambda d, i: d.update(layers=[d["layers"][0]] * 65), "layout has 65 layers; at most 64"),
    (lambda d, i: i.update({0: b"GIF89a not really"}), "layer_0 is not a readable image"),
    (lambda d, i: i.update({0: i[0][:len(i[0]) // 2]}), "layer_0 could not be decoded"),
    (lambda d, i: i.update({0: png_bytes_of(Image.new("RGB", (4, 4)), "JPEG")}), "layer_0 must be a PNG, got JPEG"),
])
def test_from_json_rejects_bad_input_with_a_teaching_error(edited_layout, mutate, message):
    data, images = layout_json(edited_layout)
    data = json.loads(json.dumps(data))
    mutate(data, images)
    with pytest.raises(InvalidInput) as caught:
        Layout.from_json(data, images)
    assert message in str(caught.value)


def test_from_json_converts_palette_and_16_bit_layer_pngs_like_uploads():
    # Optimised PNGs are often palette images with a transparent index; 16-bit grey comes from image editors.
    palette = Image.new("P", (4, 2), 1)
    palette.putpalette([0, 0, 0, 200, 30, 40] + [0] * 762)
    palette.putpixel((0, 0), 0)
    grey16 = Image.fromarray(np.full((2, 4), 65535, np.uint16))
    entry = {"x_px": 0, "y_px": 0, "width_px": 4, "height_px": 2}
    layout = Layout.from_json({"width_px": 4, "height_px": 2, "layers": [entry, entry]},
                              {0: png_bytes_of(grey16), 1: png_bytes_of(palette, transparency=0)})
    assert layout.layers[0].rgba[0, 0].tolist() == [255, 255, 255, 255]
    assert layout.layers[1].rgba[0, 0].tolist() == [0, 0, 0, 0]  # the transparent palette index
    assert layout.layers[1].rgba[0, 1].tolist() == [200, 30, 40, 255]


def test_from_json_refuses_oversized_layer_images_before_decoding_them():
    entry = {"x_px": 0, "y_px": 0, "width_px": 10, "height_px": 10}
    with pytest.raises(ImageTooLarge, match="9000×9000"):
        Layout.from_json({"width_px": 10, "height_px": 10, "layers": [entry]},
                         {0: png_bytes_of(Image.new("L", (9000, 9000)))})
    # Each under the per-layer limit, together too much: a few kB of flat PNG that would decode to 6 GB.
    flat = png_bytes_of(Image.new("L", (8000, 8000)))
    with pytest.raises(ImageTooLarge, match="send fewer layers or render them smaller"):
        Layout.from_json({"width_px": 10, "height_px": 10, "layers": [entry] * 24}, dict.fromkeys(range(24), flat))


# ------------------------------------------------------------------------------------------------ PowerPoint


def test_pptx_places_named_pictures_back_to_front_at_their_pixels(edited_layout, tmp_path):
    path = tmp_path / "poster.pptx"
    write_pptx(edited_layout, path)
    presentation = Presentation(str(path))
    assert len(presentation.slides) == 1
    scale = emu_per_px(WIDTH_PX, HEIGHT_PX)
    assert scale == 9525  # 96 dpi
    assert (presentation.slide_width, presentation.slide_height) == (WIDTH_PX * 9525, HEIGHT_PX * 9525)
    shapes = list(presentation.slides[0].shapes)
    assert [shape.name for shape in shapes] == NAMES  # the shape tree's order is the z-order, back first
    for shape, layer in zip(shapes, edited_layout.cropped().layers, strict=False):
        assert shape.shape_type == 13  # MSO_SHAPE_TYPE.PICTURE
        assert abs(shape.left / scale - layer.x_px) <= 1 and abs(shape.top / scale - layer.y_px) <= 1
        assert abs(shape.width / scale - layer.width_px) <= 1 and abs(shape.height / scale - layer.height_px) <= 1
        with Image.open(io.BytesIO(shape.image.blob)) as image:
            np.testing.assert_array_equal(np.asarray(image.convert("RGBA")), layer.rgba)  # pixels untouched
        c_nv_pr = shape._element.nvPicPr.cNvPr
        assert (c_nv_pr.get("hidden") == "1") == (not layer.visible)
        alpha = shape._element.blipFill.find(qn("a:blip")).find(qn("a:alphaModFix"))
        if layer.opacity < 1:
            assert int(alpha.get("amt")) == round(layer.opacity * 100000)
        else:
            assert alpha is None


def test_pptx_with_original_adds_a_first_slide(poster_stack):
    layout = Layout.from_stack(poster_stack, original=poster_stack.composite())
    presentation = Presentation(io.BytesIO(pptx_bytes(layout, with_original=True)))
    assert len(presentation.slides) == 2
    (original,) = presentation.slides[0].shapes
    assert original.name == "Original"
    assert (original.width, original.height) == (presentation.slide_width, presentation.slide_height)
    with Image.open(io.BytesIO(original.image.blob)) as image:
        np.testing.assert_array_equal(np.asarray(image.convert("RGBA")), poster_stack.composite())
    assert [shape.name for shape in presentation.slides[1].shapes] == NAMES


@pytest.mark.parametrize("size_px, inches", [((8000, 4000), (56.0, 28.0)), ((48, 24), (2.0, 1.0))])
def test_pptx_slide_stays_within_powerpoint_limits(size_px, inches):
    width_px, height_px = size_px
    layer = PlacedLayer("dot", np.full((4, 4, 4), 255, np.uint8), 0, 0, 4, 4)
    presentation = build_presentation(Layout(width_px, height_px, [layer]))
    assert presentation.slide_width / 914400 == pytest.approx(inches[0], abs=1e-3)
    assert presentation.slide_height / 914400 == pytest.approx(inches[1], abs=1e-3)


def test_pptx_refuses_a_frame_too_elongated_for_a_slide():
    layer = PlacedLayer("line", np.full((1, 4, 4), 255, np.uint8), 0, 0, 4, 1)
    with pytest.raises(InvalidInput, match="too elongated"):
        pptx_bytes(Layout(8000, 100, [layer]))


@pytest.fixture(scope="module")
def soffice() -> str:
    path = shutil.which("soffice") or shutil.which("libreoffice")
    if path is None:
        missing_tool("LibreOffice (soffice) is not installed: apt-get install -y libreoffice-impress")
    return path


def libreoffice_pngs(soffice: str, pptx_paths: list[Path], work: Path) -> list[np.ndarray]:
    """Render each deck's first slide with one LibreOffice run (own profile folder, so parallel runs don't clash)."""
    subprocess.run(
        [soffice, f"-env:UserInstallation=file://{work / 'lo-profile'}", "--headless", "--convert-to", "png",
         "--outdir", str(work / "png"), *map(str, pptx_paths)],
        check=True, capture_output=True, timeout=120)
    images = []
    for path in pptx_paths:
        with Image.open(work / "png" / (path.stem + ".png")) as image:
            if image.size != (WIDTH_PX, HEIGHT_PX):
                image = image.resize((WIDTH_PX, HEIGHT_PX), Image.Resampling.LANCZOS)
            images.append(np.asarray(image.convert("RGBA")))
    return images


def test_pptx_rendered_by_libreoffice_matches_the_layout_render(poster_stack, edited_layout, soffice, tmp_path):
    layouts = {"unedited": Layout.from_stack(poster_stack), "edited": edited_layout}
    for name, layout in layouts.items():
        write_pptx(layout, tmp_path / f"{name}.pptx")
    rendered = libreoffice_pngs(soffice, [tmp_path / f"{name}.pptx" for name in layouts], tmp_path)
    for (name, layout), image in zip(layouts.items(), rendered, strict=False):
        got, expected = over_white(image), over_white(layout.render())
        psnr = psnr_db(got, expected)
        print(f"LibreOffice render of the {name} PPTX vs the layout render: {psnr:.1f} dB")
        assert psnr >= MIN_LIBREOFFICE_PSNR_DB[name], f"{name}: {psnr:.1f} dB"
        assert (np.abs(got - expected).max(axis=2) > 8).mean() <= MAX_EDGE_PIXELS_FRACTION, name

    # The hidden title stays hidden and the half-transparent shape is blended, not dropped or opaque.
    got, expected = over_white(rendered[1]), over_white(edited_layout.render())
    title = edited_layout.layers[3]
    title_box = (slice(int(title.y_px), int(title.y_px + title.height_px)),
                 slice(int(title.x_px), int(title.x_px + title.width_px)))
    shown = replace(edited_layout, layers=[*edited_layout.layers[:3], replace(title, visible=True)])
    with_title = over_white(shown.render())
    assert np.abs(got[title_box] - expected[title_box]).mean() < \
        0.25 * np.abs(got[title_box] - with_title[title_box]).mean()
    shape_b = edited_layout.cropped().layers[2]
    ys, xs = np.nonzero(shape_b.rgba[..., 3] == 255)
    ys, xs = ys + round(shape_b.y_px), xs + round(shape_b.x_px)
    keep = (xs >= 0) & (xs < WIDTH_PX)
    ys, xs = ys[keep], xs[keep]
    opaque = over_white(replace(edited_layout, layers=[
        *edited_layout.layers[:2], replace(edited_layout.layers[2], opacity=1.0), edited_layout.layers[3]]).render())
    assert np.abs(got[ys, xs] - expected[ys, xs]).mean() < 3
    assert np.abs(got[ys, xs] - opaque[ys, xs]).mean() > 15


# ------------------------------------------------------------------------------------------------ Photoshop


def test_psd_has_named_offset_layers_and_a_matching_composite(edited_layout, tmp_path):
    path = tmp_path / "poster.psd"
    write_psd(edited_layout, path)
    psd = PSDImage.open(path)
    assert psd.size == (WIDTH_PX, HEIGHT_PX)
    layers = list(psd)  # psd-tools lists the bottom layer first
    assert [layer.name for layer in layers] == NAMES
    for psd_layer, placed in zip(layers, edited_layout.cropped().layers, strict=False):
        left, top, width, height = placed.pixel_rect()
        assert (psd_layer.left, psd_layer.top, psd_layer.width, psd_layer.height) == (left, top, width, height)
        assert psd_layer.opacity == round(placed.opacity * 255)
        assert psd_layer.visible == placed.visible
    assert layers[2].left < 0  # the part outside the canvas is kept, as Photoshop keeps it
    expected = premultiplied(edited_layout.render())
    stored = np.asarray(psd.composite())  # the merged image written into the file
    assert stored.shape == (HEIGHT_PX, WIDTH_PX, 4)
    assert np.abs(premultiplied(stored) - expected).max() <= 2.0
    recomposited = np.asarray(psd.composite(ignore_preview=True))  # from the layers, as an editor would
    assert np.abs(premultiplied(recomposited) - expected).max() <= 2.0


def test_psd_reads_back_in_imagemagick(edited_layout, tmp_path):
    """An independent PSD reader (not psd-tools, which wrote it) sees the layers, offsets and merged image."""
    identify, convert = shutil.which("identify"), shutil.which("magick") or shutil.which("convert")
    if identify is None or convert is None:
        missing_tool("ImageMagick is not installed: apt-get install -y imagemagick")
    write_psd(edited_layout, tmp_path / "poster.psd")
    listing = subprocess.run([identify, "-format", "%s|%X|%Y|%w|%h|%l\n", str(tmp_path / "poster.psd")],
                             check=True, capture_output=True, text=True, timeout=60).stdout.splitlines()
    rows = [line.split("|") for line in listing]
    assert [row[5] for row in rows[1:]] == NAMES  # scene 0 is the merged image
    for row, placed in zip(rows[1:], edited_layout.cropped().layers, strict=False):
        left, top, width, height = placed.pixel_rect()
        assert (int(row[1]), int(row[2]), int(row[3]), int(row[4])) == (left, top, width, height)
    subprocess.run([convert, f"{tmp_path / 'poster.psd'}[0]", str(tmp_path / "merged.png")], check=True,
                   capture_output=True, timeout=60)
    with Image.open(tmp_path / "merged.png") as image:
        merged = np.asarray(image.convert("RGBA"))
    assert np.abs(premultiplied(merged) - premultiplied(edited_layout.render())).max() <= 2.0


def test_psd_keeps_unicode_layer_names():
    name = "Tête — couche № 1, a name longer than thirty-one characters"
    layer = PlacedLayer(name, np.full((4, 4, 4), 200, np.uint8), 1, 1, 4, 4)
    psd = PSDImage.open(io.BytesIO(psd_bytes(Layout(8, 8, [layer]))))
    assert psd[0].name == layer.name


# ------------------------------------------------------------------------------------------------ job folders


def save_job(stack: LayerStack, folder: Path, job_state: dict | None = None) -> Path:
    stack.save(folder)
    Image.fromarray(stack.composite()).save(folder / "input.png")
    if job_state is not None:
        (folder / "job.json").write_text(json.dumps(job_state))
    return folder


def test_zip_holds_layers_manifest_and_preview(poster_stack, tmp_path):
    folder = save_job(poster_stack, tmp_path / "job")
    write_archive(folder, tmp_path / "job.zip")
    with zipfile.ZipFile(tmp_path / "job.zip") as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read("job/manifest.json"))
        for entry, layer in zip(manifest["layers"], poster_stack.layers, strict=False):
            with Image.open(io.BytesIO(archive.read(f"job/{entry['file']}"))) as image:
                np.testing.assert_array_equal(np.asarray(image), layer.rgba)
        with Image.open(io.BytesIO(archive.read("job/preview.png"))) as image:
            np.testing.assert_array_equal(np.asarray(image), poster_stack.composite())
    assert "job/input.png" in names and len(names) == len(NAMES) + 3


def test_a_recursive_child_folder_exports_like_any_job(poster_stack, tmp_path):
    # A child job decomposes layer 1 of its parent; its layers are full-frame like any job's.
    shape_a = poster_stack.layers[1].rgba
    halves = [shape_a.copy(), shape_a.copy()]
    halves[0][:, WIDTH_PX // 2 + 60:, 3] = 0
    halves[1][:, :WIDTH_PX // 2 + 60, 3] = 0
    child = LayerStack([Layer(h) for h in halves], parent={"job": "0" * 32, "layer": 1})
    folder = save_job(child, tmp_path / ("1" * 32), {"id": "1" * 32, "status": "succeeded"})
    layout = load_job_layout(folder)
    assert "layer 1 of " + "0" * 32 in layout.name
    np.testing.assert_array_equal(layout.render(), child.composite())
    assert [shape.name for shape in Presentation(io.BytesIO(pptx_bytes(layout))).slides[0].shapes] == \
        ["Background", "Layer 1"]
    assert len(list(PSDImage.open(io.BytesIO(psd_bytes(layout))))) == 2
    assert len(zipfile.ZipFile(io.BytesIO(archive_bytes(folder))).namelist()) == 2 + 3


def test_zip_nests_children_and_skips_gone_or_looping_ones(poster_stack, tmp_path):
    # Server layout: job folders side by side, children named by job id. The grandchild lists its grandparent
    # (a hand-edited loop) and the parent lists a child whose folder was deleted: both are left out, not fatal.
    parent_id, child_id, grandchild_id, gone_id = ("a" * 32, "b" * 32, "c" * 32, "d" * 32)
    save_job(poster_stack, tmp_path / parent_id)
    save_job(LayerStack(poster_stack.layers[:2], parent={"job": parent_id, "layer": 1}), tmp_path / child_id)
    save_job(LayerStack(poster_stack.layers[:1], parent={"job": child_id, "layer": 0}), tmp_path / grandchild_id)
    for folder, children in ((parent_id, {"1": [child_id, gone_id]}), (child_id, {"0": [grandchild_id]}),
                             (grandchild_id, {"0": [parent_id]})):
        manifest = json.loads((tmp_path / folder / "manifest.json").read_text())
        (tmp_path / folder / "manifest.json").write_text(json.dumps({**manifest, "children": children}))
    with zipfile.ZipFile(io.BytesIO(archive_bytes(tmp_path / parent_id, top_folder="tree"))) as archive:
        assert json.loads(archive.read("tree/manifest.json"))["children"] == {"1": [f"children/{child_id}"]}
        nested = f"tree/children/{child_id}/children/{grandchild_id}"
        assert json.loads(archive.read(f"tree/children/{child_id}/manifest.json"))["children"] == \
            {"0": [f"children/{grandchild_id}"]}
        assert json.loads(archive.read(f"{nested}/manifest.json"))["children"] == {}
        assert f"{nested}/layer_00.png" in archive.namelist()
        assert not any(gone_id in name for name in archive.namelist())


def test_unfinished_or_broken_job_folders_get_a_clear_error(poster_stack, tmp_path):
    running = tmp_path / "running"
    running.mkdir()
    (running / "job.json").write_text(json.dumps({"status": "running"}))
    with pytest.raises(InvalidInput, match="job status is 'running'; only a succeeded job can be exported"):
        load_job_layout(running)
    with pytest.raises(InvalidInput, match="has no manifest.json: not a finished decomposition folder"):
        archive_bytes(tmp_path)
    broken = save_job(poster_stack, tmp_path / "broken")
    (broken / "layer_02.png").unlink()
    with pytest.raises(InvalidInput, match=r"lists \['layer_02.png'\] but the file\(s\) are missing"):
        load_job_layout(broken)


# ------------------------------------------------------------------------------------------------ CLI


def run_export_cli(argv: list[str]) -> int:
    return strata_main(["export", *argv])


def test_cli_writes_all_three_files(poster_stack, tmp_path, capsys):
    folder = save_job(poster_stack, tmp_path / "job")
    out = tmp_path / "out"
    status = run_export_cli([str(folder), "--pptx", str(out / "a.pptx"), "--psd", str(out / "a.psd"),
                             "--zip", str(out / "a.zip"), "--with-original"])
    assert status == 0
    assert len(Presentation(str(out / "a.pptx")).slides) == 2
    assert [layer.name for layer in PSDImage.open(out / "a.psd")] == NAMES
    assert zipfile.is_zipfile(out / "a.zip")
    assert "wrote" in capsys.readouterr().out


def test_strata_export_runs_as_a_command(poster_stack, tmp_path):
    folder = save_job(poster_stack, tmp_path / "job")
    result = subprocess.run([sys.executable, "-m", "inference_server", "export", str(folder), "--psd",
                             str(tmp_path / "a.psd")], capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    assert [layer.name for layer in PSDImage.open(tmp_path / "a.psd")] == NAMES


def test_cli_explains_what_is_wrong(tmp_path, capsys):
    assert run_export_cli([str(tmp_path), "--zip", str(tmp_path / "x.zip")]) == 2
    assert "has no manifest.json" in capsys.readouterr().err
    assert run_export_cli([str(tmp_path)]) == 2
    assert "pass at least one of --pptx" in capsys.readouterr().err
    assert not (tmp_path / "x.zip").exists()
