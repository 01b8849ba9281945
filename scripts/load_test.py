# SPDX-License-Identifier: GPL-3.0-or-later
"""Load test: many small jobs from several client threads against a real ``strata serve`` on loopback.

Each client submits its share of the jobs without waiting for them (so the bounded queue fills and clients meet 429
and retry), then polls its jobs to the end. Every job must reach a terminal status; the server's and the worker's
resident memory are sampled as jobs complete (a leak shows as growth that does not level off). Prints a table.

With ``--ray`` the same load runs on the local worker (the baseline, no Ray), then on ``strata serve --ray`` with 1
and 2 replicas (``--replicas``), and the table puts them side by side: jobs/s and its ratio to 1 replica, latency,
and memory per replica.

    .venv/bin/python scripts/load_test.py                 # 200 jobs, 4 threads, cpu backend
    .venv/bin/python scripts/load_test.py --jobs 1000 --threads 8 --size 128
    .venv/bin/python scripts/load_test.py --ray --jobs 80 # local worker vs 1 vs 2 Ray Serve replicas (cpu)
    .venv/bin/python scripts/load_test.py --ray --backend qwen --replicas 1,2 ...   # GPU box, see the README
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import signal
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


def _spin(iterations: int) -> None:
    total = 0
    for number in range(iterations):
        total += number & 7


def core_scaling(iterations: int = 20_000_000) -> float:
    """Throughput of two processes of plain Python work on this machine over one: the most two replicas can gain
    on its cores (hyperthreads, a shared or busy host and turbo clocks make it less than 2)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    walls = []
    for count in (1, 2):
        processes = [context.Process(target=_spin, args=(iterations,)) for _ in range(count)]
        started = time.perf_counter()
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        walls.append(time.perf_counter() - started)
    return 2 * walls[0] / walls[1]


def process_tree_cpu_s(root_pid: int) -> dict[int, tuple[float, str]]:
    """CPU seconds (user + system) each live process below ``root_pid`` (itself included) has used so far, with its
    command line: the API server, its worker, and with --ray every Ray process (GCS, raylet, controller, replicas)."""
    tick_s = 1 / os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) * tick_s
    tree, frontier = {root_pid}, [root_pid]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier and pid not in tree]
        tree.update(children)
        frontier = children
    result = {}
    for pid in tree:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        result[pid] = (cpu.get(pid, 0.0), command)
    return result


def cpu_by_role_s(before: dict[int, tuple[float, str]], after: dict[int, tuple[float, str]], server_pid: int,
                  worker_pids: set[int]) -> dict[str, float]:
    """CPU seconds used between two ``process_tree_cpu_s`` snapshots, summed by role."""
    roles = {"API server": 0.0, "worker / replicas": 0.0, "Ray's own processes": 0.0}
    for pid, (seconds, command) in after.items():
        used = seconds - before.get(pid, (0.0, ""))[0]
        if pid == server_pid:
            roles["API server"] += used
        elif pid in worker_pids or "ServeReplica" in command:
            roles["worker / replicas"] += used
        else:
            roles["Ray's own processes"] += used
    return roles


def _script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def serve_with_random_model(kind: str, argv: list[str]) -> int:
    """``strata serve`` (``argv``) whose Ray Serve replicas each build Qwen-Image-Layered's architecture with random
    weights (scripts/bench_gpu.py's builder: real size straight on the replica's GPU in ~15 s, or tiny on the CPU)
    instead of loading weights: a 57 GB folder saved and loaded by every replica took minutes of the GPU machine's
    time and measures nothing a job does. Everything else (the HTTP API, RayRunner, the deployment, the replica's job
    path and the backend) is the product's own code."""
    sys.path.insert(0, str(REPO))
    from ray import serve

    from inference_server import cli, ray_replica

    class RandomWeightsReplica(ray_replica.StrataReplica):
        def _create_backend(self, backend_name, backend_options):
            from inference_server.backends.qwen import QwenLayeredBackend

            started = time.perf_counter()
            pipe = _script("bench_gpu").build_random_pipeline("cuda" if kind == "real" else "cpu",
                                                               tiny=kind == "tiny")
            print(f"replica pid {os.getpid()}: random {kind} model built in {time.perf_counter() - started:.1f} s",
                  file=sys.stderr, flush=True)
            options = {key: value for key, value in backend_options.items() if key not in ("model_id", "vram")}
            return QwenLayeredBackend(pipeline=pipe, **options)

    def deployment(**options):
        return serve.deployment(RandomWeightsReplica, **{**ray_replica.DEPLOYMENT_OPTIONS, **options})

    # What RayRunner deploys (it looks the function up when it deploys); the class travels to the replicas by value.
    ray_replica.replica_deployment = deployment
    return cli.main(argv)


