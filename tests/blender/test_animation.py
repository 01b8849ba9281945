# SPDX-License-Identifier: GPL-3.0-or-later
"""Parallax camera moves in real Blender: frame 1 renders the original, keys evaluate to the planned path.

Renders are Cycles on the CPU at the sample's own tiny size (64×48), so every preset is rendered in well under a
second. The sample layers come from ``benchmarks.samples`` (written by the server venv: bpy's numpy can't
import scikit-image).
"""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from conftest import REPO, SERVER_PYTHON, psnr_db  # noqa: E402
from mathutils import Vector  # noqa: E402  (bpy first: mathutils comes with it)

WIDTH_PX, HEIGHT_PX = 64, 48
# The stack's own camera view reproduces the input at ~50 dB (a few anti-aliased edge pixels off by a filter
# sample); the rest frame of every move must render exactly that view again.
MIN_REST_PSNR_DB = 45.0
SAME_RENDER = 1.5 / 255


def write_sample_layers(folder: Path, kind="flat", width_px=WIDTH_PX, height_px=HEIGHT_PX, seed=0):
    """layer_XX.png + composite.png of a sample, written by the server venv; → (layer paths, names)."""
    code = (
        "import sys, json\n"
        "from benchmarks.samples import make_sample\n"
        "from inference_server.layers import write_png_atomic\n"
        f"s = make_sample({kind!r}, {width_px}, {height_px}, {seed})\n"
        "for i, layer in enumerate(s.layers): write_png_atomic(sys.argv[1] + f'/layer_{i:02d}.png', layer)\n"
        "write_png_atomic(sys.argv[1] + '/composite.png', s.composite)\n"
        "print(json.dumps(s.names))\n")
    folder.mkdir(parents=True, exist_ok=True)
    out = subprocess.run([SERVER_PYTHON, "-c", code, str(folder)], cwd=REPO, check=True, capture_output=True,
                         text=True, timeout=120)
    names = json.loads(out.stdout.strip().splitlines()[-1])
    return [str(folder / f"layer_{i:02d}.png") for i in range(len(names))], names


def compat():
    """The add-on's Blender 4.2-5.0 differences (media type, EEVEE's engine id)."""
    from blender_addon.scene import compat

    return compat


def read_png(path) -> np.ndarray:
    """H×W×4 float in [0, 1], top row first, as stored (no colour management)."""
    image = bpy.data.images.load(str(path), check_existing=False)
    image.colorspace_settings.name = 'Non-Color'
    width_px, height_px = image.size
    pixels = np.empty(width_px * height_px * 4, np.float32)
    image.pixels.foreach_get(pixels)
    bpy.data.images.remove(image)
    return pixels.reshape(height_px, width_px, 4)[::-1]


def render_frame(scene, path, frame):
    scene.frame_set(frame)
    scene.render.engine = 'CYCLES'
    scene.cycles.samples = 4
    scene.cycles.device = 'CPU'
    scene.render.film_transparent = True
    compat().set_output_format(scene.render.image_settings, 'PNG')
    scene.render.image_settings.color_mode = 'RGBA'
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    return read_png(path)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    folder = tmp_path_factory.mktemp("anim_sample")
    paths, names = write_sample_layers(folder)
    return {"paths": paths, "names": names, "composite": read_png(folder / "composite.png")}


@pytest.fixture
def stack(scene, sample, tmp_path):
    """A 4-layer stack, 1 m apart, in front of the conftest's camera (an arbitrary pose, 35 mm lens)."""
    from blender_addon.scene import planes

    # Fresh copies: the stack dilates its layer files in place.
    paths = []
    for path in sample["paths"]:
        copy = tmp_path / os.path.basename(path)
        copy.write_bytes(Path(path).read_bytes())
        paths.append(str(copy))
    root = planes.build_stack(bpy.context, paths, sample["names"], "job", "http://127.0.0.1:1", "poster",
                              depth_spacing_m=1.0)
    return root


