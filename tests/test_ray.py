# SPDX-License-Identifier: GPL-3.0-or-later
"""``strata serve --ray``: the same HTTP job API with the jobs on a Ray Serve deployment of two CPU replicas
(``--backend auto``, which settles for the CPU decomposer on a machine without CUDA, as CI is).

One real server with its own local Ray instance is shared by the module (Ray's start-up takes tens of seconds); the
last test stops it and checks that a server started on the same data folder keeps the finished jobs. Each progress
report sleeps ``STEP_S`` (the worker's test-only hook ``STRATA_FAULT_INJECT``, forwarded to the replicas) so that a
job lasts long enough to kill its replica or cancel it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import REPO, ServerUnderTest, png_bytes_of, sample_image, sample_png

pytest.importorskip("ray.serve", reason="needs the ray extra: pip install 'strata[ray]'")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

STEP_S = 0.2
REPLICAS = 2


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory):
    sys.path.insert(0, str(REPO / "scripts"))
    from make_tiny_depth_anything import build_tiny_depth_model

    depth_model = build_tiny_depth_model(tmp_path_factory.mktemp("tiny-depth"))
    env = {"STRATA_FAULT_INJECT": f"slow_steps:{STEP_S}", "STRATA_DEPTH_MODEL": str(depth_model), "HF_HUB_OFFLINE": "1"}
    server = ServerUnderTest(tmp_path_factory.mktemp("ray-data"), env,
                           ("--ray", "--min-replicas", str(REPLICAS), "--max-replicas", str(REPLICAS),
                            "--cancel-grace-s", "10", "--backend", "auto"), ready_timeout_s=240)
    yield server
    server.stop()


def _replica_running(server, job_id) -> dict | None:
    """The health entry of the replica whose backend is running the job (it reported progress), else None."""
    record = server.get(f"/v1/jobs/{job_id}").json()
    assert record["status"] in ("queued", "running"), record
    if record["status"] == "running" and record["step"] >= 1:
        for replica in server.get("/v1/health").json()["replicas"]:
            if replica["job"] == job_id:
                return replica
    return None


def _running_on_replica(server, job_id, timeout_s=60.0) -> dict:
    """Wait until the job is inside the backend on a replica; returns that replica's health entry."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        replica = _replica_running(server, job_id)
        if replica is not None:
            return replica
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never got going on a replica: {server.get(f'/v1/jobs/{job_id}').json()}")


def test_health_reports_ray_and_no_serve_http_port(ray_server):
    health = ray_server.get("/v1/health").json()
    assert health["runner"] == "ray" and health["backend"] == "cpu" and health["model_loaded"] is True
    assert health["backend_error"] is None
    # Serve's HTTP proxy (port 8000 by default) is not started: jobs only enter through this server's API.
    with open("/proc/net/tcp") as handle:
        listening = {int(line.split()[1].split(":")[1], 16) for line in handle.readlines()[1:]
                     if line.split()[3] == "0A"}
    assert 8000 not in listening


def test_replicas_running_auto_on_the_cpu_say_why(ray_server):
    # As the local worker does (test_api.py): the replicas settle `auto` on their node, and /v1/health and each
    # job's notes (status and manifest) name the reason they run the CPU decomposer.
    reason = ray_server.get("/v1/health").json()["auto_fallback"]
    assert "CUDA" in reason or "torch" in reason, reason
    job = ray_server.wait(ray_server.submit(sample_png(), layers=2), timeout_s=120)
    assert job["status"] == "succeeded", job
    note = f"backend auto runs the CPU decomposer, not Qwen-Image-Layered: {reason}"
    assert note in job["notes"]
    assert note in ray_server.get(f"/v1/jobs/{job['id']}/manifest").json()["notes"]


