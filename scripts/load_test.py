"""Load test: many small jobs from several client threads against a real ``strata serve`` on loopback.

Each client submits its share of the jobs without waiting for them (so the bounded queue fills and clients meet 429
and retry), then polls its jobs to the end. Every job must reach a terminal status; the server's and the worker's
resident memory are sampled as jobs complete (a leak shows as growth that does not level off). Prints a table.

    .venv/bin/python scripts/load_test.py                 # 200 jobs, 4 threads, cpu backend
    .venv/bin/python scripts/load_test.py --jobs 1000 --threads 8 --size 128
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TERMINAL = ("succeeded", "failed", "canceled")


def rss_mib(pid: int | None) -> float:
    if not pid:
        return float("nan")
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return float("nan")


def test_image(size_px: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    rgb = np.full((size_px, size_px, 3), rng.integers(0, 255, 3), np.uint8)
    for _ in range(3):
        x, y = rng.integers(0, size_px // 2, 2)
        rgb[y: y + size_px // 3, x: x + size_px // 3] = rng.integers(0, 255, 3)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def _quartiles(samples: list[tuple[int, float, float]], column: int, jobs: int, final_mib: float) -> str:
    """The first memory sample taken once a quarter, half, three quarters of the jobs had finished (MiB)."""
    values = []
    for fraction in (0.25, 0.5, 0.75):
        later = [sample[column] for sample in samples if sample[0] >= fraction * jobs]
        values.append(f"{later[0]:.1f}" if later else "–")
    return " / ".join(values + [f"{final_mib:.1f} MiB"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--size", type=int, default=64, help="image side in px")
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--max-queue", type=int, default=8)
    parser.add_argument("--keep-data", action="store_true", help="keep the server's data folder (default: delete it)")
    args = parser.parse_args()

    token = "load-test-token-0123456789"
    data_dir = Path(tempfile.mkdtemp(prefix="strata-load-"))
    server = subprocess.Popen(
        [sys.executable, "-m", "inference_server", "serve", "--port", "0", "--data-dir", str(data_dir),
         "--backend", "cpu", "--max-queue", str(args.max_queue)],
        cwd=REPO, env=dict(os.environ, STRATA_TOKEN=token), stdout=subprocess.PIPE, text=True)
    url = json.loads(server.stdout.readline())["url"]
    session_headers = {"Authorization": f"Bearer {token}"}

    def health() -> dict:
        return requests.get(url + "/v1/health", headers=session_headers, timeout=30).json()

    # Warm up (first job imports the decomposer's modules in the worker), then take the "before" sample.
    warm = requests.post(url + "/v1/jobs", headers=session_headers, timeout=30,
                         files={"image": ("w.png", test_image(args.size, 0), "image/png")},
                         data={"params": json.dumps({"layers": args.layers})}).json()["id"]
    while requests.get(f"{url}/v1/jobs/{warm}", headers=session_headers, timeout=30).json()["status"] not in TERMINAL:
        time.sleep(0.05)
    worker_pid_before = health()["worker_pid"]
    rss_before = (rss_mib(server.pid), rss_mib(worker_pid_before))

    lock = threading.Lock()
    statuses: dict[str, int] = {}
    latencies_s: list[float] = []
    retries_429 = [0]
    errors: list[str] = []
    shares = [list(range(1 + n, args.jobs + 1, args.threads)) for n in range(args.threads)]
    rss_samples: list[tuple[int, float, float]] = []  # (jobs finished, server MiB, worker MiB)
    done = threading.Event()

    def client(indices: list[int]) -> None:
        session = requests.Session()
        session.headers.update(session_headers)
        submitted: list[tuple[str, float]] = []
        for index in indices:  # submit all, without waiting: the queue fills and answers 429
            image = test_image(args.size, index)
            started = time.perf_counter()
            while True:
                response = session.post(url + "/v1/jobs", timeout=30, files={"image": ("a.png", image, "image/png")},
                                        data={"params": json.dumps({"layers": args.layers, "seed": index})})
                if response.status_code != 429:
                    break
                with lock:
                    retries_429[0] += 1
                time.sleep(0.05)
            if response.status_code != 202:
                with lock:
                    errors.append(f"submit {response.status_code}: {response.text[:200]}")
                continue
            submitted.append((response.json()["id"], started))
        for job_id, started in submitted:
            deadline = time.monotonic() + 300
            status = "timeout"
            while time.monotonic() < deadline:
                record = session.get(f"{url}/v1/jobs/{job_id}", timeout=30).json()
                if record["status"] in TERMINAL:
                    status = record["status"]
                    if status == "failed":
                        with lock:
                            errors.append(f"job {job_id} failed: {record['error']}")
                    if status == "succeeded":
                        layer = session.get(f"{url}/v1/jobs/{job_id}/layers/0.png", timeout=30)
                        if layer.status_code != 200:
                            status = f"layer-fetch-{layer.status_code}"
                    break
                time.sleep(0.02)
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                latencies_s.append(time.perf_counter() - started)

    def sample_memory() -> None:
        while not done.wait(1.0):
            jobs = requests.get(url + "/v1/jobs", headers=session_headers, timeout=30).json()["jobs"]
            finished = sum(job["status"] in TERMINAL for job in jobs) - 1  # not the warm-up job
            rss_samples.append((finished, rss_mib(server.pid), rss_mib(health().get("worker_pid"))))

    started = time.perf_counter()
    sampler = threading.Thread(target=sample_memory)
    sampler.start()
    threads = [threading.Thread(target=client, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    sampler.join()
    wall_s = time.perf_counter() - started
    final_health = health()
    rss_after = (rss_mib(server.pid), rss_mib(final_health["worker_pid"]))
    server.terminate()
    server.wait(30)
    if not args.keep_data:
        shutil.rmtree(data_dir, ignore_errors=True)

    latencies_s.sort()
    rows = [
        ("jobs", f"{args.jobs} ({args.size}×{args.size} px, {args.layers} layers, {args.threads} client threads)"),
        ("terminal statuses", ", ".join(f"{name} {count}" for name, count in sorted(statuses.items()))),
        ("errors (submit or job)", str(len(errors))),
        ("429 retries", str(retries_429[0])),
        ("wall time", f"{wall_s:.1f} s ({args.jobs / wall_s:.1f} jobs/s)"),
        ("submit → done p50 / p95 / max", f"{statistics.median(latencies_s):.3f} / "
                                    f"{latencies_s[int(0.95 * (len(latencies_s) - 1))]:.3f} / {latencies_s[-1]:.3f} s"),
        ("server RSS before → after", f"{rss_before[0]:.1f} → {rss_after[0]:.1f} MiB"),
        ("worker RSS before → after", f"{rss_before[1]:.1f} → {rss_after[1]:.1f} MiB"),
        ("server RSS at 25/50/75/100 % done", _quartiles(rss_samples, 1, args.jobs, rss_after[0])),
        ("worker RSS at 25/50/75/100 % done", _quartiles(rss_samples, 2, args.jobs, rss_after[1])),
        ("worker restarts", str(final_health["worker_restarts"])),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'metric':<{width}} | value")
    print(f"{'-' * width}-+-{'-' * 40}")
    for name, value in rows:
        print(f"{name:<{width}} | {value}")
    for error in errors[:5]:
        print("error:", error)
    all_terminal = sum(statuses.values()) == args.jobs and set(statuses) <= set(TERMINAL)
    ok = all_terminal and not errors and statuses.get("succeeded", 0) == args.jobs
    print("RESULT:", "ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
