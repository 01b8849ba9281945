# SPDX-License-Identifier: GPL-3.0-or-later
"""CFG-parallel Qwen-Image-Layered on CPU: two real processes over gloo, the tiny random-weight pipeline.

The same code runs over NCCL on GPUs (``strata serve --gpus 0,1``); here rank 0 is the test process and rank 1 a
spawned follower, as in the server's worker.
"""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from test_qwen_backend import layers_array, photo, premultiplied, quick, tiny_qwen_dir  # noqa: E402,F401

from inference_server.backends.base import CancelToken  # noqa: E402
from inference_server.backends.qwen_parallel import ParallelLayout, parse_gpus  # noqa: E402
from inference_server.errors import InvalidInput, JobCanceled, StrataError  # noqa: E402

STEPS = 3


def cfg_params(**overrides):
    """True CFG on (the model card's scale 4 and negative prompt " ", cfg_normalize), 2 layers, 3 steps."""
    return quick(layers=2, num_inference_steps=STEPS, true_cfg_scale=4.0, seed=5, **overrides)


@pytest.fixture(scope="module")
def pair(tiny_qwen_dir):
    from inference_server.backends.qwen_parallel import ParallelQwenBackend

    os.environ["HF_HUB_OFFLINE"] = "1"
    backend = ParallelQwenBackend(["cpu", "cpu"], model_id=str(tiny_qwen_dir), preset="stock")
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def one_process(tiny_qwen_dir, photo):
    from inference_server.backends.qwen import QwenLayeredBackend

    backend = QwenLayeredBackend(model_id=str(tiny_qwen_dir), device="cpu")
    return layers_array(backend.decompose(photo, cfg_params()))


def test_two_processes_match_one_and_each_computes_one_branch(pair, photo, one_process):
    events = []
    stack = pair.decompose(photo, cfg_params(), progress=lambda *event: events.append(event))
    layers = layers_array(stack)
    delta = np.abs(premultiplied(layers) - premultiplied(one_process))
    print(f"CFG-parallel vs one process: max |Δ| {delta.max():.3f}, mean |Δ| {delta.mean():.5f} (premultiplied)")
    assert delta.max() <= 1.0 and delta.mean() <= 0.01
    # Rank 0 ran the transformer once per step (the prompt's branch); rank 1 did the negative prompt's.
    assert pair._forward.computed == STEPS
    info = pair.describe()
    assert info["parallel"] == "2 GPUs: CFG × 2, Ulysses × 1" and len(info["ranks"]) == 2
    assert [e for e in events if e[0] == "denoise"][-1] == ("denoise", STEPS, STEPS)


def test_cancel_reaches_the_other_rank_and_the_next_job_runs(pair, photo, one_process):
    token = CancelToken()

    def progress(stage, step, total):
        if stage == "denoise" and step == 1:
            token.cancel()

    with pytest.raises(JobCanceled, match="after 1 of"):
        pair.decompose(photo, cfg_params(), progress=progress, cancel=token)
    pids = [rank["pid"] for rank in pair.describe()["ranks"]]
    again = layers_array(pair.decompose(photo, cfg_params()))
    assert [rank["pid"] for rank in pair.describe()["ranks"]] == pids  # same processes, still in step
    assert np.abs(premultiplied(again) - premultiplied(one_process)).max() <= 1.0


def test_a_rank_that_dies_fails_its_job_with_the_reason_and_the_next_job_runs(pair, photo, one_process):
    follower_pid = pair.describe()["ranks"][1]["pid"]

    def progress(stage, step, total):
        if stage == "denoise" and step == 1:
            os.kill(follower_pid, signal.SIGKILL)

    with pytest.raises(StrataError, match=r"GPU rank 1 \(cpu\) exited with code -9 during the job"):
        pair.decompose(photo, cfg_params(), progress=progress)
    stack = pair.decompose(photo, cfg_params())
    assert pair.describe()["ranks"][1]["pid"] != follower_pid
    assert np.abs(premultiplied(layers_array(stack)) - premultiplied(one_process)).max() <= 1.0


