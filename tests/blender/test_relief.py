"""Relief inside layers: with depth maps beside the layers, planes become displaced grids that still render the
input exactly from the rest camera (Cycles and EEVEE), show parallax inside the layer when the camera moves, stay
between their neighbours, and go back to flat quads at Relief 0."""

import sys

import numpy as np
import pytest
from PIL import Image

import bpy

from conftest import ADDON, psnr_db, render_camera_view
from test_planes import editor_composite, soft_layers, write_layers, WIDTH_PX, HEIGHT_PX

PSNR_MIN_DB = 40.0


def _planes():
    return sys.modules[f"{ADDON}.scene.planes"]


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
    for obj in _planes().stack_layers(root):
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


@pytest.mark.parametrize("engine", ["CYCLES", "EEVEE"])
def test_relief_keeps_the_rest_view_exact(scene, tmp_path, engine):
    root, layers = relief_stack(tmp_path)
    assert all(len(obj.data.vertices) > 4 for obj in _planes().stack_layers(root)), "relief planes are grids"
    if engine == "CYCLES":
        rendered = render_camera_view(scene, tmp_path / "cycles.png", samples=2)
    else:
        scene.render.engine = 'BLENDER_EEVEE' if bpy.app.version >= (5, 0, 0) else 'BLENDER_EEVEE_NEXT'
        scene.eevee.taa_render_samples = 1
        scene.render.image_settings.file_format = 'PNG'
        scene.render.image_settings.color_mode = 'RGB'
        scene.render.filepath = str(tmp_path / "eevee.png")
        bpy.ops.render.render(write_still=True)
        rendered = np.asarray(Image.open(tmp_path / "eevee.png").convert("RGB"))
    psnr = psnr_db(rendered, editor_composite(layers))
    print(f"{engine.lower()}, 4 layers with relief 1.0: PSNR {psnr:.1f} dB vs the input")
    assert psnr >= PSNR_MIN_DB


def test_relief_stays_in_each_layers_slab_and_moves_with_the_camera(scene, tmp_path):
    root, _ = relief_stack(tmp_path)
    stack = _planes().stack_layers(root)
    ranges = [(d.min(), d.max()) for d in (camera_space_distances(root, obj) for obj in stack)]
    for (back_near, _), (_, front_far) in zip(ranges, ranges[1:]):
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
    stack = _planes().stack_layers(root)
    ranges = [(d.min(), d.max()) for d in (camera_space_distances(root, obj) for obj in stack)]
    assert ranges[1][1] - ranges[1][0] > 0.8, "a wider spacing gives a deeper slab"
    (tmp_path / "depth_02.png").unlink()
    stack[2].strata.relief = 0.5
    assert len(stack[2].data.vertices) == 4