def main() -> int:
    # SIGTERM (a `timeout`) unwinds like Ctrl-C, so that the servers (and their Ray instances, GPUs) are stopped.
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
    if sys.argv[1:2] == ["--serve-random-model"]:
        return serve_with_random_model(sys.argv[2], sys.argv[3:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--size", type=int, default=64, help="image side in px")
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--max-queue", type=int, default=8)
    parser.add_argument("--backend", default="cpu", choices=("cpu", "qwen", "auto"))
    parser.add_argument("--params", default="{}", help="extra job parameters as JSON, e.g. '{\"resolution\": 640}'")
    parser.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                        help="extra argument for strata serve (repeat), e.g. --server-arg=--model=/weights")
    parser.add_argument("--ray", action="store_true", help="compare Ray Serve replica counts side by side")
    parser.add_argument("--replicas", default="0,1,2",
                        help="with --ray: replica counts to compare; 0 is the local worker without Ray, the baseline "
                             "(default 0,1,2)")
    parser.add_argument("--random-model", choices=("real", "tiny"),
                        help="with --ray: Qwen-Image-Layered's architecture with random weights, built by each "
                             "replica (real size on its GPU, or tiny on the CPU: add --server-arg=--gpus-per-replica=0;"
                             " scripts/bench_gpu.py's builder); implies --backend qwen")
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help="also write the measurements as JSON (rewritten after each server run)")
    parser.add_argument("--poll-s", type=float,
                        help="client's status poll interval; a client waits 2.5 times as long after a 429 (default "
                             "0.02 s; 0.5 s with --ray, so that the clients leave the CPU to the replicas measured)")
    parser.add_argument("--keep-data", action="store_true", help="keep the server's data folder (default: delete it)")
    args = parser.parse_args()
    if args.poll_s is None:
        args.poll_s = 0.5 if args.ray else 0.02
    counts = [int(text) for text in args.replicas.split(",")]
    if args.random_model:
        if not args.ray or 0 in counts:
            parser.error("--random-model runs on Ray Serve replicas: give --ray and --replicas without 0 (e.g. 1,2)")
        args.backend = "qwen"
    if not args.ray:
        result = run_load(args, [])
        _write_json(args, [(None, result)])
        return print_single(args, result)
    args.core_scaling = core_scaling()
    columns: list[tuple[int, dict]] = []
    for count in counts:
        print(f"running {args.jobs} jobs on {count or 'the local worker, no'} replica(s)...", file=sys.stderr,
              flush=True)
        server_args = ["--ray", "--min-replicas", str(count), "--max-replicas", str(count)] if count else []
        columns.append((count, run_load(args, server_args, warm_jobs=max(count, 1))))
        _write_json(args, columns)
    return print_ray(args, columns)


def _write_json(args: argparse.Namespace, columns: list) -> None:
    if args.json is None:
        return
    runs = [{"replica_count": count, "jobs": args.jobs, "jobs_per_s": args.jobs / result["wall_s"],
             **{key: value for key, value in result.items() if key != "health"},
             "describe": {key: value for key, value in result["health"].items() if key != "replicas"}}
            for count, result in columns]
    args.json.write_text(json.dumps({"args": {key: str(value) for key, value in vars(args).items()}, "runs": runs,
                                     "cpus": len(os.sched_getaffinity(0))}, indent=1, default=str))


