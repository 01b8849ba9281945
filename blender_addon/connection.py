# SPDX-License-Identifier: GPL-3.0-or-later
"""The add-on's link to the server: a locally started ``AddonServerProcess`` or the URL of a running server.

Starting the server takes seconds (imports, backend warm-up), so it never happens on the main thread: the first
job starts it from its background thread, and "Restart server" restarts it on a thread of its own. The process
is reused by later jobs, stopped on unregister and at quit (``atexit``).

Each server's ``/v1/health`` version is compared with the add-on's (``core.versions``): a started server's when it
is up, a server reached by URL's on its first use. The warning, if any, stays in ``server_state()`` for the panel and
the preferences, and the operators report it.
"""

import atexit
import os
import threading
import time

import bpy

from .core.client import ServerClient, ServerError
from .core.server_install import clean_env
from .core.server_process import AddonServerProcess, ServerStartError, qwen_serve_args, tier_line
from .core.versions import addon_version, version_warning
from .user_folders import server_data_folder

_lock = threading.Lock()
_start_lock = threading.Lock()
_server = None  # the AddonServerProcess this add-on started, if any
# status: stopped | starting | running | failed; version_warning: about the server at version_url ('' when it matches)
_state = {"status": "stopped", "message": "", "tier": "", "version_warning": "", "version_url": ""}
_atexit_registered = False
MAIN_THREAD_TIMEOUT_S = 10.0


def settings_from_preferences(prefs):
    """Everything the background thread needs, read on the main thread (threads must not touch bpy)."""
    from . import server_setup  # it imports this module

    # Without a Python or model set by hand: what Install Server and Download Model put in the user folder.
    python = bpy.path.abspath(prefs.server_python) if prefs.server_python else ""
    if not python and not prefs.server_command:
        python = server_setup.installed_server_python()
    downloaded = server_setup.downloaded_model(prefs)
    model = downloaded.get("path") or prefs.model
    # The transformer: a GGUF file named by hand, else the one Download Model fetched with the model (if any).
    transformer = bpy.path.abspath(prefs.transformer_file) if prefs.transformer_file else downloaded.get("gguf", "")
    return {
        "connection": prefs.connection,
        "python": python,
        "installed": bool(python) and not prefs.server_python,
        "command": prefs.server_command,
        "source_dir": bpy.path.abspath(prefs.server_source_dir) if prefs.server_source_dir else "",
        "backend": prefs.backend,
        "model": model,
        "preset": prefs.preset,
        "vram": prefs.vram,
        "transformer": transformer or "",
        "gpus": prefs.gpus,
        "url": prefs.server_url,
        "token": prefs.server_token,
        "data_dir": server_data_folder(),
    }


def _new_process(settings):
    env = None
    cwd = None
    if settings.get("installed"):
        env = clean_env()  # the env Install Server built is self-contained: no PYTHONPATH from outside
    if settings["source_dir"]:
        cwd = settings["source_dir"]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (cwd, env.get("PYTHONPATH", "")) if p)
    extra = qwen_serve_args(settings["backend"], settings["preset"], settings.get("vram", "auto"),
                            settings.get("transformer", ""))
    if settings.get("gpus") == 'ALL' and settings["backend"] != 'cpu':
        extra += ["--gpus", "all"]
    return AddonServerProcess(python_path=settings["python"] or None, command=settings["command"] or None,
                         backend=settings["backend"], model=settings["model"] or None, data_dir=settings["data_dir"],
                         extra_args=extra, cwd=cwd, env=env)


def server_state():
    with _lock:
        return dict(_state)


def crashed_message():
    """A message when the server this add-on started has died since, else ''."""
    with _lock:
        if _server is not None and _server.process is not None and not _server.is_alive():
            return _server.exit_message()
    return ""


