# SPDX-License-Identifier: GPL-3.0-or-later
"""Every panel, the layer UIList and the preferences really draw, in each state a user meets.

Background bpy builds no UI, so ``draw()`` is called with ``layout_recorder.RecordingLayout``, which checks each call
against Blender's RNA description of ``UILayout`` (property names, operator ids and properties, icons, keywords):
a typo in a panel fails here instead of leaving a user with a half-drawn sidebar.
"""

import sys
import threading

import bpy
import pytest
from conftest import ADDON, prefs
from layout_recorder import LayoutError, RecordingLayout, draw_panel, draw_preferences, texts
from test_planes import soft_layers, write_layers


def _module(name):
    return sys.modules[f"{ADDON}.{name}"]


@pytest.fixture
def stack(scene, tmp_path):
    paths = write_layers(tmp_path, soft_layers(3))
    return _module("scene.planes").build_stack(bpy.context, paths, ["Back", "Middle", "Front"], "job-1", "", "ui")


def _select(obj):
    for other in bpy.context.view_layer.objects:
        other.select_set(False)
    bpy.context.view_layer.objects.active = obj
    if obj is not None:
        obj.select_set(True)


def _decompose_panel():
    return _module("panels").VIEW3D_PT_strata_decompose


def _calls(layout, method):
    return [kwargs for name, kwargs in layout.calls if name == method]


def test_the_recorder_catches_what_blender_would_reject(scene):
    """The stand-in layout is strict in the ways that matter (or every other test here would prove nothing)."""
    layout = RecordingLayout(bpy.context)
    settings = scene.strata
    layout.prop(settings, "layers")
    with pytest.raises(LayoutError, match="no property 'layer'"):
        layout.prop(settings, "layer")
    with pytest.raises(LayoutError, match="icon='NOT_AN_ICON'"):
        layout.label(text="x", icon='NOT_AN_ICON')
    with pytest.raises(LayoutError, match="no argument 'txt'"):
        layout.label(txt="x")
    with pytest.raises(LayoutError, match="no operator 'strata.decompse'"):
        layout.operator("strata.decompse")
    with pytest.raises(LayoutError, match="no property 'directon'"):
        layout.operator("strata.layer_move").directon = 'UP'
    with pytest.raises(LayoutError, match="'SIDEWAYS'"):
        layout.operator("strata.layer_move").direction = 'SIDEWAYS'
    with pytest.raises(LayoutError, match="no attribute 'use_prop_split'"):
        layout.row().use_prop_split = True
    with pytest.raises(AttributeError):
        layout.labell(text="x")
    with pytest.raises(LayoutError, match="no UIList"):
        layout.template_list("STRATA_UL_nope", "", scene, "objects", settings, "active_layer_index")


def test_decompose_panel_idle(scene):
    assert _module("job_watch").active() is None
    layout = draw_panel(_decompose_panel(), bpy.context)
    props = [kwargs["property"] for kwargs in _calls(layout, "prop")]
    assert props == ["image_path", "layers_auto", "layers", "steps", "resolution", "seed", "prompt", "depth",
                     "blend_like_editors"]
    assert [kwargs["operator"] for kwargs in _calls(layout, "operator")] == ["strata.decompose",
                                                                              "strata.restart_server"]
    assert not _calls(layout, "progress")
    assert any(text.startswith("Server: ") for text in texts(layout, "label"))


