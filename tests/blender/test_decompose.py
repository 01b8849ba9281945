# SPDX-License-Identifier: GPL-3.0-or-later
"""Decompose from the panel's operator into a camera-exact stack of image planes, with a real CPU server."""

import os
import socket
import sys
import time

import bpy
import numpy as np
import pytest
from bpy_extras.object_utils import world_to_camera_view
from conftest import ADDON, psnr_db, render_camera_view  # tests/blender/conftest.py
from conftest import _wait_for_job as wait_for_job
from PIL import Image

# Measured 60.8 dB (anti-aliased edges of the planes); a regression in placement or colour drops far below.
PSNR_MIN_DB = 57.0


def _stack():
    return sys.modules[f"{ADDON}.scene.stack"]


def _connection():
    return sys.modules[f"{ADDON}.connection"]


FRAME_CORNERS = [0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0]


def _frame_corners_ndc(scene, obj):
    """The plane's corners in normalised camera-frame coordinates, sorted and flattened: FRAME_CORNERS if exact."""
    bpy.context.view_layer.update()
    corners = [tuple(world_to_camera_view(scene, scene.camera, obj.matrix_world @ vertex.co))[:2]
               for vertex in obj.data.vertices]
    corners.sort(key=lambda corner: (round(corner[0]), round(corner[1])))
    return [value for corner in corners for value in corner]


def _decompose(scene, image_path, layers):
    scene.strata.image_path = str(image_path)
    scene.strata.layers_auto = layers == "auto"
    if layers != "auto":
        scene.strata.layers = layers
    assert bpy.ops.strata.decompose() == {'FINISHED'}
    settings = wait_for_job()
    assert settings.job_status == "succeeded", settings.job_message
    return settings


def test_decompose_builds_a_camera_exact_stack(scene, local_server, sample_png, tmp_path):
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "poster.blend"))  # layers then go to //strata/<job>/
    bpy.ops.ed.undo_push(message="empty scene")
    settings = _decompose(scene, sample_png, 4)
    assert (settings.job_progress, settings.job_stage, settings.job_message) == (1.0, "done", "")
    scene_stack = _stack()

    roots = [obj for obj in bpy.data.objects if obj.strata.role == 'ROOT']
    assert len(roots) == 1
    root = roots[0]
    assert root.users_collection[0].name == "Strata poster"
    assert root.strata.job_id == settings.job_id and root.strata.server_url.startswith("http://127.0.0.1:")
    # The root sits at the rest camera pose; the planes are its children, not the camera's.
    assert np.allclose(np.array(root.matrix_world), np.array(scene.camera.matrix_world), atol=1e-5)
    layers = scene_stack.stack_layers(root)
    assert len(layers) == 4
    assert [obj.strata.layer_index for obj in layers] == [0, 1, 2, 3]
    assert all(obj.parent == root and obj.strata.role == 'LAYER' for obj in layers)
    depths = [obj.strata.depth_m for obj in layers]
    assert depths == sorted(depths, reverse=True) and len(set(depths)) == 4  # back is farthest

    for obj in layers:
        material = obj.active_material
        assert material.surface_render_method == 'BLENDED'
        assert {"Strata HSV", "Strata Opacity"} <= set(material.node_tree.nodes.keys())
        image = material.node_tree.nodes["Strata Image"].image
        assert image.alpha_mode == 'STRAIGHT'
        assert image.filepath.startswith(f"//strata/{settings.job_id}/layer_")  # relative to the .blend
        assert os.path.isfile(bpy.path.abspath(image.filepath))
        assert tuple(image.size) == (160, 120)
    assert (scene.render.resolution_x, scene.render.resolution_y) == (160, 120)
    assert scene.cycles.transparent_max_bounces >= 4

    original = np.asarray(Image.open(sample_png).convert("RGB"))
    rendered = render_camera_view(scene, tmp_path / "render.png")
    psnr = psnr_db(rendered, original)
    print(f"camera view vs input: PSNR {psnr:.1f} dB")
    assert psnr >= PSNR_MIN_DB

    # The built stack is one undo step (made when the job finished, long after the operator returned).
    assert bpy.ops.ed.undo() == {'FINISHED'}
    assert not [obj for obj in bpy.data.objects if obj.strata.role == 'ROOT']
    assert bpy.ops.ed.redo() == {'FINISHED'}
    assert len([obj for obj in bpy.data.objects if obj.strata.role == 'LAYER']) == 4


