# SPDX-License-Identifier: GPL-3.0-or-later
"""Main-thread side of a running job: copy the background thread's snapshot into Scene.strata, build on success.

``tick()`` is a plain function: a ``bpy.app.timers`` callback calls it in Blender, tests call it directly (timers
never fire in the bpy module). It returns the seconds until it wants to run again, or None once the job is over.
"""

import logging
from types import SimpleNamespace

import bpy

from .redraw import tag_redraw

logger = logging.getLogger(__name__)

TICK_INTERVAL_S = 0.2
_LOG_LEVELS = {'ERROR': logging.ERROR, 'WARNING': logging.WARNING}


class _Watch:
    def __init__(self, runner, scene_name, on_success, label, undo):
        self.runner = runner
        self.scene_name = scene_name
        self.on_success = on_success
        self.label = label
        self.undo = undo


_active = None


def watch(runner, scene, on_success, label="Decompose", undo=True):
    """Follow ``runner`` and call ``on_success(context_like, result)`` on the main thread when its layers are in;
    ``undo``: what ``on_success`` changed becomes one undo step named after ``label``."""
    global _active
    _active = _Watch(runner, scene.name, on_success, label, undo)
    _write_state(scene, runner.snapshot())
    if not bpy.app.timers.is_registered(_timer):
        bpy.app.timers.register(_timer, first_interval=TICK_INTERVAL_S)


def active():
    """The runner being watched, or None."""
    return _active.runner if _active is not None else None


def cancel():
    """Ask the active job to stop; ``tick()`` reports 'canceled' once the server confirms."""
    if _active is not None:
        _active.runner.cancel()
        return True
    return False


def _write_state(scene, snapshot):
    settings = scene.strata
    if settings.job_id != snapshot.job_id:
        settings.job_id = snapshot.job_id
    settings.job_status = snapshot.status
    settings.job_stage = snapshot.stage
    settings.job_step = max(0, snapshot.step)
    settings.job_total = max(0, snapshot.total)
    settings.job_progress = snapshot.progress
    settings.job_message = snapshot.error if snapshot.status == "failed" else _result_notes(snapshot)


def _result_notes(snapshot):
    """The backend's remarks on a finished job (e.g. fewer distinct layers than requested), one per line."""
    if snapshot.status != "succeeded" or snapshot.result is None:
        return ""
    return "\n".join(str(note) for note in snapshot.result.manifest.get("notes") or [])


def notify(message, level='ERROR'):
    """Tell the user about something that happened after the operator returned (a timer has no self.report)."""
    logger.log(_LOG_LEVELS.get(level, logging.INFO), "%s", message)
    window_manager = bpy.context.window_manager
    windows = list(getattr(window_manager, "windows", ()))
    if bpy.app.background or not windows:
        return

    def draw(menu, _context):
        for line in message.splitlines()[:8]:
            menu.layout.label(text=line)

    with bpy.context.temp_override(window=windows[0]):
        window_manager.popup_menu(draw, title="Strata", icon='ERROR' if level == 'ERROR' else 'INFO')


def push_undo_step(message):
    """Make what a finished job built one undo step of its own. The operator that started the job returned long
    ago, and operators called from Python (as here, from a timer) push no undo step: without this, Ctrl+Z would
    also undo the user's previous action and Redo could never bring the result back."""
    if bpy.ops.ed.undo_push.poll():
        bpy.ops.ed.undo_push(message=message)


def tick():
    """Copy progress into the scene; on success build the result. → seconds to the next tick, or None when done."""
    global _active
    watched = _active
    if watched is None:
        return None
    scene = bpy.data.scenes.get(watched.scene_name)
    snapshot = watched.runner.snapshot()
    if scene is None:  # the scene was deleted: drop the job
        watched.runner.cancel()
        _active = None
        return None
    if not snapshot.done:
        _write_state(scene, snapshot)
        tag_redraw('VIEW_3D')
        return TICK_INTERVAL_S
    _active = None
    if snapshot.status == "succeeded":
        try:
            watched.on_success(SimpleNamespace(scene=scene), snapshot.result)
        except Exception as e:  # the layers are on disk; say what failed instead of leaving a half-built stack
            logger.exception("building the result of %s failed", watched.label)
            snapshot.status, snapshot.error = "failed", f"building the stack failed: {e}"
        else:
            if watched.undo:
                push_undo_step(f"Strata {watched.label}")
    _write_state(scene, snapshot)
    if snapshot.status == "failed":
        notify(snapshot.error)
    elif notes := _result_notes(snapshot):
        notify(notes, level='INFO')
    tag_redraw('VIEW_3D')
    return None


def _timer():
    return tick()


def unregister():
    global _active
    if _active is not None:
        _active.runner.cancel()
        _active = None
    if bpy.app.timers.is_registered(_timer):
        bpy.app.timers.unregister(_timer)
