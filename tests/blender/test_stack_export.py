# SPDX-License-Identifier: GPL-3.0-or-later
"""Exports of the whole stack: GLB through Blender's glTF exporter (re-imported, it reproduces the stack and the camera
move), and the self-contained web page rendered in headless Chromium (matches Blender's frame 1, loads nothing from
outside its folder, follows the pointer)."""

import json
import struct
import sys
from pathlib import Path

import bpy
import numpy as np
import pytest
from conftest import ADDON, psnr_db, render_camera_view
from test_relief import relief_stack

WEB_PSNR_MIN_DB = 30.0


def _module(name):
    return sys.modules[f"{ADDON}.{name}"]


def animated_relief_stack(scene, tmp_path):
    root, layers = relief_stack(tmp_path, count=4, relief=0.8)
    assert bpy.ops.strata.animate_camera(preset='TRUCK_RIGHT', duration_frames=12, coverage='OVERSCAN') == {'FINISHED'}
    scene.frame_set(scene.frame_start)
    return root, layers


def world_vertices(obj):
    co = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", co)
    matrix = np.array(obj.matrix_world)
    return co.reshape(-1, 3) @ matrix[:3, :3].T + matrix[:3, 3]


def view_frame_slopes(camera, scene):
    """The camera frame's corners as x/z, y/z: its field of view, whatever lens/sensor pair gives it."""
    return [value for corner in camera.data.view_frame(scene=scene) for value in (corner.x / corner.z,
                                                                                 corner.y / corner.z)]


def glb_json(path):
    data = Path(path).read_bytes()
    length = struct.unpack("<I", data[12:16])[0]
    return json.loads(data[20:20 + length])


def test_glb_reimported_into_blender_reproduces_the_stack_and_camera_move(scene, tmp_path):
    root, _ = animated_relief_stack(scene, tmp_path)
    stack = _module("scene.stack").stack_layers(root)
    camera = scene.camera
    middle = (scene.frame_start + scene.frame_end) // 2
    expected = {obj.name: world_vertices(obj) for obj in stack}
    expected_camera = {frame: (scene.frame_set(frame), np.array(camera.matrix_world))[1]
                       for frame in (scene.frame_start, middle)}
    scene.frame_set(scene.frame_start)
    frame_corners = view_frame_slopes(camera, scene)
    resolution = (scene.render.resolution_x, scene.render.resolution_y)
    path = tmp_path / "stack.glb"
    assert bpy.ops.strata.export_gltf(filepath=str(path)) == {'FINISHED'}
    gltf = glb_json(path)
    assert "KHR_materials_unlit" in gltf.get("extensionsUsed", [])
    assert all(material.get("alphaMode") == "BLEND" and "baseColorTexture" in material["pbrMetallicRoughness"]
               for material in gltf["materials"]), "layers keep their textures with alpha"
    assert len(gltf["images"]) == len(stack) and gltf["animations"], "textures and the camera move travel along"
    # The export leaves the scene's materials as they were.
    assert not any(node.name.startswith("Strata Export") for obj in stack
                   for node in obj.material_slots[0].material.node_tree.nodes)

    bpy.ops.wm.read_homefile(use_empty=True)
    assert bpy.ops.import_scene.gltf(filepath=str(path)) == {'FINISHED'}
    scene = bpy.context.scene
    meshes = [obj for obj in scene.objects if obj.type == 'MESH']
    cameras = [obj for obj in scene.objects if obj.type == 'CAMERA']
    assert sorted(obj.name for obj in meshes) == sorted(expected) and len(cameras) == 1
    for obj in meshes:
        assert np.abs(world_vertices(obj) - expected[obj.name]).max() < 1e-4, f"{obj.name} moved or lost its relief"
    imported = cameras[0]
    scene.render.resolution_x, scene.render.resolution_y = resolution
    assert view_frame_slopes(imported, scene) == pytest.approx(frame_corners, abs=1e-4), "same field of view"
    for frame, matrix in expected_camera.items():
        scene.frame_set(frame)
        assert np.abs(np.array(imported.matrix_world.normalized()) - matrix).max() < 1e-3, f"camera at {frame}"


@pytest.fixture
def chromium():
    from chromium_cdp import Chromium, chromium_path

    if chromium_path() is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it)")
    browsers = []

    def start(width_px, height_px):
        browsers.append(Chromium(width_px, height_px))
        return browsers[-1]

    yield start
    for browser in browsers:
        browser.close()


def test_web_page_matches_blender_offline_and_follows_the_pointer(scene, tmp_path, chromium):
    root, _ = animated_relief_stack(scene, tmp_path)
    blender_frame1 = render_camera_view(scene, tmp_path / "frame1.png", samples=1)
    folder = tmp_path / "web"
    assert bpy.ops.strata.export_web(directory=str(folder)) == {'FINISHED'}
    assert sorted(p.name for p in folder.iterdir()) == ["index.html"]
    height_px, width_px = blender_frame1.shape[:2]
    browser = chromium(width_px, height_px)
    url = (folder / "index.html").as_uri()
    browser.open(url + "?still")
    at_rest = browser.screenshot()
    assert at_rest.shape == blender_frame1.shape
    psnr = psnr_db(at_rest, blender_frame1)
    print(f"web page at rest vs Blender frame 1: PSNR {psnr:.1f} dB")
    assert psnr >= WEB_PSNR_MIN_DB
    # A real pointer move (DevTools Input events) moves the camera: the picture changes, more at the edge.
    browser.move_mouse(width_px * 0.95, height_px * 0.5)
    moved = browser.screenshot()
    print(f"after a pointer move: PSNR {psnr_db(moved, at_rest):.1f} dB vs rest")
    assert psnr_db(moved, at_rest) < 35.0
    # The exported camera move plays: its middle frame differs from the rest pose.
    browser.open(url + f"?still&frame={(scene.frame_end - scene.frame_start) // 2}")
    assert psnr_db(browser.screenshot(), at_rest) < 35.0
    # Everything came from the page itself: no request left its folder (data: URLs are inside the page).
    outside = [request for request in browser.requests
               if not (request.startswith("data:") or request.split("?")[0] == url)]
    assert browser.requests and not outside, f"requests outside the page's folder: {outside}"