def test_spacing_change_keeps_every_plane_on_the_camera_frame(scene, local_server, sample_png):
    _decompose(scene, sample_png, 3)
    scene_stack = _stack()
    root = next(obj for obj in bpy.data.objects if obj.strata.role == 'ROOT')
    for spacing_m, base_m in ((0.5, 5.0), (3.0, 5.0), (3.0, 1.5)):
        root.strata.depth_spacing_m = spacing_m  # update callbacks re-lay-out the stack
        root.strata.base_distance_m = base_m
        layers = scene_stack.stack_layers(root)
        assert [obj.strata.depth_m for obj in layers] == pytest.approx(
            [base_m + 2 * spacing_m, base_m + spacing_m, base_m])
        for obj in layers:
            assert _frame_corners_ndc(scene, obj) == pytest.approx(FRAME_CORNERS, abs=1e-4), obj.name
    # Moving one layer in depth keeps it on the frame too.
    layers[1].strata.depth_m = 11.0
    assert _frame_corners_ndc(scene, layers[1]) == pytest.approx(FRAME_CORNERS, abs=1e-4)


def test_generated_blender_image_is_sent_as_png(scene, local_server):
    image = bpy.data.images.new("Painted", 64, 48, alpha=True)
    pixels = np.zeros((48, 64, 4), np.float32)
    pixels[...] = (0.9, 0.85, 0.7, 1.0)
    pixels[10:30, 8:40] = (0.8, 0.1, 0.1, 1.0)
    image.pixels.foreach_set(pixels.ravel())
    scene.strata.image = image
    scene.strata.layers_auto = False
    scene.strata.layers = 2
    assert bpy.ops.strata.decompose() == {'FINISHED'}
    settings = wait_for_job()
    assert settings.job_status == "succeeded", settings.job_message
    root = next(obj for obj in bpy.data.objects if obj.strata.role == 'ROOT')
    assert (root.strata.image_width_px, root.strata.image_height_px) == (64, 48)
    assert root.users_collection[0].name == "Strata Painted"
    # Unsaved .blend: layers go to a per-user folder, not /tmp.
    path = _stack().stack_layers(root)[0].active_material.node_tree.nodes["Strata Image"].image.filepath
    assert path.startswith(os.environ["BLENDER_USER_RESOURCES"])


def test_fewer_layers_than_asked_are_explained_in_the_panel(scene, local_server, tmp_path):
    # One flat colour can't be split into 3 layers: the user sees the backend's note, not a silent shortfall.
    path = tmp_path / "flat.png"
    Image.new("RGB", (48, 32), (40, 90, 160)).save(path)
    settings = _decompose(scene, path, layers=3)
    root = next(obj for obj in bpy.data.objects if obj.strata.role == 'ROOT')
    assert len(_stack().stack_layers(root)) < 3
    assert "fewer than the 3 requested" in settings.job_message


def _scene_state():
    return (sorted(obj.name for obj in bpy.data.objects), sorted(c.name for c in bpy.data.collections),
            len(bpy.data.images), len(bpy.data.materials))


def test_server_down_is_reported_and_the_scene_is_unchanged(scene, addon_prefs, sample_png):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    addon_prefs.connection = 'URL'
    addon_prefs.server_url = f"http://127.0.0.1:{port}"
    addon_prefs.server_token = "t" * 24
    scene.strata.image_path = str(sample_png)
    before = _scene_state()
    with pytest.raises(RuntimeError, match=f"cannot reach the Strata server at http://127.0.0.1:{port}"):
        bpy.ops.strata.decompose()
    assert _scene_state() == before
    assert scene.strata.job_status == ""
    with pytest.raises(RuntimeError, match="cannot reach"):
        bpy.ops.strata.restart_server()