def test_forty_jobs_from_four_clients_all_succeed_on_two_replicas(ray_server):
    server = ray_server
    results: dict[str, dict] = {}
    errors: list[str] = []

    def client(number: int) -> None:
        try:
            job_ids = []
            for index in range(10):
                image = png_bytes_of(sample_image(64 + 8 * number, 48 + 4 * index))
                while True:
                    response = server.post("/v1/jobs", files={"image": ("in.png", image, "image/png")},
                                           data={"params": json.dumps({"layers": 2, "seed": index})})
                    if response.status_code != 429:
                        break
                    time.sleep(0.2)
                assert response.status_code == 202, response.text
                job_ids.append(response.json()["id"])
            for job_id in job_ids:
                results[job_id] = server.wait(job_id, timeout_s=240)
        except Exception as exc:  # noqa: BLE001 - reported below with the client number
            errors.append(f"client {number}: {exc!r}")

    threads = [threading.Thread(target=client, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len(results) == 40
    assert {record["status"] for record in results.values()} == {"succeeded"}, [
        record["error"] for record in results.values() if record["status"] != "succeeded"]
    # The layers landed in the job folders (shipped back as bytes) and are served as before.
    for job_id, record in list(results.items())[:: 10]:
        manifest = server.get(f"/v1/jobs/{job_id}/manifest").json()
        assert manifest["job"] == job_id and len(manifest["layers"]) == record["layers"] == 2
        assert server.get(f"/v1/jobs/{job_id}/layers/1.png").headers["content-type"] == "image/png"
        assert (server.data_dir / "jobs" / job_id / "preview.png").is_file()
    # Both replicas did work.
    replicas = server.get("/v1/health").json()["replicas"]
    assert len([replica for replica in replicas if replica["jobs_done"] > 0]) == REPLICAS, replicas


def test_depth_maps_come_back_from_the_replica(ray_server):
    server = ray_server
    job_id = server.submit(sample_png(), layers=2, depth=True)
    record = server.wait(job_id, timeout_s=120)
    assert record["status"] == "succeeded", record
    assert len(server.get(f"/v1/jobs/{job_id}/manifest").json()["depth"]["files"]) == 2
    response = server.get(f"/v1/jobs/{job_id}/depth/1.png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"


def test_replica_killed_mid_job_runs_it_again_with_the_reason_and_the_next_job_succeeds(ray_server):
    server = ray_server
    deaths_before = server.get("/v1/health").json()["worker_restarts"]
    job_id = server.submit(sample_png(), layers=3)
    replica = _running_on_replica(server, job_id)
    os.kill(replica["pid"], signal.SIGKILL)

    record = server.wait(job_id, timeout_s=120)
    assert record["status"] == "succeeded", record
    note = " ".join(record["notes"])
    assert f"replica {replica['replica']} (pid {replica['pid']}" in note and "died while running this job" in note
    assert "run again on another replica" in note
    assert "run again on another replica" in " ".join(server.get(f"/v1/jobs/{job_id}/manifest").json()["notes"])
    health = server.get("/v1/health").json()
    assert health["worker_restarts"] == deaths_before + 1
    assert replica["pid"] not in [entry["pid"] for entry in health["replicas"]]

    next_id = server.submit(sample_png(), layers=2)
    assert server.wait(next_id, timeout_s=120)["status"] == "succeeded"


def test_health_forgets_a_replica_that_is_gone(ray_server):
    # A replica that ends between jobs (autoscaling removed it, or it died idle) leaves /v1/health's list.
    server = ray_server
    idle = [entry for entry in server.get("/v1/health").json()["replicas"] if entry["job"] is None]
    assert idle, "every replica that ran a job is listed"
    os.kill(idle[0]["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while idle[0]["replica"] in [entry["replica"] for entry in server.get("/v1/health").json()["replicas"]]:
        assert time.monotonic() < deadline, "the dead replica is still listed"
        time.sleep(0.5)
    assert server.wait(server.submit(sample_png(), layers=2), timeout_s=120)["status"] == "succeeded"


def test_cancel_running_and_queued_jobs(ray_server):
    server = ray_server
    jobs = [server.submit(sample_png(), layers=3) for _ in range(REPLICAS + 1)]
    # One more than the replicas: the last waits in the queue and is canceled at once.
    response = server.post(f"/v1/jobs/{jobs[-1]}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "canceled"
    # The others are canceled as soon as each runs on a replica (one may wait for the replica killed above to be
    # replaced). Both are watched at once: handling one job first let the other reach its last step, past every
    # cancel check, and succeed (seen once in three runs).
    running = jobs[:-1]
    replicas: dict[str, dict] = {}
    canceled_at: dict[str, float] = {}
    deadline = time.monotonic() + 120
    while len(replicas) < len(running):
        assert time.monotonic() < deadline, f"not every job got going on a replica: {replicas}"
        for job_id in set(running) - set(replicas):
            replica = _replica_running(server, job_id)
            if replica is not None:
                replicas[job_id], canceled_at[job_id] = replica, time.time()
                response = server.post(f"/v1/jobs/{job_id}/cancel")
                assert response.status_code == 200 and response.json()["cancel_requested"] is True
        time.sleep(0.02)
    for job_id in running:
        record = server.wait(job_id, timeout_s=30)
        assert record["status"] == "canceled" and record["error"] is None, record
        assert record["finished_at"] - canceled_at[job_id] < 3 * STEP_S + 3, "the replica checks the flag every step"
        assert not (server.data_dir / "jobs" / job_id / "manifest.json").exists()
    # Cooperative: the replicas were not restarted.
    pids = {entry["pid"] for entry in server.get("/v1/health").json()["replicas"]}
    assert {replica["pid"] for replica in replicas.values()} <= pids
    assert server.wait(server.submit(sample_png(), layers=2), timeout_s=60)["status"] == "succeeded"


def test_full_cluster_answers_429(ray_server):
    server = ray_server
    submitted, refused = [], None
    for _ in range(REPLICAS + 8 + 4):  # the replicas' jobs, the default --max-queue 8, then more
        response = server.post("/v1/jobs", files={"image": ("a.png", sample_png(), "image/png")},
                               data={"params": json.dumps({"layers": 3})})
        if response.status_code == 429:
            refused = response
            break
        submitted.append(response.json()["id"])
    assert refused is not None, "the queue never filled"
    assert "queue is full" in refused.json()["detail"] and int(refused.headers["retry-after"]) > 0
    for job_id in submitted:
        server.post(f"/v1/jobs/{job_id}/cancel")
    for job_id in submitted:
        assert server.wait(job_id, timeout_s=60)["status"] == "canceled"


def test_restart_keeps_the_finished_jobs(ray_server, start_server):
    # Last in the module: stops the shared server. A server started on the same data folder (here a local one,
    # which starts in seconds) serves the jobs the replicas finished.
    server = ray_server
    done = server.submit(sample_png(), layers=2)
    assert server.wait(done, timeout_s=60)["status"] == "succeeded"
    server.stop()
    assert server.proc.returncode in (0, 15, -signal.SIGTERM), "".join(server.stderr_lines[-20:])
    again = start_server(server.data_dir)
    assert again.get(f"/v1/jobs/{done}").json()["status"] == "succeeded"
    assert again.get(f"/v1/jobs/{done}/layers/1.png").status_code == 200


def test_replica_options_need_ray():
    result = subprocess.run([sys.executable, "-m", "inference_server", "serve", "--max-replicas", "2"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--max-replicas only apply with --ray" in result.stderr