def test_every_preset_keys_a_move_whose_first_frame_renders_the_original(stack, sample, tmp_path):
    """Each preset, keyed on the camera: frame 1 is the unanimated view (the input), the last frame has moved."""
    from blender_addon.core import motion

    scene = bpy.context.scene
    camera = scene.camera
    rest = render_frame(scene, tmp_path / "rest.png", 1)
    assert psnr_db(rest[..., :3], sample["composite"][..., :3], peak=1.0) >= MIN_REST_PSNR_DB
    for preset in motion.PRESETS:
        result = bpy.ops.strata.animate_camera(preset=preset, amplitude=0.3, duration_frames=12)
        assert result == {'FINISHED'}, preset
        assert (scene.frame_start, scene.frame_end) == (1, 13)
        first = render_frame(scene, tmp_path / f"{preset}_first.png", 1)
        error = np.abs(first - rest).max()
        assert error <= SAME_RENDER, f"{preset}: frame 1 differs from the unanimated view by {error * 255:.1f}/255"
        assert psnr_db(first[..., :3], sample["composite"][..., :3], peak=1.0) >= MIN_REST_PSNR_DB, preset
        last = render_frame(scene, tmp_path / f"{preset}_last.png", 13)
        assert np.abs(last - sample["composite"]).mean() > 2 / 255, f"{preset}: the last frame shows no motion"
        # Overscan (the default) covers every move, a zoom-out too: no transparent border.
        assert last[..., 3].min() > 0.99, f"{preset}: the move revealed empty space at the frame edges"
        assert camera.animation_data.action is not None


def background_extent(root):
    """(left, right, bottom, top) of the background plane's quad beyond its image, in texels."""
    from blender_addon.scene.stack import stack_layers

    background = stack_layers(root)[0]
    xs = [v.co.x for v in background.data.vertices]
    ys = [v.co.y for v in background.data.vertices]
    return (round((-0.5 - min(xs)) * WIDTH_PX), round((max(xs) - 0.5) * WIDTH_PX),
            round((-0.5 - min(ys)) * HEIGHT_PX), round((max(ys) - 0.5) * HEIGHT_PX))


@pytest.mark.parametrize("preset", ["TRUCK_RIGHT", "PEDESTAL_DOWN", "ORBIT_LEFT"])
def test_overscan_covers_the_extreme_frame_without_zooming(stack, sample, preset, tmp_path):
    """The default coverage enlarges the background instead of zooming: the lens stays, nothing is empty, frame 1
    is still the original, and a re-layout (new depth spacing) resizes the overscan for the new depths."""
    from blender_addon.scene.stack import stack_layers

    scene = bpy.context.scene
    camera = scene.camera
    rest = render_frame(scene, tmp_path / "rest.png", 1)
    assert bpy.ops.strata.animate_camera(preset=preset, amplitude=0.4, duration_frames=8) == {'FINISHED'}
    for frame in range(1, 10):
        scene.frame_set(frame)
        assert camera.data.lens == pytest.approx(35.0), frame
    extent = background_extent(stack)
    assert max(extent) > 0 and stack_layers(stack)[1].data.vertices[0].co.x == pytest.approx(-0.5)
    last = render_frame(scene, tmp_path / "last.png", 9)
    assert last[..., 3].min() > 0.99, f"{preset}: empty pixels at the extreme frame"
    assert np.abs(last - rest).mean() > 2 / 255  # it moved
    assert np.abs(render_frame(scene, tmp_path / "first.png", 1) - rest).max() <= SAME_RENDER

    stack.strata.depth_spacing_m = 2.0  # the back plane is farther now: the margin follows the new depth
    relaid = background_extent(stack)
    if preset == 'ORBIT_LEFT':  # farther from the orbit's pivot: it swings more
        assert sum(relaid) > sum(extent)
    else:  # the same slide is a smaller part of a larger plane
        assert sum(relaid) < sum(extent)
    assert render_frame(scene, tmp_path / "relaid.png", 9)[..., 3].min() > 0.99
    assert np.abs(render_frame(scene, tmp_path / "relaid_first.png", 1) - rest).max() <= SAME_RENDER