def run_load(args: argparse.Namespace, server_args: list[str], warm_jobs: int = 1) -> dict:
    """Start a server, warm it up, run the load, stop it; the measurements."""
    token = "load-test-token-0123456789"
    data_dir = Path(tempfile.mkdtemp(prefix="strata-load-"))
    command = ([sys.executable, __file__, "--serve-random-model", args.random_model] if args.random_model
               else [sys.executable, "-m", "inference_server"])
    server = subprocess.Popen(
        [*command, "serve", "--port", "0", "--data-dir", str(data_dir),
         "--backend", args.backend, "--max-queue", str(args.max_queue), *server_args, *args.server_arg],
        cwd=REPO, env=dict(os.environ, STRATA_TOKEN=token), stdout=subprocess.PIPE, text=True)
    try:
        url = json.loads(server.stdout.readline())["url"]
        session_headers = {"Authorization": f"Bearer {token}"}
        job_params = {"layers": args.layers, **json.loads(args.params)}

        def health() -> dict:
            return requests.get(url + "/v1/health", headers=session_headers, timeout=30).json()

        # Warm up (first job imports the decomposer's modules in the worker; one job per replica), then take the
        # "before" sample.
        warm = [requests.post(url + "/v1/jobs", headers=session_headers, timeout=30,
                              files={"image": ("w.png", test_image(args.size, number), "image/png")},
                              data={"params": json.dumps(job_params)}).json()["id"] for number in range(warm_jobs)]
        for job_id in warm:
            while requests.get(f"{url}/v1/jobs/{job_id}", headers=session_headers,
                               timeout=30).json()["status"] not in TERMINAL:
                time.sleep(0.05)
        worker_pid_before = health()["worker_pid"]
        rss_before = (rss_mib(server.pid), rss_mib(worker_pid_before))
        load_before = os.getloadavg()[0]

        lock = threading.Lock()
        statuses: dict[str, int] = {}
        latencies_s: list[float] = []
        retries_429 = [0]
        errors: list[str] = []
        shares = [list(range(1 + n, args.jobs + 1, args.threads)) for n in range(args.threads)]
        # Encoded before the clock starts: the clients share the server's cores, and encoding a 1024 px PNG per job
        # would be load-generator work counted against the replicas.
        images = {index: test_image(args.size, index) for index in range(1, args.jobs + 1)}
        rss_samples: list[tuple[int, float, float]] = []  # (jobs finished, server MiB, worker MiB)
        done = threading.Event()

        def client(indices: list[int]) -> None:
            session = requests.Session()
            session.headers.update(session_headers)
            submitted: list[tuple[str, float]] = []
            for index in indices:  # submit all, without waiting: the queue fills and answers 429
                image = images[index]
                started = time.perf_counter()
                while True:
                    response = session.post(url + "/v1/jobs", timeout=30,
                                            files={"image": ("a.png", image, "image/png")},
                                            data={"params": json.dumps({**job_params, "seed": index})})
                    if response.status_code != 429:
                        break
                    with lock:
                        retries_429[0] += 1
                    time.sleep(2.5 * args.poll_s)
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
                    time.sleep(args.poll_s)
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                    latencies_s.append(time.perf_counter() - started)

        def sample_memory() -> None:
            while not done.wait(1.0):
                jobs = requests.get(url + "/v1/jobs", headers=session_headers, timeout=30).json()["jobs"]
                finished = sum(job["status"] in TERMINAL for job in jobs) - len(warm)  # not the warm-up jobs
                rss_samples.append((finished, rss_mib(server.pid), rss_mib(health().get("worker_pid"))))

        cpu_before, client_cpu_before = process_tree_cpu_s(server.pid), sum(os.times()[:2])
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
        cpu_s = cpu_by_role_s(cpu_before, process_tree_cpu_s(server.pid), server.pid,
                              {final_health.get("worker_pid")} | {replica["pid"] for replica in
                                                                   final_health.get("replicas") or []})
        cpu_s["load test's clients"] = sum(os.times()[:2]) - client_cpu_before
        rss_after = (rss_mib(server.pid), rss_mib(final_health["worker_pid"]))
        replicas = [dict(replica, rss_now_mib=rss_mib(replica["pid"]))
                    for replica in final_health.get("replicas") or []]
        load_after = os.getloadavg()[0]
        latencies_s.sort()
        return {"statuses": statuses, "errors": errors, "retries_429": retries_429[0], "wall_s": wall_s,
                "latencies_s": latencies_s, "rss_before": rss_before, "rss_after": rss_after,
                "rss_samples": rss_samples, "health": final_health, "replicas": replicas,
                "load": (load_before, load_after), "cpu_s": cpu_s}
    finally:
        server.terminate()
        server.wait(60)
        if not args.keep_data:
            shutil.rmtree(data_dir, ignore_errors=True)


def _ok(args: argparse.Namespace, result: dict) -> bool:
    statuses = result["statuses"]
    all_terminal = sum(statuses.values()) == args.jobs and set(statuses) <= set(TERMINAL)
    return all_terminal and not result["errors"] and statuses.get("succeeded", 0) == args.jobs


