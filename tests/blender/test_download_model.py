# SPDX-License-Identifier: GPL-3.0-or-later
"""Download Model from the add-on's preferences against a Hub-like server on 127.0.0.1 serving the tiny pipeline:
the operator returns at once, the task reports the tier and per-file progress, and afterwards the server is started
with the downloaded folder as its model."""

import os
import subprocess
import sys
import time

import bpy
from conftest import ADDON, REPO, SERVER_PYTHON, prefs

sys.path.insert(0, str(REPO / "scripts"))
from hub_repo_server import HubRepoServer  # noqa: E402  (test-data code under scripts/)

REPO_ID = "strata-tests/tiny-qwen-layered"


def test_download_model_operator_fetches_the_tier_and_the_server_uses_it(addon, tmp_path, monkeypatch):
    tiny = tmp_path / "tiny"
    subprocess.run([SERVER_PYTHON, str(REPO / "scripts" / "make_tiny_qwen_layered.py"), str(tiny)], check=True,
                   timeout=300, capture_output=True)
    server_setup = sys.modules[f"{ADDON}.server_setup"]
    connection = sys.modules[f"{ADDON}.connection"]
    preferences = prefs()
    with HubRepoServer(tiny, REPO_ID, bytes_per_s=400_000) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.setenv("STRATA_DOWNLOAD_CHUNK_BYTES", str(16 * 1024))
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        bpy.context.preferences.system.use_online_access = True
        preferences.model = REPO_ID
        try:
            assert server_setup.downloaded_model(preferences) == {}
            started = time.perf_counter()
            assert bpy.ops.strata.download_model() == {'FINISHED'}
            assert time.perf_counter() - started < 1.0  # Blender does not wait
            assert not bpy.ops.strata.download_model.poll()  # one at a time
            task = server_setup.task("download")
            stages = []
            deadline = time.monotonic() + 300
            while not task.snapshot().done and time.monotonic() < deadline:
                server_setup.tick()
                stages.append(task.snapshot().stage)
                time.sleep(0.1)
            snapshot = task.snapshot()
            assert snapshot.status == "succeeded", snapshot.error + "\n".join(snapshot.log_tail)
            assert task.plan["tier"] == "bf16" and task.plan["total_bytes"] > 0  # what the preferences show
            assert any(stage.startswith("file ") and " of " in stage for stage in stages)
            record = server_setup.downloaded_model(preferences)
            assert record["tier"] == "bf16" and record["repo"] == REPO_ID
            assert os.path.isfile(os.path.join(record["path"], "model_index.json"))
            assert connection.settings_from_preferences(preferences)["model"] == record["path"]
        finally:
            preferences.model = ""


def test_a_downloaded_gguf_becomes_the_servers_transformer(addon, tmp_path, monkeypatch):
    """Download Model with a GGUF file: the server the add-on starts gets it as --transformer, unless a local GGUF
    file is set in the preferences."""
    tiny = tmp_path / "tiny"
    subprocess.run([SERVER_PYTHON, str(REPO / "scripts" / "make_tiny_qwen_layered.py"), str(tiny), "--gguf"],
                   check=True, timeout=300, capture_output=True)
    server_setup = sys.modules[f"{ADDON}.server_setup"]
    connection = sys.modules[f"{ADDON}.connection"]
    preferences = prefs()
    with HubRepoServer(tiny, REPO_ID) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        bpy.context.preferences.system.use_online_access = True
        preferences.model = REPO_ID
        preferences.gguf_file = f"{REPO_ID}/transformer-Q8_0.gguf"
        preferences.backend = 'qwen'
        try:
            assert bpy.ops.strata.download_model() == {'FINISHED'}
            task = server_setup.task("download")
            deadline = time.monotonic() + 300
            while not task.snapshot().done and time.monotonic() < deadline:
                server_setup.tick()
                time.sleep(0.1)
            snapshot = task.snapshot()
            assert snapshot.status == "succeeded", snapshot.error + "\n".join(snapshot.log_tail)
            record = server_setup.downloaded_model(preferences)
            settings = connection.settings_from_preferences(preferences)
            assert settings["transformer"] == record["gguf"] and settings["transformer"].endswith(".gguf")
            assert os.path.isfile(settings["transformer"])
            process = connection._new_process(settings)
            assert process.argv()[-2:] == ["--transformer", record["gguf"]]
            local = tmp_path / "mine.gguf"
            local.write_bytes(b"GGUF")
            preferences.transformer_file = str(local)
            assert connection.settings_from_preferences(preferences)["transformer"] == str(local)
        finally:
            preferences.model = ""
            preferences.gguf_file = ""
            preferences.transformer_file = ""
            preferences.backend = 'auto'