def test_zoom_coverage_is_still_there_and_clearing_removes_the_overscan(stack, tmp_path):
    scene = bpy.context.scene
    assert bpy.ops.strata.animate_camera(preset='TRUCK_RIGHT', amplitude=0.4, duration_frames=8) == {'FINISHED'}
    assert max(background_extent(stack)) > 0
    assert bpy.ops.strata.animate_camera(preset='TRUCK_RIGHT', amplitude=0.4, duration_frames=8,
                                         coverage='ZOOM') == {'FINISHED'}
    assert background_extent(stack) == (0, 0, 0, 0)
    scene.frame_set(9)
    assert scene.camera.data.lens > 35.0 * 1.1
    assert render_frame(scene, tmp_path / "zoom.png", 9)[..., 3].min() > 0.99
    bpy.ops.strata.animate_camera(preset='TRUCK_RIGHT', amplitude=0.4, duration_frames=8)
    assert bpy.ops.strata.clear_camera_animation() == {'FINISHED'}
    assert background_extent(stack) == (0, 0, 0, 0)


def test_default_amplitude_moves_the_front_layer_a_few_percent_of_the_frame(stack):
    """Left unset, the amplitude is the stack's tasteful default: the front layer slides ~4.5% of the frame width
    past the background, measured on the planes' projections."""
    from bpy_extras.object_utils import world_to_camera_view

    from blender_addon.scene.stack import stack_layers

    scene = bpy.context.scene
    assert bpy.ops.strata.animate_camera(preset='TRUCK_RIGHT', duration_frames=8) == {'FINISHED'}
    layers = stack_layers(stack)

    def centre_x(obj, frame):
        scene.frame_set(frame)
        return world_to_camera_view(scene, scene.camera, obj.matrix_world.translation).x

    front, back = layers[-1], layers[0]
    relative = (centre_x(front, 9) - centre_x(front, 1)) - (centre_x(back, 9) - centre_x(back, 1))
    assert 0.03 < abs(relative) < 0.06, relative


@pytest.mark.parametrize("easing", ["LINEAR", "EASE_IN", "EASE_OUT", "EASE_IN_OUT", "SMOOTH"])
def test_blender_curves_follow_the_planned_path_between_keys(stack, easing):
    from blender_addon.core import motion
    from blender_addon.scene import animation

    scene = bpy.context.scene
    camera = scene.camera
    assert bpy.ops.strata.animate_camera(preset='DOLLY_OUT', amplitude=0.5, duration_frames=10, easing=easing,
                                         loop=True) == {'FINISHED'}
    geometry = animation.stack_geometry(stack, camera, 35.0)
    path = motion.camera_path('DOLLY_OUT', geometry, 0.5, 10, easing, loop=True)
    assert not path.baked and len(path.keys) == 3  # rest, peak, rest: ordinary editable keys
    for frame in (1, 2, 3.5, 5, 6, 7.25, 9, 11):
        scene.frame_set(int(frame), subframe=frame - int(frame))
        expected = path.pose_at(frame)
        world = stack.matrix_world @ Vector(expected.location_m)
        assert (camera.matrix_world.translation - world).length < 1e-4, (easing, frame)
        assert camera.data.lens == pytest.approx(expected.focal_length_mm, abs=1e-3), (easing, frame)


def test_orbit_is_baked_and_keeps_the_stack_centre_in_view(stack):
    from bpy_extras.object_utils import world_to_camera_view

    scene = bpy.context.scene
    assert bpy.ops.strata.animate_camera(preset='ORBIT_RIGHT', amplitude=0.5, duration_frames=8) == {'FINISHED'}
    layers = [obj for obj in stack.children]
    centre_m = sum(obj.strata.depth_m for obj in layers) / len(layers)
    pivot = stack.matrix_world @ Vector((0.0, 0.0, -(max(o.strata.depth_m for o in layers) +
                                                      min(o.strata.depth_m for o in layers)) / 2))
    assert centre_m > 0
    for frame in range(1, 10):
        scene.frame_set(frame)
        ndc = world_to_camera_view(scene, scene.camera, pivot)
        assert (ndc.x, ndc.y) == pytest.approx((0.5, 0.5), abs=1e-4)
    scene.frame_set(9)
    assert (scene.camera.matrix_world.translation - stack.matrix_world.translation).length > 0.1


