# SPDX-License-Identifier: GPL-3.0-or-later
"""Download Model against a Hub-like HTTP server on 127.0.0.1 serving the tiny pipeline: progress per file, a killed
download resumes with a Range request, the folder loads with ``from_pretrained``, and a too-small disk is refused
before a byte is fetched. The download runs as the add-on runs it: ``python -m inference_server.model_download``
in a subprocess, followed by the add-on's own ``ModelDownload`` task."""

import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blender_addon.core.model_download_task import DownloadOptions, ModelDownload, downloaded

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from hub_repo_server import HubRepoServer  # noqa: E402  (test-data code under scripts/)

REPO_ID = "strata-tests/tiny-qwen-layered"


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("make_tiny_qwen_layered",
                                                  REPO / "scripts" / "make_tiny_qwen_layered.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    return builder.build_tiny_pipeline(tmp_path_factory.mktemp("hub") / "tiny")


def _env(hub_url, tmp_path):
    # 16 KiB pieces: the tiny pipeline's files are ~200 KB, real ones GBs (1 MiB pieces by default)
    env = dict(os.environ, HF_ENDPOINT=hub_url, HF_HOME=str(tmp_path / "hf-home"), PYTHONUNBUFFERED="1",
               STRATA_DOWNLOAD_CHUNK_BYTES=str(16 * 1024))
    env.pop("HF_HUB_OFFLINE", None)  # scripts/test.sh sets it for the other tests
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_killed_download_resumes_and_loads(tiny_repo, tmp_path):
    largest = max((p for p in tiny_repo.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    largest_name = largest.relative_to(tiny_repo).as_posix()
    largest_bytes = largest.stat().st_size
    local_dir = tmp_path / "model"
    argv = [sys.executable, "-m", "inference_server.model_download", "--model", REPO_ID, "--local-dir", str(local_dir)]
    # Slow enough that the largest file takes about 4 s: the kill lands in the middle of it.
    with HubRepoServer(tiny_repo, REPO_ID, bytes_per_s=largest_bytes / 4) as hub:
        env = _env(hub.url, tmp_path)
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
        events = []
        for line in process.stdout:
            event = json.loads(line)
            events.append(event)
            if event["event"] == "file" and event["name"] == largest_name and 0 < event["bytes"] < event["size"]:
                break
        process.send_signal(signal.SIGKILL)  # as when Blender is killed mid-download
        process.wait(10)
        process.stdout.close()
        plan = events[0]
        assert plan["event"] == "plan" and plan["tier"] == "bf16" and plan["have_bytes"] == 0
        assert {f["name"] for f in plan["files"]} == {p.relative_to(tiny_repo).as_posix() for p in
                                                      tiny_repo.rglob("*") if p.is_file() and p.suffix != ".gguf"}
        assert plan["total_bytes"] == sum(f["size"] for f in plan["files"])
        parts = list((local_dir / ".partial").glob("*.part"))
        assert len(parts) == 1 and 0 < parts[0].stat().st_size < largest_bytes
        assert not (local_dir / largest_name).exists()  # only whole files move into place
        kept_bytes = parts[0].stat().st_size

        # Again, through the add-on's task: it resumes, reports per-file progress and ends with the folder.
        hub.bytes_per_s = largest_bytes / 2
        hub.requests.clear()
        task = ModelDownload(DownloadOptions(python=sys.executable, local_dir=str(local_dir), model=REPO_ID,
                                             env=env, log_path=str(tmp_path / "download.log"))).start()
        stages = []
        while not task.snapshot().done:
            stages.append(task.snapshot().stage)
            time.sleep(0.1)
        snapshot = task.snapshot()
        assert snapshot.status == "succeeded", snapshot.error + "\n".join(snapshot.log_tail)
        assert snapshot.result["tier"] == "bf16" and snapshot.result["path"] == str(local_dir)
        assert any(stage.startswith("file ") and largest_name in stage for stage in stages)
        assert task.plan["have_bytes"] >= kept_bytes  # the partial file counted as already here
        resumed = [start for method, path, start in hub.requests if method == "GET" and path.endswith(largest_name)]
        assert resumed and resumed[0] >= kept_bytes  # a Range request for the rest, not the whole file again
        finished = [p for p in hub.requests if p[0] == "GET" and "/resolve/" in p[1]]
        assert len(finished) == 1  # files finished before the kill were not fetched again

    for path in tiny_repo.rglob("*"):
        if path.is_file() and path.suffix != ".gguf":
            assert _sha(local_dir / path.relative_to(tiny_repo)) == _sha(path), path
    assert not (local_dir / ".partial").exists()
    assert downloaded(local_dir)["repo"] == REPO_ID

    from inference_server.backends.qwen import QwenLayeredBackend

    pipe = QwenLayeredBackend(model_id=str(local_dir))._from_pretrained()  # the qwen backend's own loading path
    assert type(pipe).__name__ == "QwenImageLayeredPipeline"


def test_gguf_tier_fetches_one_transformer_file_and_the_rest(tiny_repo, tmp_path):
    ggufs = sorted(tiny_repo.glob("*.gguf"))
    if not ggufs:
        pytest.skip("this tiny pipeline has no GGUF transformer")
    local_dir = tmp_path / "model"
    with HubRepoServer(tiny_repo, REPO_ID) as hub:
        task = ModelDownload(DownloadOptions(python=sys.executable, local_dir=str(local_dir), model=REPO_ID,
                                             gguf=f"{REPO_ID}/{ggufs[0].name}", env=_env(hub.url, tmp_path))).start()
        snapshot = task.wait(120)
    assert snapshot.status == "succeeded", snapshot.error
    assert task.plan["tier"] == "gguf"
    assert not list(local_dir.glob("transformer/*.safetensors"))  # the bf16 transformer is not needed
    assert _sha(local_dir / "gguf" / ggufs[0].name) == _sha(ggufs[0])
    assert (local_dir / "vae" / "diffusion_pytorch_model.safetensors").is_file()
    assert downloaded(local_dir)["gguf"] == str(local_dir / "gguf" / ggufs[0].name)


def test_too_little_disk_is_refused_before_downloading(tiny_repo, tmp_path):
    with HubRepoServer(tiny_repo, REPO_ID) as hub:
        hub.files["transformer/huge.safetensors"] = (2**50, "0" * 64)  # listed, 1 PiB: more than any disk here
        task = ModelDownload(DownloadOptions(python=sys.executable, local_dir=str(tmp_path / "model"), model=REPO_ID,
                                             env=_env(hub.url, tmp_path))).start()
        snapshot = task.wait(120)
        fetched = [r for r in hub.requests if "/resolve/" in r[1]]
    assert snapshot.status == "failed"
    assert "not enough free disk space" in snapshot.error and "GB still to download" in snapshot.error
    assert fetched == []


def test_unreachable_hub_says_so(tmp_path):
    env = _env("http://127.0.0.1:9", tmp_path)
    task = ModelDownload(DownloadOptions(python=sys.executable, local_dir=str(tmp_path / "model"), model=REPO_ID,
                                         env=env)).start()
    snapshot = task.wait(120)
    assert snapshot.status == "failed"
    assert "cannot reach the Hub at http://127.0.0.1:9" in snapshot.error, snapshot.error