def test_decompose_panel_while_a_job_runs_shows_progress_and_cancel(stack):
    """A real JobRunner held at 'connecting': the panel shows a progress bar with stage and step, and Cancel; the
    operators that start another job are disabled meanwhile (one job at a time)."""
    from blender_addon.core.client import ServerError
    from blender_addon.core.job_runner import JobRunner

    job_watch = _module("job_watch")
    release = threading.Event()

    def connect():
        release.wait(10)
        raise ServerError("released by the test")

    scene = bpy.context.scene
    _module("scene.stack").set_active_layer(bpy.context, _module("scene.stack").stack_layers(stack)[1])
    starters = (bpy.ops.strata.decompose, bpy.ops.strata.redecompose_layer, bpy.ops.strata.export_view)
    assert all(operator.poll() for operator in starters)
    runner = JobRunner(connect, b"", {}, "/nonexistent").start()
    job_watch.watch(runner, scene, lambda target, result: None)
    try:
        assert not any(operator.poll() for operator in starters)
        assert job_watch.tick() is not None  # still running: the snapshot is copied into Scene.strata
        layout = draw_panel(_decompose_panel(), bpy.context)
        assert [kwargs["operator"] for kwargs in _calls(layout, "operator")][:2] == ["strata.decompose",
                                                                                     "strata.cancel"]
        assert texts(layout, "progress") == ["connecting to the server"]

        scene.strata.job_stage, scene.strata.job_step, scene.strata.job_total = "denoising", 3, 10
        scene.strata.job_progress = 0.3
        layout = draw_panel(_decompose_panel(), bpy.context)
        (progress,) = _calls(layout, "progress")
        assert (progress["text"], progress["factor"]) == ("denoising 3/10", pytest.approx(0.3))
    finally:
        release.set()
        runner.join(10)
        while job_watch.tick() is not None:
            pass
    assert scene.strata.job_status == "failed"
    assert all(operator.poll() for operator in starters)


@pytest.mark.parametrize("status, message, expected", [
    ("failed", "the server ran out of GPU memory\ntry the lowvram preset",
     ["Failed", "the server ran out of GPU memory", "try the lowvram preset"]),
    ("succeeded", "found 2 distinct layers, fewer than the 3 requested", ["found 2 distinct layers, fewer than the 3 "
                                                                          "requested"]),
    ("canceled", "", ["Canceled"]),
])
def test_decompose_panel_after_a_job(scene, status, message, expected):
    scene.strata.job_status, scene.strata.job_message = status, message
    layout = draw_panel(_decompose_panel(), bpy.context)
    labels = texts(layout, "label")
    assert labels[:len(expected)] == expected
    assert not _calls(layout, "progress")


def test_decompose_panel_shows_a_failed_server(scene):
    connection = _module("connection")
    with connection._lock:
        saved = dict(connection._state)
        connection._state.update(status="failed", message="the Strata server stopped (exit code 1)\nTraceback ...")
    try:
        layout = draw_panel(_decompose_panel(), bpy.context)
    finally:
        with connection._lock:
            connection._state.update(saved)
    labels = texts(layout, "label")
    assert "Server: failed" in labels and "the Strata server stopped (exit code 1)" in labels


def test_stack_panels_with_nothing_to_show_stay_hidden(scene):
    _select(scene.camera)
    panels_layers = _module("panels_layers")
    for panel in (_module("panels").VIEW3D_PT_strata_stack, panels_layers.VIEW3D_PT_strata_layers,
                  panels_layers.VIEW3D_PT_strata_motion, panels_layers.VIEW3D_PT_strata_export_view,
                  _module("panels_stack_export").VIEW3D_PT_strata_export_stack):
        assert not panel.poll(bpy.context), panel.__name__


