# SPDX-License-Identifier: GPL-3.0-or-later
"""The add-on's AddonServerProcess: starts a real `strata serve` on port 0, learns its URL, reports crashes clearly."""

import os
import sys
from pathlib import Path

import pytest

from blender_addon.core.client import ServerClient, ServerError
from blender_addon.core.server_process import AddonServerProcess, ServerStartError, qwen_serve_args, tier_line

REPO = Path(__file__).resolve().parents[2]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def test_start_reuse_and_stop(tmp_path):
    server = AddonServerProcess(sys.executable, backend="cpu", data_dir=tmp_path / "data", cwd=str(REPO), env=_env())
    try:
        url = server.start()
        assert url.startswith("http://127.0.0.1:")
        assert server.is_alive()
        assert server.start() == url  # already running: reused, not restarted
        health = ServerClient(url, server.token).health()
        assert health["status"] == "ok" and health["backend"] == "cpu"
        # A fresh random token per start: the wrong one is refused.
        with pytest.raises(ServerError) as caught:
            ServerClient(url, "not-the-token-0123456789").health()
        assert caught.value.status == 401
    finally:
        server.stop()
    assert not server.is_alive()
    with pytest.raises(ServerError, match="cannot reach the Strata server"):
        ServerClient(url, server.token).health()


def test_crash_is_reported_with_exit_code_and_log(tmp_path):
    server = AddonServerProcess(sys.executable, backend="cpu", data_dir=tmp_path / "data", cwd=str(REPO), env=_env())
    server.start()
    server.process.kill()
    server.process.wait()
    assert not server.is_alive()
    assert "stopped (exit code" in server.exit_message()
    assert "Restart server" in server.exit_message()
    server.stop()


def test_server_that_dies_at_startup_explains_why(tmp_path):
    bad = AddonServerProcess(command=[sys.executable, "-c", "import sys; sys.stderr.write('boom: no weights\\n'); "
                                                      "sys.exit(3)"], data_dir=tmp_path / "data")
    with pytest.raises(ServerStartError, match="exited with code 3(.|\n)*boom: no weights"):
        bad.start()


def test_missing_python_and_nothing_configured(tmp_path):
    with pytest.raises(ServerStartError, match="does not exist"):
        AddonServerProcess(str(tmp_path / "nope" / "python"), data_dir=tmp_path).start()
    with pytest.raises(ServerStartError, match="set the server's Python"):
        AddonServerProcess(None)


def test_silent_server_times_out(tmp_path):
    silent = AddonServerProcess(command=[sys.executable, "-c", "import time; time.sleep(30)"], data_dir=tmp_path,
                           startup_timeout_s=1.0)
    with pytest.raises(ServerStartError, match="did not report listening within 1 s"):
        silent.start()
    assert not silent.is_alive()


def test_qwen_serve_args_carry_the_vram_tier_and_gguf_transformer():
    assert qwen_serve_args("cpu", "exact", "16", "/m/t.gguf") == []
    assert qwen_serve_args("auto", "exact", "auto", "") == ["--preset", "exact", "--vram", "auto"]
    assert qwen_serve_args("qwen", "", "12", "/models/qwen-layered-Q4_K_M.gguf") == [
        "--vram", "12", "--transformer", "/models/qwen-layered-Q4_K_M.gguf"]
    with pytest.raises(ServerStartError, match="VRAM tier must be one of"):
        qwen_serve_args("qwen", "exact", "10", "")


def test_tier_line_shows_the_chosen_tier_or_why_qwen_did_not_load():
    health = {"backend": "qwen", "tier": {"summary": "16 GB tier: 4-bit transformer (nf4); 15.1 GiB free",
                                          "reason": "auto: 15.1 GiB free VRAM"}}
    assert tier_line(health) == "16 GB tier: 4-bit transformer (nf4); 15.1 GiB free (auto: 15.1 GiB free VRAM)"
    assert tier_line({"backend": "qwen", "backend_error": "this GPU has 5.8 GiB free; the smallest tier (8 GB) "
                                                          "needs 6.5 GiB free VRAM"}).startswith(
        "Qwen not loaded: this GPU has 5.8 GiB free")
    assert tier_line({"backend": "cpu"}) == "CPU backend (no GPU tier)"
    assert tier_line({"backend": "qwen"}) == ""


def test_gpu_count_probe_reads_the_server_pythons_torch(tmp_path):
    from blender_addon.core.server_process import count_cuda_gpus

    server_python = os.environ.get("STRATA_SERVER_PYTHON", sys.executable)
    count = count_cuda_gpus(server_python)
    assert isinstance(count, int) and count >= 0  # 0 on a machine without CUDA, like CI
    assert count_cuda_gpus(str(tmp_path / "no-such-python")) is None
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho not a number\n")
    broken.chmod(0o755)
    assert count_cuda_gpus(str(broken)) is None