def running_client(settings):
    """A client for a server known to be up (or a configured URL), else None: no waiting, safe on the main thread."""
    # A short timeout: operators call the server from the main thread, and a hung server must not hang Blender long.
    if settings["connection"] == 'URL':
        return ServerClient(settings["url"], settings["token"], timeout_s=MAIN_THREAD_TIMEOUT_S)
    with _lock:
        if _server is not None and _server.is_alive() and _state["status"] == "running":
            return ServerClient(_server.url, _server.token, timeout_s=MAIN_THREAD_TIMEOUT_S)
    return None


def check_settings(settings):
    """Raise ``ServerStartError`` at once (on the main thread) when there is no way to reach a server."""
    if settings["connection"] == 'START' and not settings["python"] and not settings["command"]:
        _new_process(settings)  # raises the teaching message of AddonServerProcess
    if settings["connection"] == 'URL' and not settings["url"]:
        raise ServerStartError("no server URL: set the URL and token of the running Strata server in the add-on "
                               "preferences, or let the add-on start one")


def ensure_client(settings):
    """A client, starting the server first if needed. Blocks for seconds: call it from a background thread."""
    global _server, _atexit_registered
    client = running_client(settings)
    if client is not None:
        return client
    # _start_lock serialises starts (background threads only); _lock is held for quick state reads, never while
    # waiting for the server, so the main thread never blocks on it.
    with _start_lock:
        client = running_client(settings)
        if client is not None:
            return client
        message = crashed_message()
        if message:
            raise ServerError(message)
        with _lock:
            _state.update(status="starting", message="starting the Strata server")
        try:
            server = _new_process(settings)
            server.start()
        except ServerStartError as e:
            with _lock:
                _state.update(status="failed", message=str(e))
            raise ServerError(str(e)) from None
        with _lock:
            _server = server
            _state.update(status="running", message=f"running at {server.url}", tier="")
        _record_health(ServerClient(server.url, server.token))
        if not _atexit_registered:
            atexit.register(stop_server)
            _atexit_registered = True
        return ServerClient(server.url, server.token)


def _record_health(client, attempts=20, wait_s=0.5):
    """Ask the fresh server its version and which GPU tier it chose (its worker says so once it is up); the panel and
    the preferences show them."""
    version_known = False
    for _ in range(attempts):
        try:
            health = client.health()
        except ServerError:
            health = None
        if health is not None and not version_known:
            record_version(client.url, health)
            version_known = True
        line = tier_line(health) if health is not None else ""
        if line:
            with _lock:
                _state["tier"] = line
            return
        time.sleep(wait_s)


def record_version(url, health):
    """Compare the version in ``health`` (the ``/v1/health`` answer of the server at ``url``) with the add-on's and
    keep the warning for the panel → the warning, '' when they match."""
    warning = version_warning(health, addon_version())
    with _lock:
        _state.update(version_warning=warning, version_url=url)
    return warning


def server_version_warning(client):
    """The version warning about ``client``'s server: known since the add-on started it (or last asked), else asked
    now with one quick ``/v1/health`` (a server reached by URL, on its first use)."""
    with _lock:
        if _state["version_url"] == client.url:
            return _state["version_warning"]
    try:
        health = client.health()
    except ServerError:
        return ""  # the request that follows reports what is wrong with the server
    return record_version(client.url, health)


def stop_server():
    global _server
    with _lock:
        server, _server = _server, None
        _state.update(status="stopped", message="", version_warning="", version_url="")
    if server is not None:
        server.stop()


def restart_server(settings):
    """Stop the local server and start a fresh one (new token) on a background thread → the thread."""
    stop_server()
    with _lock:
        _state.update(status="starting", message="starting the Strata server")

    def run():
        try:
            ensure_client(settings)
        except ServerError:
            pass  # ensure_client recorded the failure in _state; the panel shows it

    thread = threading.Thread(target=run, daemon=True, name="strata-restart")
    thread.start()
    return thread


def current_server():
    return _server


def unregister():
    stop_server()