def test_stack_and_layer_panels_with_a_stack_selected(stack):
    panels, panels_layers, scene_stack = _module("panels"), _module("panels_layers"), _module("scene.stack")
    scene = bpy.context.scene
    _select(stack)
    assert panels.VIEW3D_PT_strata_stack.poll(bpy.context)
    layout = draw_panel(panels.VIEW3D_PT_strata_stack, bpy.context)
    assert [kwargs["property"] for kwargs in _calls(layout, "prop")] == [
        "base_distance_m", "depth_spacing_m", "relief_all", "camera", "image_width_px", "image_height_px"]

    # The layer list, no layer picked yet: its rows are the stack's planes, front first.
    scene.strata.active_layer_index = list(scene.objects).index(stack)
    assert panels_layers.VIEW3D_PT_strata_layers.poll(bpy.context)
    layout = draw_panel(panels_layers.VIEW3D_PT_strata_layers, bpy.context)
    rows = [kwargs["item"].name for name, kwargs in layout.calls if name == "list_item"]
    assert rows == ["Front", "Middle", "Back"]
    assert "Pick a layer in the list" in texts(layout, "label")
    moves = [kwargs for kwargs in _calls(layout, "operator") if kwargs["operator"] == "strata.layer_move"]
    assert len(moves) == 2

    # A layer picked: its depth, scale and look, and the per-layer operators.
    middle = _module("scene.stack").stack_layers(stack)[1]
    scene_stack.set_active_layer(bpy.context, middle)
    layout = draw_panel(panels_layers.VIEW3D_PT_strata_layers, bpy.context)
    props = [kwargs["property"] for kwargs in _calls(layout, "prop") if kwargs["data"] == middle.strata]
    assert props == ["depth_m", "scale", "relief", "opacity", "hue", "saturation", "value"]
    middle.strata.relief = 0.5  # the test stack has no depth maps: the panel says why nothing happens
    layout = draw_panel(panels_layers.VIEW3D_PT_strata_layers, bpy.context)
    assert "No depth map: decompose with Depth on" in texts(layout, "label")
    middle.strata.relief = 0.0
    operators = {kwargs["operator"] for kwargs in _calls(layout, "operator")}
    assert {"strata.layer_reset_look", "strata.redecompose_layer", "strata.layer_delete",
            "strata.layer_select"} <= operators

    layout = draw_panel(panels_layers.VIEW3D_PT_strata_motion, bpy.context)
    assert _calls(layout, "operator_menu_enum")[0]["operator"] == "strata.animate_camera"
    layout = draw_panel(panels_layers.VIEW3D_PT_strata_export_view, bpy.context)
    assert [kwargs["text"] for kwargs in _calls(layout, "operator")] == ["PowerPoint", "Photoshop"]
    layout = draw_panel(_module("panels_stack_export").VIEW3D_PT_strata_export_stack, bpy.context)
    assert [kwargs["operator"] for kwargs in _calls(layout, "operator")] == ["strata.export_gltf", "strata.export_web"]


@pytest.mark.parametrize("connection", ['START', 'URL'])
def test_preferences_draw_for_both_connections(addon, connection):
    preferences = prefs()
    saved = preferences.connection
    preferences.connection = connection
    try:
        layout = draw_preferences(preferences, bpy.context)
    finally:
        preferences.connection = saved
    props = [kwargs["property"] for kwargs in _calls(layout, "prop")]
    assert ("server_python" in props) == (connection == 'START')
    assert ("server_token" in props) == (connection == 'URL')
    assert "strata.restart_server" in [kwargs["operator"] for kwargs in _calls(layout, "operator")]


def test_preferences_offer_all_gpus_only_when_the_server_python_sees_two(addon):
    from blender_addon import connection
    from blender_addon import preferences as preferences_module

    preferences = prefs()
    saved = (preferences.connection, preferences.backend, preferences.server_python)
    preferences.connection, preferences.backend = 'START', 'qwen'
    preferences.server_python = "/opt/two-gpus/bin/python"
    try:
        drawn = {}
        for count in (None, 1, 2):
            preferences_module._gpu_counts[preferences.server_python] = count
            layout = draw_preferences(preferences, bpy.context)
            drawn[count] = "gpus" in [kwargs["property"] for kwargs in _calls(layout, "prop")]
        assert drawn == {None: False, 1: False, 2: True}
        preferences.gpus = 'ALL'
        settings = connection.settings_from_preferences(preferences)
        assert connection._new_process(settings).extra_args[-2:] == ["--gpus", "all"]
        preferences.backend = 'cpu'
        assert "--gpus" not in connection._new_process(connection.settings_from_preferences(preferences)).extra_args
    finally:
        preferences.gpus = 'ONE'
        preferences.connection, preferences.backend, preferences.server_python = saved
        preferences_module._gpu_counts.pop("/opt/two-gpus/bin/python", None)


@pytest.mark.parametrize("operator, why", [
    ("animate_camera", "Build a Strata stack first"), ("export_gltf", "Build a Strata stack first"),
    ("layer_delete", "Pick a layer in the Strata layer list"), ("relayout", "Select an object of a Strata stack"),
    ("cancel", "No Strata job is running")])
def test_an_operator_that_cannot_run_says_why(scene, operator, why):
    """A greyed-out button's tooltip (and a script's error) names what is missing, from the one operator mixin."""
    with pytest.raises(RuntimeError, match=f"poll\\(\\) {why}$"):
        getattr(bpy.ops.strata, operator)()
