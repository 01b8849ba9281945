# SPDX-License-Identifier: GPL-3.0-or-later
"""Relief inside layers: with depth maps beside the layers, planes become displaced grids that still render the
input exactly from the rest camera (Cycles and EEVEE), show parallax inside the layer when the camera moves, stay
between their neighbours, and go back to flat quads at Relief 0."""

import subprocess
import sys
import textwrap
from pathlib import Path

import bpy
import numpy as np
import pytest
from conftest import ADDON, REPO, SERVER_PYTHON, psnr_db, render_camera_view
from conftest import _wait_for_job as wait_for_job
from PIL import Image
from test_planes import HEIGHT_PX, WIDTH_PX, editor_composite, render_eevee_in_child, soft_layers, write_layers

PSNR_MIN_DB = 40.0


def _planes():
    return sys.modules[f"{ADDON}.scene.planes"]


def _stack():
    return sys.modules[f"{ADDON}.scene.stack"]


def write_depth_maps(folder, count, seed=1):
    """Per layer a 16-bit nearness map: a tilt plus a bump, different per layer (as the server writes them)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:HEIGHT_PX, 0:WIDTH_PX] / max(WIDTH_PX, HEIGHT_PX)
    for index in range(count):
        cx, cy = rng.uniform(0.2, 0.6, 2)
        nearness = 0.3 * x + 0.2 * y + 0.5 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 0.02)
        nearness = (nearness - nearness.min()) / (nearness.max() - nearness.min())
        Image.fromarray(np.rint(nearness * 65535).astype(np.uint16)).save(folder / f"depth_{index:02d}.png")


def textured(layers):
    """Stripes over every layer's colour, so a change of shape inside a layer shows in a render."""
    x = np.arange(WIDTH_PX)[None, :] + np.arange(HEIGHT_PX)[:, None] // 2
    stripes = np.where((x // 3) % 2 == 0, 1.0, 0.55)[..., None]
    return [np.dstack([np.rint(rgba[..., :3] * stripes).astype(np.uint8), rgba[..., 3]]) for rgba in layers]


def relief_stack(tmp_path, count=4, relief=1.0):
    layers = textured(soft_layers(count, seed=4))
    paths = write_layers(tmp_path, layers)
    write_depth_maps(tmp_path, count)
    root = _planes().build_stack(bpy.context, paths, [f"L{i}" for i in range(count)], "local", "", "relief",
                                 depth_spacing_m=0.5)
    for obj in _stack().stack_layers(root):
        obj.strata.relief = relief
    bpy.context.view_layer.update()
    return root, layers


def camera_space_distances(root, obj):
    """Distance along the rest camera's view axis of each vertex of ``obj``."""
    matrix = np.array(root.matrix_world.inverted() @ obj.matrix_world)
    co = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", co)
    points = co.reshape(-1, 3) @ matrix[:3, :3].T + matrix[:3, 3]
    return -points[:, 2]


def test_relief_keeps_the_rest_view_exact_in_cycles(scene, tmp_path):
    root, layers = relief_stack(tmp_path)
    assert all(len(obj.data.vertices) > 4 for obj in _stack().stack_layers(root)), "relief planes are grids"
    rendered = render_camera_view(scene, tmp_path / "cycles.png", samples=2)
    psnr = psnr_db(rendered, editor_composite(layers))
    print(f"cycles, 4 layers with relief 1.0: PSNR {psnr:.1f} dB vs the input")
    assert psnr >= PSNR_MIN_DB


EEVEE_RELIEF_SCRIPT = textwrap.dedent("""
    import sys
    repo, out, *paths = sys.argv[1:]
    sys.path.insert(0, repo)
    import bpy, addon_utils
    addon_utils.enable("blender_addon", default_set=True, handle_error=None)
    from blender_addon.scene import compat, planes
    from blender_addon.scene.stack import stack_layers
    scene = bpy.context.scene
    root = planes.build_stack(bpy.context, paths, [f"L{i}" for i in range(len(paths))], "local", "", "eevee",
                              depth_spacing_m=0.5)
    for obj in stack_layers(root):
        obj.strata.relief = 1.0
    assert all(len(obj.data.vertices) > 4 for obj in stack_layers(root))
    scene.render.engine = compat.eevee_engine_id()
    scene.eevee.taa_render_samples = 1
    scene.render.dither_intensity = 0.0
    scene.render.image_settings.color_mode = 'RGB'
    scene.render.filepath = out
    bpy.ops.render.render(write_still=True)
    import os
    os._exit(0)  # bpy 4.2-4.5 can crash or hang in its exit handlers (see conftest.pytest_unconfigure)
""")


def test_relief_keeps_the_rest_view_exact_in_eevee(addon, tmp_path):
    """EEVEE runs in a child process, as in test_planes: without an OpenGL/EGL driver it aborts the process."""
    layers = textured(soft_layers(4, seed=4))
    paths = write_layers(tmp_path, layers)
    write_depth_maps(tmp_path, 4)
    psnr = psnr_db(render_eevee_in_child(EEVEE_RELIEF_SCRIPT, paths, tmp_path), editor_composite(layers))
    print(f"eevee, 4 layers with relief 1.0: PSNR {psnr:.1f} dB vs the input")
    assert psnr >= PSNR_MIN_DB


def test_relief_stays_in_each_layers_slab_and_moves_with_the_camera(scene, tmp_path):
    root, _ = relief_stack(tmp_path)
    stack = _stack().stack_layers(root)
    ranges = [(d.min(), d.max()) for d in (camera_space_distances(root, obj) for obj in stack)]
    for (back_near, _), (_, front_far) in zip(ranges, ranges[1:], strict=False):
        assert front_far < back_near, f"layers cross: {ranges}"
    assert all(far - near > 0.2 for near, far in ranges), f"relief 1.0 uses most of the slab: {ranges}"
    # The rest view is the same; from a camera moved sideways the layer's own shape shows (the render changes
    # compared with the same move on flat planes).
    camera = scene.camera
    camera.location.x += 0.6
    bpy.context.view_layer.update()
    moved_relief = render_camera_view(scene, tmp_path / "moved_relief.png", samples=1)
    for obj in stack:
        obj.strata.relief = 0.0
    assert all(len(obj.data.vertices) == 4 for obj in stack), "relief 0 restores the flat quads"
    moved_flat = render_camera_view(scene, tmp_path / "moved_flat.png", samples=1)
    psnr = psnr_db(moved_relief, moved_flat)
    print(f"camera moved 0.6 m: relief vs flat PSNR {psnr:.1f} dB")
    assert psnr < 30.0


def test_relief_follows_relayout_and_without_a_depth_map_stays_flat(scene, tmp_path):
    root, _ = relief_stack(tmp_path, count=3)
    root.strata.depth_spacing_m = 1.5
    stack = _stack().stack_layers(root)
    ranges = [(d.min(), d.max()) for d in (camera_space_distances(root, obj) for obj in stack)]
    assert ranges[1][1] - ranges[1][0] > 0.8, "a wider spacing gives a deeper slab"
    root.strata.relief_all = 0.25  # one slider for the whole stack
    assert [obj.strata.relief for obj in stack] == pytest.approx([0.25] * 3)
    (tmp_path / "depth_02.png").unlink()
    stack[2].strata.relief = 0.5
    assert len(stack[2].data.vertices) == 4


@pytest.fixture
def tiny_depth_server(local_server, tmp_path_factory, monkeypatch):
    """The add-on's own server, restarted with a tiny random Depth Anything (built offline) as its depth model."""
    model = tmp_path_factory.mktemp("tiny-depth")
    subprocess.run([SERVER_PYTHON, str(REPO / "scripts" / "make_tiny_depth_anything.py"), str(model)], check=True,
                   cwd=REPO, timeout=300, capture_output=True)
    connection = sys.modules[f"{ADDON}.connection"]
    connection.stop_server()
    monkeypatch.setenv("STRATA_DEPTH_MODEL", str(model))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield model
    connection.stop_server()  # the next test's server starts without the tiny depth model


def test_decompose_with_depth_brings_depth_maps_that_relief_uses(scene, tiny_depth_server, sample_png, tmp_path):
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "poster.blend"))
    scene.strata.image_path = str(sample_png)
    scene.strata.layers_auto = False
    scene.strata.layers = 3
    scene.strata.depth = True
    assert bpy.ops.strata.decompose() == {'FINISHED'}
    settings = wait_for_job(120)
    assert settings.job_status == "succeeded", settings.job_message
    root = next(obj for obj in bpy.data.objects if obj.strata.role == 'ROOT')
    stack = _stack().stack_layers(root)
    for obj in stack:
        layer_path = Path(bpy.path.abspath(obj.strata.source_path))
        depth_path = layer_path.with_name(layer_path.name.replace("layer_", "depth_"))
        assert depth_path.is_file(), f"no depth map beside {layer_path}"
        with Image.open(depth_path) as image:
            assert image.mode == "I;16" and image.size == (160, 120)
        obj.strata.relief = 1.0
        assert len(obj.data.vertices) > 4
    rendered = render_camera_view(scene, tmp_path / "render.png", samples=2)
    psnr = psnr_db(rendered, np.asarray(Image.open(sample_png).convert("RGB")))
    print(f"decomposed with depth, relief 1.0 on every layer: PSNR {psnr:.1f} dB vs the input")
    assert psnr >= PSNR_MIN_DB


def test_depth_maps_are_read_at_16_bit_precision_without_colour_conversion(addon, tmp_path):
    write_depth_maps(tmp_path, 1)
    path = tmp_path / "depth_00.png"
    read = sys.modules[f"{ADDON}.scene.relief"].load_nearness(str(path))
    expected = np.asarray(Image.open(path), np.float64) / 65535.0
    assert read.shape == expected.shape
    assert np.abs(read - expected).max() < 2e-5, "16-bit values, top row first, no sRGB→linear conversion"
