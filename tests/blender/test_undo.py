# SPDX-License-Identifier: GPL-3.0-or-later
"""Ctrl+Z after the layer operators: each one is a single undo step, and the stack it leaves (before and after undo)
is consistent: layer indices 0..n-1 back to front, and the camera-view export lists exactly those planes.

Undo works in the bpy module once an initial step is pushed (``ed.undo_push``). Operators are called as a button
calls them, with ``bpy.ops.x.y('EXEC_DEFAULT', True)``: the second argument asks for the undo push a UI click gets
(plain Python calls push none). Object references do not survive an undo (Blender re-reads the data): objects are
looked up by name again afterwards.
"""

import sys

import bpy
import pytest
from conftest import ADDON
from test_planes import soft_layers, write_layers

NAMES = ["Back", "Middle", "Front"]


def _module(name):
    return sys.modules[f"{ADDON}.{name}"]


@pytest.fixture
def stack_name(scene, tmp_path):
    paths = write_layers(tmp_path, soft_layers(3))
    root = _module("scene.planes").build_stack(bpy.context, paths, NAMES, "job-1", "", "undo")
    bpy.ops.ed.undo_push(message="stack built")
    return root.name


def _layers(root_name):
    return _module("scene.stack").stack_layers(bpy.data.objects[root_name])


def _exported_names(root_name):
    """What the camera-view export would write, in order (no server needed to lay it out)."""
    scene = bpy.context.scene
    result, pngs = _module("scene.view").collect_view(scene, scene.camera, [bpy.data.objects[root_name]], "undo")
    assert len(pngs) == len(result.layout["layers"])
    return [layer["name"] for layer in result.layout["layers"]]


def _assert_consistent(root_name, names):
    layers = _layers(root_name)
    assert [obj.name for obj in layers] == names
    assert [obj.strata.layer_index for obj in layers] == list(range(len(names)))
    depths = [obj.strata.depth_m for obj in layers]
    assert depths == sorted(depths, reverse=True)  # back is farthest
    assert _exported_names(root_name) == names


def _pick(name):
    _module("scene.stack").set_active_layer(bpy.context, bpy.data.objects[name])


def test_delete_layer_is_one_undo_step(stack_name):
    _pick("Middle")
    assert bpy.ops.strata.layer_delete('EXEC_DEFAULT', True) == {'FINISHED'}
    _assert_consistent(stack_name, ["Back", "Front"])
    assert "Middle" not in bpy.data.objects
    assert bpy.ops.ed.undo() == {'FINISHED'}
    _assert_consistent(stack_name, NAMES)


def test_move_layer_is_one_undo_step(stack_name):
    _pick("Back")
    assert bpy.ops.strata.layer_move('EXEC_DEFAULT', True, direction='UP') == {'FINISHED'}
    _assert_consistent(stack_name, ["Middle", "Back", "Front"])
    assert bpy.ops.ed.undo() == {'FINISHED'}
    _assert_consistent(stack_name, NAMES)


def test_replacing_a_layer_with_its_sub_layers_is_one_undo_step(stack_name, tmp_path):
    """What a finished "Re-decompose layer" job applies from the timer: the operator its callback runs (a Python
    call: no undo push of its own), then job_watch's undo step. Undo brings the layer back, Redo the sub-layers."""
    import json

    (tmp_path / "sub").mkdir()
    sub_paths = write_layers(tmp_path / "sub", soft_layers(2, seed=5))
    assert bpy.ops.strata.replace_layer_with_stack(
        plane="Middle", job_id="job-2", layers_json=json.dumps({"paths": sub_paths, "names": ["A", "B"]})) == {
        'FINISHED'}
    _module("job_watch").push_undo_step("Strata Re-decompose")
    replaced = ["Back", "Middle / A", "Middle / B", "Front"]
    _assert_consistent(stack_name, replaced)
    assert bpy.ops.ed.undo() == {'FINISHED'}
    _assert_consistent(stack_name, NAMES)
    assert "Middle / A" not in bpy.data.objects
    assert bpy.ops.ed.redo() == {'FINISHED'}
    _assert_consistent(stack_name, replaced)


def test_replacing_a_deleted_layer_is_reported(stack_name):
    with pytest.raises(RuntimeError, match="layer plane 'Gone' is gone"):
        bpy.ops.strata.replace_layer_with_stack(plane="Gone", job_id="job-2", layers_json='{"paths": [], "names": []}')
    _assert_consistent(stack_name, NAMES)
