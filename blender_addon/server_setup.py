# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender side of Install Server and Download Model: which task runs, where things live, and a timer that redraws.

The work itself is bpy-free (``core.server_install``, ``core.model_download_task``) and runs on a background thread;
this module reads the preferences on the main thread, keeps the running tasks, and redraws the preferences while
they run. ``tick()`` is what the timer calls (tests call it directly: timers never fire in the bpy module).
"""

import atexit
import os
import sys

import bpy

from . import connection
from .core.model_download_task import DownloadOptions, ModelDownload, downloaded, model_folder
from .core.server_install import InstallOptions, ServerInstall, clean_env, installed_python, read_pointer, server_wheels
from .redraw import tag_redraw
from .user_folders import user_folder

TICK_INTERVAL_S = 0.5
_tasks = {"install": None, "download": None}


def addon_dir():
    return os.path.dirname(os.path.abspath(__file__))


def installed():
    """The installed server env's record ({'python', 'torch', 'python_version', 'server', ...}) or {}."""
    return read_pointer(user_folder())


def installed_server_python():
    return installed_python(user_folder())


def hub_id(prefs):
    """The Hub id Download Model fetches: the Model preference when it is one (not a folder), else the default."""
    model = prefs.model.strip()
    return model if model.count("/") == 1 and not os.path.isabs(model) and not model.startswith((".", "~")) else ""


def download_folder(prefs):
    return model_folder(user_folder(), hub_id(prefs), prefs.gguf_file)


def downloaded_model(prefs):
    """The finished download for the current preferences ({'tier', 'description', ...} + 'path'), or {} (also when
    Model names a local folder: that one is used as it is)."""
    if prefs.model.strip() and not hub_id(prefs):
        return {}
    folder = download_folder(prefs)
    record = downloaded(folder)
    return dict(record, path=str(folder)) if record else {}


def server_available(context):
    """Whether Decompose has a server to use: one set by hand, one Install Server made, or a URL."""
    from .preferences import get_preferences  # it imports this module

    prefs = get_preferences(context)
    return bool(prefs.connection == 'URL' or prefs.server_python or prefs.server_command or installed_server_python())


def task(kind):
    return _tasks[kind]


def running(kind):
    current = _tasks[kind]
    return current is not None and not current.snapshot().done


def _running_server_pythons():
    server = connection.current_server()
    return {server.python_path} if server is not None and server.python_path else set()


def start_install(prefs):
    """Start Install Server with the preferences' choices → the task. Raises RuntimeError when one is running."""
    if running("install"):
        raise RuntimeError("the server install is already running")
    wheels = server_wheels(addon_dir())
    options = InstallOptions(
        root=user_folder(), wheel=wheels[-1] if wheels else os.path.join(addon_dir(), "server", "strata-*.whl"),
        python=bpy.path.abspath(prefs.install_python) if prefs.install_python else "",
        blender_python=sys.executable, torch_variant=prefs.torch_build.lower(), pip_options=prefs.pip_options,
        keep_pythons=_running_server_pythons)
    _tasks["install"] = ServerInstall(options).start()
    _ensure_timer()
    return _tasks["install"]


def start_download(prefs):
    if running("download"):
        raise RuntimeError("a model download is already running")
    settings = connection.settings_from_preferences(prefs)
    if not settings["python"]:
        raise RuntimeError("no server installed yet: press Install Server first (the download runs in the server's "
                           "Python, which has huggingface_hub)")
    env = clean_env() if settings["installed"] else None
    if settings["source_dir"]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (settings["source_dir"], env.get("PYTHONPATH", "")) if p)
    options = DownloadOptions(python=settings["python"], local_dir=str(download_folder(prefs)), model=hub_id(prefs),
                              gguf=prefs.gguf_file, log_path=os.path.join(user_folder(), "download.log"), env=env)
    _tasks["download"] = ModelDownload(options).start()
    _ensure_timer()
    return _tasks["download"]


def cancel(kind):
    current = _tasks[kind]
    if current is not None:
        current.cancel()


def tick():
    """Redraw the preferences while a task runs → seconds to the next tick, or None when none runs."""
    tag_redraw('PREFERENCES')
    if running("install") or running("download"):
        return TICK_INTERVAL_S
    return None


def _timer():
    return tick()


def cancel_all():
    for kind in _tasks:
        cancel(kind)


def _ensure_timer():
    if not bpy.app.timers.is_registered(_timer):
        bpy.app.timers.register(_timer, first_interval=TICK_INTERVAL_S)
    # pip runs in a session of its own: without this it would go on after Blender quits (the half-built env is
    # removed by the next install; a download resumes)
    atexit.unregister(cancel_all)
    atexit.register(cancel_all)


def unregister():
    cancel_all()
    atexit.unregister(cancel_all)
    for kind in _tasks:
        _tasks[kind] = None
    if bpy.app.timers.is_registered(_timer):
        bpy.app.timers.unregister(_timer)