def _percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted ``values``."""
    return values[max(0, math.ceil(fraction * len(values)) - 1)]


def _print_rows(header: list[str], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[column]) for row in [tuple(header)] + rows) for column in range(len(header))]
    print(" | ".join(cell.ljust(width) for cell, width in zip(header, widths, strict=False)))
    print("-+-".join("-" * width for width in widths))
    for row in rows:
        print(" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)))


def print_single(args: argparse.Namespace, result: dict) -> int:
    latencies_s, rss_before, rss_after = result["latencies_s"], result["rss_before"], result["rss_after"]
    statuses, jobs, samples = result["statuses"], args.jobs, result["rss_samples"]
    rows = [
        ("jobs", f"{args.jobs} ({args.size}×{args.size} px, {args.layers} layers, {args.threads} client threads)"),
        ("terminal statuses", ", ".join(f"{name} {count}" for name, count in sorted(statuses.items()))),
        ("errors (submit or job)", str(len(result["errors"]))),
        ("429 retries", str(result["retries_429"])),
        ("wall time", f"{result['wall_s']:.1f} s ({args.jobs / result['wall_s']:.1f} jobs/s)"),
        ("submit → done p50 / p95 / max", f"{statistics.median(latencies_s):.3f} / "
                                          f"{_percentile(latencies_s, 0.95):.3f} / {latencies_s[-1]:.3f} s"),
        ("server RSS before → after", f"{rss_before[0]:.1f} → {rss_after[0]:.1f} MiB"),
        ("worker RSS before → after", f"{rss_before[1]:.1f} → {rss_after[1]:.1f} MiB"),
        ("server RSS at 25/50/75/100 % done", _quartiles(samples, 1, jobs, rss_after[0])),
        ("worker RSS at 25/50/75/100 % done", _quartiles(samples, 2, jobs, rss_after[1])),
        ("worker restarts", str(result["health"]["worker_restarts"])),
    ]
    _print_rows(["metric", "value"], rows)
    for error in result["errors"][:5]:
        print("error:", error)
    ok = _ok(args, result)
    print("RESULT:", "ok" if ok else "FAILED")
    return 0 if ok else 1


def print_ray(args: argparse.Namespace, columns: list[tuple[int, dict]]) -> int:
    base = next((result for count, result in columns if count == 1), columns[0][1])
    base_rate = args.jobs / base["wall_s"]
    header = ["metric"] + [f"{count} replica{'s' if count > 1 else ''}" if count else "local worker (no Ray)"
                           for count, _ in columns]

    def row(name: str, cell) -> tuple[str, ...]:
        return (name, *(cell(count, result) for count, result in columns))

    def replica_memory(result: dict, key: str) -> str:
        values = [replica[key] for replica in result["replicas"] if replica.get(key) is not None]
        return " / ".join(f"{value:.0f}" for value in values) + " MiB" if values else "–"

    rows = [
        row("jobs/s", lambda count, result: f"{args.jobs / result['wall_s']:.2f}"),
        row("× 1 replica", lambda count, result: f"{args.jobs / result['wall_s'] / base_rate:.2f}×"),
        row("wall time", lambda count, result: f"{result['wall_s']:.1f} s"),
        row("submit → done p50 / p95", lambda count, result: f"{statistics.median(result['latencies_s']):.2f} / "
                                                             f"{_percentile(result['latencies_s'], 0.95):.2f} s"),
        row("jobs per replica", lambda count, result: " / ".join(str(replica["jobs_done"])
                                                                  for replica in result["replicas"]) or "–"),
        row("worker RSS (no Ray)", lambda count, result: "–" if count else f"{result['rss_after'][1]:.0f} MiB"),
        row("RSS per replica (now)", lambda count, result: replica_memory(result, "rss_now_mib")),
        row("peak RSS per replica", lambda count, result: replica_memory(result, "peak_rss_mib")),
        row("peak GPU memory per replica", lambda count, result: replica_memory(result, "peak_gpu_mib")),
        row("server RSS after", lambda count, result: f"{result['rss_after'][0]:.0f} MiB"),
        row("429 retries", lambda count, result: str(result["retries_429"])),
        *[row(f"CPU s per job: {role}", lambda count, result, role=role: f"{result['cpu_s'][role] / args.jobs:.3f}")
          for role in columns[0][1]["cpu_s"]],
        row("CPU s per job, all", lambda count, result: f"{sum(result['cpu_s'].values()) / args.jobs:.3f}"),
        row("terminal statuses", lambda count, result: ", ".join(f"{name} {number}" for name, number
                                                                 in sorted(result["statuses"].items()))),
        row("load average before → after",
            lambda count, result: f"{result['load'][0]:.1f} → {result['load'][1]:.1f}"),
    ]
    print(f"{args.jobs} jobs ({args.size}×{args.size} px, {args.layers} layers, backend {args.backend}, "
          f"{args.threads} client threads) on strata serve --ray; {len(os.sched_getaffinity(0))} CPUs, on which 2 "
          f"processes of plain Python ran {args.core_scaling:.2f}× as fast as 1")
    _print_rows(header, rows)
    ok = all(_ok(args, result) for _, result in columns)
    for _, result in columns:
        for error in result["errors"][:5]:
            print("error:", error)
    print("RESULT:", "ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