def test_clear_puts_the_camera_back_at_rest(stack):
    scene = bpy.context.scene
    camera = scene.camera
    rest = camera.matrix_world.copy()
    bpy.ops.strata.animate_camera(preset='TRUCK_LEFT', duration_frames=6)
    scene.frame_set(7)
    assert (camera.matrix_world.translation - rest.translation).length > 0.01
    assert bpy.ops.strata.clear_camera_animation() == {'FINISHED'}
    scene.frame_set(4)
    assert (camera.matrix_world.translation - rest.translation).length < 1e-5
    assert camera.data.lens == pytest.approx(35.0)


def test_impossible_move_is_refused_with_the_reason(stack):
    """...and the move keyed before it stays as it was: keys, frame range, camera pose, the planes' overscan."""
    from blender_addon.scene.stack import stack_layers

    scene = bpy.context.scene
    stack.strata.base_distance_m = 0.5  # front layer 0.5 m away, stack 3 m deep: a big dolly-in would pass it
    assert bpy.ops.strata.animate_camera(preset='TRUCK_LEFT', amplitude=0.2, duration_frames=6) == {'FINISHED'}

    def state():
        camera = scene.camera
        keys = [(f.data_path, f.array_index, tuple(tuple(p.co) for p in f.keyframe_points))
                for f in compat().action_fcurves(camera) or []]
        quads = [tuple(tuple(v.co) for v in obj.data.vertices) for obj in stack_layers(stack)]
        return keys, (scene.frame_start, scene.frame_end), [tuple(r) for r in camera.matrix_world], quads

    before = state()
    with pytest.raises(RuntimeError, match="nearest layer"):
        bpy.ops.strata.animate_camera(preset='DOLLY_IN', amplitude=1.0)
    assert state() == before


def test_preview_writes_a_video_or_frames(stack, tmp_path):
    scene = bpy.context.scene
    # The preview uses Cycles anyway: EEVEE on a CPU takes ~1 min a frame.
    scene.render.engine = compat().eevee_engine_id()
    bpy.ops.strata.animate_camera(preset='PEDESTAL_UP', duration_frames=4)
    base = tmp_path / "preview"
    assert bpy.ops.strata.render_preview(filepath=str(base), resolution_percentage=50, samples=2) == {'FINISHED'}
    if bpy.app.build_options.codec_ffmpeg:
        video = Path(str(base) + ".mp4")
        assert video.is_file() and video.stat().st_size > 1000
        assert video.read_bytes()[4:8] == b"ftyp"  # an MP4 container
    else:
        assert len(list(tmp_path.glob("preview_*.png"))) == 5
    # The scene's own render settings are back.
    assert scene.render.resolution_percentage == 100
    assert scene.render.engine == compat().eevee_engine_id()
    assert scene.render.image_settings.file_format == 'PNG'


