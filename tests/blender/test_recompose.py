# SPDX-License-Identifier: GPL-3.0-or-later
"""Recomposition in 3D, checked against what the camera renders: the camera-view PPTX/PSD export, the layer list
operators and re-decomposing one layer into a sub-stack, all with the add-on's own real CPU server.

The exported files are read back in the server venv (python-pptx, psd-tools; Blender's Python has neither) and
flattened with the server's reference compositor; where LibreOffice is installed, the PPTX is also rendered by it.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from conftest import ADDON, REPO, SERVER_PYTHON, missing_tool, psnr_db  # noqa: E402
from test_animation import read_png, render_frame, write_sample_layers  # noqa: E402

WIDTH_PX, HEIGHT_PX = 160, 120
# Blender samples the scaled planes' texels nearest-neighbour, the reference compositor resamples them with a
# filter: edges of scaled layers differ a little, flat areas not at all.
# Measured: PPTX 42.0 dB, PSD 42.1 dB against the render; LibreOffice (snaps to whole pixels) 36.3 dB.
MIN_EXPORT_PSNR_DB = 39.0
MIN_LIBREOFFICE_PSNR_DB = 34.0

READ_BACK = r'''
import io, json, sys
import numpy as np
from PIL import Image
from inference_server.exports.export_layout import Layout, PlacedLayer
from inference_server.layers import write_png_atomic

path, kind, width_px, height_px, out_png = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
layers, shapes = [], []
if kind == "pptx":
    from pptx import Presentation
    from pptx.oxml.ns import qn
    from inference_server.exports.pptx import emu_per_px
    scale = emu_per_px(width_px, height_px)
    for shape in Presentation(path).slides[-1].shapes:
        rgba = np.asarray(Image.open(io.BytesIO(shape.image.blob)).convert("RGBA"))
        hidden = shape._element.nvPicPr.cNvPr.get("hidden") == "1"
        alpha = shape._element.blipFill.find(qn("a:blip")).find(qn("a:alphaModFix"))
        opacity = int(alpha.get("amt")) / 100000 if alpha is not None else 1.0
        layers.append(PlacedLayer(shape.name, rgba, shape.left / scale, shape.top / scale, shape.width / scale,
                                  shape.height / scale, opacity, not hidden))
else:
    from psd_tools import PSDImage
    psd = PSDImage.open(path)
    for layer in psd:
        rgba = np.asarray(layer.topil().convert("RGBA"))
        left, top, right, bottom = layer.bbox
        layers.append(PlacedLayer(layer.name, rgba, left, top, right - left, bottom - top, layer.opacity / 255,
                                  layer.visible))
write_png_atomic(out_png, Layout(width_px, height_px, layers).render())
print(json.dumps([{"name": l.name, "visible": l.visible, "opacity": round(l.opacity, 3)} for l in layers]))
'''


def read_back(path, kind, work):
    """Flatten an exported file with the server's reference compositor → (H×W×4 float, shape list)."""
    out_png = work / f"{kind}_readback.png"
    result = subprocess.run([SERVER_PYTHON, "-c", READ_BACK, str(path), kind, str(WIDTH_PX), str(HEIGHT_PX),
                             str(out_png)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return read_png(out_png), json.loads(result.stdout.strip().splitlines()[-1])


def over_white(rgba):
    return rgba[..., :3] * rgba[..., 3:4] + (1.0 - rgba[..., 3:4])


@pytest.fixture
def stack(scene, local_server, tmp_path):
    from blender_addon.scene import planes

    paths, names = write_sample_layers(tmp_path / "layers", "flat", WIDTH_PX, HEIGHT_PX, seed=3)
    return planes.build_stack(bpy.context, paths, names, "local", "", "poster", depth_spacing_m=1.0)


@pytest.fixture(scope="module", autouse=True)
def stop_server_after():
    yield
    sys.modules[f"{ADDON}.connection"].stop_server()


def test_exported_camera_view_matches_the_render(stack, tmp_path):
    """Moved camera, a scaled + moved, a hidden and a half-transparent layer: PPTX and PSD show what Blender
    renders."""
    from blender_addon.scene.stack import stack_layers

    scene = bpy.context.scene
    background, shape_a, shape_b, text = stack_layers(stack)
    shape_a.strata.scale = 0.75  # shrunk about the frame centre (the layer list's Scale)
    shape_a.location.x += 0.4  # then grabbed sideways in the viewport
    shape_b.strata.opacity = 0.5
    text.hide_render = True
    assert bpy.ops.strata.animate_camera(preset='TRUCK_RIGHT', amplitude=0.4, duration_frames=10) == {'FINISHED'}
    rendered = over_white(render_frame(scene, tmp_path / "view.png", 11))

    results = {}
    for kind in ("PPTX", "PSD"):
        path = tmp_path / f"view.{kind.lower()}"
        assert bpy.ops.strata.export_view(kind=kind, filepath=str(path)) == {'FINISHED'}
        flat, shapes = read_back(path, kind.lower(), tmp_path)
        results[kind] = psnr_db(over_white(flat), rendered, peak=1.0)
        assert [s["name"] for s in shapes] == [background.name, shape_a.name, shape_b.name, text.name]
        assert [s["visible"] for s in shapes] == [True, True, True, False]
        assert shapes[2]["opacity"] == pytest.approx(0.5, abs=0.01)
        assert results[kind] >= MIN_EXPORT_PSNR_DB, f"{kind} export vs render: {results[kind]:.1f} dB"
    # The arrangement matters: the unmoved stack's layout would not match this render.
    untouched = over_white(read_png(Path(background.strata.source_path)))
    assert psnr_db(untouched, rendered, peak=1.0) < min(results.values()) - 5
    print(f"export vs render PSNR: {results}")

    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    if soffice is None:
        missing_tool("LibreOffice is not installed: the PPTX was checked by reading it back only")
    subprocess.run([soffice, f"-env:UserInstallation=file://{tmp_path / 'lo-profile'}", "--headless",
                    "--convert-to", "png", "--outdir", str(tmp_path / "lo"), str(tmp_path / "view.pptx")],
                   check=True, capture_output=True, timeout=180)
    office = bpy.data.images.load(str(tmp_path / "lo" / "view.png"))
    office.scale(WIDTH_PX, HEIGHT_PX)
    pixels = np.empty(WIDTH_PX * HEIGHT_PX * 4, np.float32)
    office.pixels.foreach_get(pixels)
    office_rgba = pixels.reshape(HEIGHT_PX, WIDTH_PX, 4)[::-1]
    office_psnr = psnr_db(over_white(office_rgba), rendered, peak=1.0)
    print(f"LibreOffice render vs Blender render: {office_psnr:.1f} dB")
    assert office_psnr >= MIN_LIBREOFFICE_PSNR_DB


def test_colour_adjustment_is_baked_into_the_export(stack, tmp_path):
    from blender_addon.scene.stack import stack_layers

    scene = bpy.context.scene
    background = stack_layers(stack)[0]
    background.strata.hue = 0.8
    background.strata.saturation = 0.6
    rendered = over_white(render_frame(scene, tmp_path / "hsv.png", 1))
    path = tmp_path / "hsv.psd"
    assert bpy.ops.strata.export_view(kind='PSD', filepath=str(path)) == {'FINISHED'}
    flat, _ = read_back(path, "psd", tmp_path)
    assert psnr_db(over_white(flat), rendered, peak=1.0) >= MIN_EXPORT_PSNR_DB


def test_export_failures_are_reported_and_nothing_is_written(stack, addon_prefs, tmp_path):
    """The export runs on a background thread (joined in background Blender): its failures still reach the
    operator's caller, with the reason, and leave no partial file."""
    import socket

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the export's folder should be")
    with pytest.raises(RuntimeError, match=f"cannot write {blocker / 'view.pptx'}"):
        bpy.ops.strata.export_view(kind='PPTX', filepath=str(blocker / "view.pptx"))
    assert bpy.context.scene.strata.job_status == "failed"

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    addon_prefs.connection = 'URL'
    addon_prefs.server_url = f"http://127.0.0.1:{port}"
    path = tmp_path / "view.psd"
    with pytest.raises(RuntimeError, match=f"cannot reach the Strata server at http://127.0.0.1:{port}"):
        bpy.ops.strata.export_view(kind='PSD', filepath=str(path))
    assert not path.exists() and not list(tmp_path.glob(".view.psd.*"))


def listed(scene, root):
    """The layer list's rows, top to bottom, as the panel's UIList shows them."""
    from blender_addon.panels_layers import layer_rows

    objects = list(scene.objects)
    shown, order = layer_rows(objects, root)
    rows = sorted(zip(order, objects, shown, strict=False), key=lambda row: row[0])
    return [obj for _, obj, visible in rows if visible]


def test_layer_list_reorders_by_depth_and_deletes(stack, tmp_path):
    from blender_addon.scene.stack import set_active_layer, stack_layers

    scene = bpy.context.scene
    background, shape_a, shape_b, text = stack_layers(stack)
    assert listed(scene, stack) == [text, shape_b, shape_a, background]  # front on top, no camera or root
    set_active_layer(bpy.context, shape_a)
    depth_a, depth_b = shape_a.strata.depth_m, shape_b.strata.depth_m
    assert bpy.ops.strata.layer_move(direction='UP') == {'FINISHED'}
    assert stack_layers(stack) == [background, shape_b, shape_a, text]
    assert listed(scene, stack) == [text, shape_a, shape_b, background]
    # Order and depth travel together: the layer now in front is also nearer the camera.
    assert (shape_a.strata.depth_m, shape_b.strata.depth_m) == (depth_b, depth_a)
    assert -shape_a.location.z == pytest.approx(depth_b)

    set_active_layer(bpy.context, text)
    assert bpy.ops.strata.layer_move(direction='UP') == {'CANCELLED'}  # already the front layer
    text_name = text.name
    assert bpy.ops.strata.layer_delete() == {'FINISHED'}
    layers = stack_layers(stack)
    assert [obj.strata.layer_index for obj in layers] == [0, 1, 2]
    assert text_name not in bpy.data.objects


def test_redecompose_layer_replaces_it_with_a_substack_that_renders_the_same(scene, local_server, sample_png,
                                                                            wait_for_job, tmp_path):
    from blender_addon.scene.stack import set_active_layer, stack_layers

    scene.strata.image_path = str(sample_png)
    scene.strata.layers_auto = False
    scene.strata.layers = 3
    assert bpy.ops.strata.decompose() == {'FINISHED'}
    assert wait_for_job(120).job_status == "succeeded"
    root = next(obj for obj in scene.objects if obj.strata.role == 'ROOT')
    before = render_frame(scene, tmp_path / "before.png", scene.frame_current)
    layers = stack_layers(root)
    target = layers[1]
    target_name, depth_m, spacing_m = target.name, target.strata.depth_m, root.strata.depth_spacing_m
    set_active_layer(bpy.context, target)
    bpy.ops.ed.undo_push(message="before re-decompose")

    assert bpy.ops.strata.redecompose_layer(layers=3) == {'FINISHED'}
    state = wait_for_job(120)
    assert state.job_status == "succeeded", state.job_message
    after_layers = stack_layers(root)
    subs = [obj for obj in after_layers if obj.strata.job_id != root.strata.job_id]
    assert len(subs) >= 2, "the CPU decomposer should split two differently coloured shapes"
    assert len(after_layers) == len(layers) - 1 + len(subs)
    assert after_layers[1:1 + len(subs)] == subs  # in the old layer's place in the order
    assert [obj.strata.layer_index for obj in after_layers] == list(range(len(after_layers)))
    assert target_name not in bpy.data.objects
    assert all(obj.name.startswith(f"{target_name} / ") for obj in subs)
    # Sub-layers sit around the old layer's depth, between its neighbours.
    assert all(abs(obj.strata.depth_m - depth_m) <= 0.25 * spacing_m + 1e-6 for obj in subs)
    assert all(a.strata.depth_m > b.strata.depth_m for a, b in zip(subs, subs[1:], strict=False))
    assert len({obj.strata.job_id for obj in subs}) == 1
    # The job ran on the server as a recursive child of the stack's job: no re-upload of the layer.
    connection = sys.modules[f"{ADDON}.connection"]
    client = connection.running_client(connection.settings_from_preferences(local_server))
    assert client.status(subs[0].strata.job_id)["parent"] == {"job": root.strata.job_id, "layer": 1}
    after = render_frame(scene, tmp_path / "after.png", scene.frame_current)
    assert psnr_db(after, before, peak=1.0) >= 35.0

    # The replacement is one undo step: Ctrl+Z brings the layer back, Redo the sub-layers (by name: undo re-reads
    # the data, old references are stale).
    sub_names = [obj.name for obj in subs]
    assert bpy.ops.ed.undo() == {'FINISHED'}
    assert target_name in bpy.data.objects and not any(name in bpy.data.objects for name in sub_names)
    assert bpy.ops.ed.redo() == {'FINISHED'}
    assert target_name not in bpy.data.objects and all(name in bpy.data.objects for name in sub_names)


def test_redecompose_uploads_the_layer_when_its_job_is_unknown(stack, wait_for_job):
    from blender_addon.scene.stack import set_active_layer, stack_layers

    shape_a = stack_layers(stack)[1]
    shape_a.strata.job_id = "not-a-job-on-this-server"
    set_active_layer(bpy.context, shape_a)
    assert bpy.ops.strata.redecompose_layer(layers=3) == {'FINISHED'}
    state = wait_for_job(120)
    assert state.job_status == "succeeded", state.job_message
    # A shape on a transparent background: at least the shape comes back, where the old plane was.
    layers = stack_layers(stack)
    assert len(layers) >= 4 and layers[0].name == "Background"
    assert all(obj.strata.job_id != "not-a-job-on-this-server" for obj in layers[1:-2])


def test_redecompose_with_neither_layer_file_nor_job_is_reported(stack, tmp_path):
    from blender_addon.scene.stack import set_active_layer, stack_layers

    shape_a = stack_layers(stack)[1]
    shape_a.strata.job_id = ""  # built from files, no server job behind it
    Path(bpy.path.abspath(shape_a.strata.source_path)).unlink()
    set_active_layer(bpy.context, shape_a)
    names = [obj.name for obj in stack_layers(stack)]
    with pytest.raises(RuntimeError, match=f"the layer image of '{shape_a.name}' is missing"):
        bpy.ops.strata.redecompose_layer(layers=2)
    assert [obj.name for obj in stack_layers(stack)] == names
    assert sys.modules[f"{ADDON}.job_watch"].active() is None