def test_bad_image_is_reported_and_the_scene_is_unchanged(scene, local_server, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    before = _scene_state()
    scene.strata.image_path = str(text)
    with pytest.raises(RuntimeError, match="notes.png is not an image Strata can read"):
        bpy.ops.strata.decompose()
    scene.strata.image_path = str(tmp_path / "missing.png")
    with pytest.raises(RuntimeError, match="image file not found"):
        bpy.ops.strata.decompose()
    scene.strata.image_path = ""
    with pytest.raises(RuntimeError, match="no input image"):
        bpy.ops.strata.decompose()
    assert _scene_state() == before


def test_server_rejection_is_reported(scene, local_server, sample_png):
    # The first job starts the server; once it runs, submit errors surface from the operator itself.
    _decompose(scene, sample_png, 2)
    server = _connection().current_server()
    _decompose(scene, sample_png, 2)
    assert _connection().current_server() is server and server.is_alive()  # started once, then reused
    before = _scene_state()
    local_server.backend = 'qwen'  # this server runs the CPU backend only
    scene.strata.image_path = str(sample_png)
    with pytest.raises(RuntimeError) as caught:
        bpy.ops.strata.decompose()
    local_server.backend = 'cpu'
    assert "qwen" in str(caught.value)
    assert _scene_state() == before


def test_crashed_server_is_reported_and_restart_recovers(scene, local_server, sample_png):
    connection = _connection()
    _decompose(scene, sample_png, 2)
    server = connection.current_server()
    server.process.kill()
    server.process.wait()
    before = _scene_state()
    with pytest.raises(RuntimeError, match=r"stopped \(exit code"):
        bpy.ops.strata.decompose()
    assert _scene_state() == before

    assert bpy.ops.strata.restart_server() == {'FINISHED'}
    # The restart runs on a thread (Blender never waits for the server); wait for it here.
    import time
    deadline = time.monotonic() + 60
    while connection.server_state()["status"] in ("starting", "stopped") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert connection.server_state()["status"] == "running", connection.server_state()["message"]
    assert connection.current_server() is not server
    _decompose(scene, sample_png, 2)


def test_cancel_stops_the_job_and_builds_nothing(scene, local_server, tmp_path):
    big = tmp_path / "big.png"
    rng = np.random.default_rng(0)
    # A noisy 640×480 image keeps the CPU decomposer busy long enough to cancel it mid-way.
    Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), "RGB").save(big)
    connection = _connection()
    if connection.server_state()["status"] != "running":  # start the server first: this test is about canceling
        connection.restart_server(connection.settings_from_preferences(local_server)).join(60)
    scene.strata.image_path = str(big)
    scene.strata.layers_auto = False
    scene.strata.layers = 6
    before = _scene_state()
    assert bpy.ops.strata.decompose() == {'FINISHED'}
    with pytest.raises(RuntimeError):  # one job at a time: Decompose is disabled while one runs
        bpy.ops.strata.decompose()
    assert bpy.ops.strata.cancel() == {'FINISHED'}
    settings = wait_for_job()
    assert settings.job_status == "canceled", (settings.job_status, settings.job_message)
    assert _scene_state() == before


def test_full_queue_is_reported_and_the_scene_is_unchanged(scene, addon_prefs, sample_png, tmp_path):
    """A server started elsewhere (URL + token in the preferences) whose queue is full answers 429."""
    from conftest import REPO, SERVER_PYTHON

    core = sys.modules[f"{ADDON}.core.server_process"]
    client_module = sys.modules[f"{ADDON}.core.client"]
    # Slow steps (the server's test hook) keep the running job busy, so the queue stays full once it is full:
    # otherwise the worker may take the only queued job before the operator submits, and nothing is refused.
    env = dict(os.environ, PYTHONPATH=str(REPO), STRATA_FAULT_INJECT="slow_steps:2")
    server = core.AddonServerProcess(SERVER_PYTHON, backend="cpu", data_dir=tmp_path / "data", cwd=str(REPO),
                                     env=env, extra_args=["--max-queue", "1"])
    server.start()
    try:
        client = client_module.ServerClient(server.url, server.token)
        # One running, one queued: the next submit gets 429. Submitting both at once let the second be refused
        # while the first was still queued, and the worker then took it and made room (failed under load).
        blockers = [client.submit(sample_png.read_bytes(), {"layers": 2, "backend": "cpu"})]
        deadline = time.monotonic() + 60
        while client.status(blockers[0])["status"] != "running":
            assert time.monotonic() < deadline, client.status(blockers[0])
            time.sleep(0.05)
        blockers.append(client.submit(sample_png.read_bytes(), {"layers": 2, "backend": "cpu"}))
        with pytest.raises(client_module.ServerError, match="queue is full"):
            client.submit(sample_png.read_bytes(), {"layers": 2, "backend": "cpu"})
        addon_prefs.connection = 'URL'
        addon_prefs.server_url = server.url
        addon_prefs.server_token = server.token
        scene.strata.image_path = str(sample_png)
        before = _scene_state()
        with pytest.raises(RuntimeError, match="queue is full"):
            bpy.ops.strata.decompose()
        assert _scene_state() == before and scene.strata.job_status == ""
        for blocker in blockers:
            client.cancel(blocker)
    finally:
        server.stop()


def test_missing_server_configuration_is_reported(scene, local_server, sample_png):
    local_server.server_python = ""
    scene.strata.image_path = str(sample_png)
    before = _scene_state()
    with pytest.raises(RuntimeError, match="set the server's Python"):
        bpy.ops.strata.decompose()
    with pytest.raises(RuntimeError, match="set the server's Python"):
        bpy.ops.strata.restart_server()
    assert _scene_state() == before


def test_auto_is_the_default_and_lets_the_decomposer_count(scene, local_server, sample_png):
    assert scene.strata.layers_auto, "a new scene lets the decomposer choose the layer count"
    settings = _decompose(scene, sample_png, "auto")
    root = next(obj for obj in bpy.data.objects if obj.strata.role == 'ROOT')
    assert len(_stack().stack_layers(root)) >= 2  # the sample poster has a background, shapes and text
    assert "layers: auto" in settings.job_message