def test_preview_into_an_unusable_folder_is_reported(stack, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the preview's folder should be")
    engine = bpy.context.scene.render.engine
    with pytest.raises(RuntimeError, match="preview render failed: .*not-a-folder"):
        bpy.ops.strata.render_preview(filepath=str(blocker / "sub" / "preview"))
    assert bpy.context.scene.render.engine == engine


def test_changing_depths_mid_move_keeps_the_rest_view_exact(stack, sample, tmp_path):
    """Re-layout while the camera is zoomed (scrubbed into a move): planes still fit the rest camera's lens."""
    scene = bpy.context.scene
    rest = render_frame(scene, tmp_path / "rest.png", 1)
    assert bpy.ops.strata.animate_camera(preset='ZOOM_IN', amplitude=0.5, duration_frames=8) == {'FINISHED'}
    scene.frame_set(9)
    assert scene.camera.data.lens == pytest.approx(35.0 * 1.5)
    stack.strata.depth_spacing_m = 2.0  # relayout at the zoomed frame
    again = render_frame(scene, tmp_path / "again.png", 1)
    assert np.abs(again - rest).max() <= SAME_RENDER


def test_overscan_every_layer_extends_nearer_planes_more(stack, tmp_path):
    """With Overscan Every Layer each plane gets the margin its depth needs: the same slide is a larger part of a
    nearer (smaller) plane. The images still land exactly on the rest frame."""
    from blender_addon.scene.materials import IMAGE_NODE
    from blender_addon.scene.stack import stack_layers

    scene = bpy.context.scene
    rest = render_frame(scene, tmp_path / "rest.png", 1)
    assert bpy.ops.strata.animate_camera(preset='TRUCK_LEFT', amplitude=0.4, duration_frames=6,
                                         overscan_layers=True) == {'FINISHED'}
    lefts = []
    for obj in stack_layers(stack):  # back → front
        xs = [v.co.x for v in obj.data.vertices]
        uvs = [tuple(loop_uv.uv) for loop_uv in obj.data.uv_layers.active.data]
        assert max(xs) == pytest.approx(0.5) and min(u for u, _ in uvs) == pytest.approx(min(xs) + 0.5)
        lefts.append(-0.5 - min(xs))
        assert obj.active_material.node_tree.nodes[IMAGE_NODE].extension == 'EXTEND'
    assert lefts == sorted(lefts) and lefts[0] > 0
    assert np.abs(render_frame(scene, tmp_path / "first.png", 1) - rest).max() <= SAME_RENDER


def test_a_white_paper_under_an_opaque_ground_never_shows_in_a_move_or_on_the_web_page(scene, tmp_path):
    """A stack on a Photoshop-style white sheet (the CPU decomposer's "Paper" under a coloured ground): the
    ground, not the sheet behind it, is the background that a move keeps covering, so the paper's white never
    shows at the extreme frame, and the web page leaves the hidden sheet out."""
    from blender_addon.scene import planes, stack_export
    from blender_addon.scene.stack import background_plane, stack_layers

    code = (
        "import sys\n"
        "import numpy as np\n"
        "from inference_server.layers import write_png_atomic\n"
        f"w, h = {WIDTH_PX}, {HEIGHT_PX}\n"
        "paper = np.full((h, w, 4), 255, np.uint8)\n"
        "ground = np.zeros((h, w, 4), np.uint8); ground[...] = (30, 70, 140, 255)\n"
        "mark = np.zeros((h, w, 4), np.uint8); mark[12:36, 20:44] = (240, 200, 40, 255)\n"
        "for i, layer in enumerate((paper, ground, mark)):\n"
        "    write_png_atomic(sys.argv[1] + f'/layer_{i:02d}.png', layer)\n")
    subprocess.run([SERVER_PYTHON, "-c", code, str(tmp_path)], cwd=REPO, check=True, timeout=120)
    paths = [str(tmp_path / f"layer_{i:02d}.png") for i in range(3)]
    root = planes.build_stack(bpy.context, paths, ["Paper", "Background", "Mark"], "job", "http://127.0.0.1:1",
                              "paper", depth_spacing_m=1.0)
    paper, ground, mark = stack_layers(root)
    assert (paper.strata.opaque, ground.strata.opaque, mark.strata.opaque) == (True, True, False)
    assert background_plane(root) == ground

    assert bpy.ops.strata.animate_camera(preset="TRUCK_RIGHT", amplitude=0.4, duration_frames=8) == {'FINISHED'}
    assert max(ground.data.vertices[i].co.x for i in range(4)) > 0.5, "the ground is overscanned"
    last = render_frame(scene, tmp_path / "last.png", 9)
    white = (last[..., :3] > 0.9).all(axis=2)
    assert last[..., 3].min() > 0.99 and not white.any(), "the paper shows at the extreme frame"

    web = stack_export.gather_web_scene(bpy.context, root)
    assert [layer.name for layer in web.layers] == [ground.name, mark.name]