def test_layouts_for_more_gpus_and_clear_errors():
    assert ParallelLayout.plan(2) == ParallelLayout(2, 2, 1)
    four = ParallelLayout.plan(4)
    assert (four.cfg_degree, four.ulysses_degree) == (2, 2)
    assert [four.branch(rank) for rank in range(4)] == [0, 0, 1, 1]
    assert [ParallelLayout.plan(8).branch(rank) for rank in range(8)] == [0] * 4 + [1] * 4
    assert ParallelLayout.plan(2, "ulysses") == ParallelLayout(2, 1, 2)
    with pytest.raises(InvalidInput, match="even number of GPUs; got 3"):
        ParallelLayout.plan(3)
    assert parse_gpus("0, 1") == [0, 1]
    for bad, message in (("0,0", "once"), ("0,x", "like 0,1"), ("-1,0", "start at 0")):
        with pytest.raises(InvalidInput, match=message):
            parse_gpus(bad)


def test_cli_explains_bad_gpu_lists(tmp_path, capsys):
    from conftest import sample_image

    from inference_server.cli import main

    image = tmp_path / "in.png"
    sample_image().save(image)
    cases = (
        (["--gpus", "0,1,2"], "even number of GPUs; got 3"),
        (["--gpus", "0,1", "--backend", "cpu"], "--gpus is for the qwen backend"),
        (["--gpus", "0,1"], "needs CUDA GPUs, and torch sees none"),
    )
    for extra, message in cases:
        assert main(["decompose", str(image), "-o", str(tmp_path / "out"), "--quiet", *extra]) == 2
        assert message in capsys.readouterr().err


def test_server_worker_runs_the_ranks_and_survives_a_dead_one(tiny_qwen_dir, tmp_path):
    """Through the job manager, as `strata serve --gpus` runs it: the worker process is rank 0 and spawns rank 1;
    killing rank 1 mid-job fails that job with the reason, and the next job runs on fresh processes."""
    import time

    from conftest import sample_image

    from inference_server.job_manager import JobManager, ManagerSettings

    manager = JobManager(ManagerSettings(
        data_dir=tmp_path, backend="qwen",
        backend_options={"model_id": str(tiny_qwen_dir), "devices": ["cpu", "cpu"], "preset": "stock"}))
    manager.start()
    image = sample_image().convert("RGBA")

    def run(steps: int, kill_at_step: int | None = None) -> dict:
        params = {"layers": 1, "num_inference_steps": steps, "prompt": "shapes", "seed": 3, "preset": "stock"}
        job_id = manager.submit(params, image_loader=lambda: (image, []))["id"]
        killed = False
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            record = manager.get(job_id)
            if record["status"] in ("succeeded", "failed", "canceled"):
                return record
            if kill_at_step is not None and not killed and record.get("stage") == "denoise" \
                    and (record.get("step") or 0) >= kill_at_step:
                os.kill(manager.health()["ranks"][1]["pid"], signal.SIGKILL)
                killed = True
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not finish: {manager.get(job_id)}")

    try:
        assert run(2)["status"] == "succeeded"
        health = manager.health()
        assert health["parallel"] == "2 GPUs: CFG × 2, Ulysses × 1" and health["device"] == "cpu,cpu"
        first_pids = [rank["pid"] for rank in health["ranks"]]
        failed = run(40, kill_at_step=1)
        assert failed["status"] == "failed"
        assert "GPU rank 1 (cpu) exited with code -9 during the job" in failed["error"]
        assert run(2)["status"] == "succeeded"
        pids = [rank["pid"] for rank in manager.health()["ranks"]]
        assert pids[0] == first_pids[0] and pids[1] != first_pids[1]  # same worker, a fresh rank 1
    finally:
        manager.close()
