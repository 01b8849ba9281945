# SPDX-License-Identifier: GPL-3.0-or-later
"""Speed suite of the qwen backend, side by side in one run per machine: one GPU `exact` vs `fast` (no step cache,
then with one), the second start's warm-up, CFG-parallel `exact` on two GPUs vs one, and the whole job by stage.

    python scripts/bench_gpu_speed.py --out OUT              # on a 2-GPU machine (one-GPU rows run on GPU 0 and 1)
    python scripts/bench_gpu_speed.py --out OUT --one-gpu    # one GPU: stock/exact, fast cold + caches, fast restart
    python scripts/bench_gpu_speed.py --out OUT --cpu-dry-run  # the same code paths, tiny model, CPU, gloo

Real-size architecture with random weights (``bench_gpu.build_random_pipeline``: same seed on every GPU, so the
layers of different runs are comparable), true CFG (scale 4, negative prompt " ", cfg_normalize), 640 px × 4
layers unless said. Phases run as subprocesses (fresh compile state and memory counters); the two one-GPU
phases share the machine's two GPUs at the same time, then the two-GPU phases follow. Every record goes to
``OUT/records.jsonl``; the tables are printed at the end and written to ``OUT/tables.md``.

Phases:
  exact1      GPU 0: exact, 640×4 and 1024×4 timed steps (layers kept), whole job 50 steps with a prompt.
  fast1       GPU 1: fast (fp8 + compile), cold compile cache: timed steps, whole job 50 steps with a prompt.
  fast1_again GPU 1: fast again in a new process on the same compile cache: the second start's warm-up.
  fastcache   GPU 0: fast + First Block Cache: a 50-step job (its skip rate and layers vs exact).
  cfg2        GPUs 0+1: CFG-parallel exact: timed 640×4 and 1024×4 (layers vs exact1), whole job with a prompt
              (captioning, timed in fast1_again, is the same text encoder in every preset and on rank 0 only:
              its time adds to any job without a prompt).
  ulysses2    GPUs 0+1: Ulysses degree 2, no CFG split (the 4-GPU layout's inner half): timed 640×4.

One GPU (``--one-gpu``), phases one after the other so that none shares the GPU or the CPUs with another:
  fastcold    fast, cold compile cache: timed steps (and what compiling cost), a 50-step job, the same job with
              each step cache (hooks added to the same compiled blocks: no compile again), skip rates.
  fastwarm    fast in a new process on the same compile cache: the second start's warm-up (seconds from the
              process start to each stage, the first passes timed one by one, Dynamo's compile times), then
              captioning: eager, again on the same image (remembered), and with a static KV cache (words compared).
  stockexact1 stock then exact on the same random weights: timed steps, exact's 50-step job (the layers the fast
              runs are compared with).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
REPO_ROOT = SCRIPTS.parent
for path in (str(REPO_ROOT), str(SCRIPTS)):
    if path not in sys.path:
        sys.path.insert(0, path)

import bench_gpu  # noqa: E402  (scripts/bench_gpu.py: the random-weight builder and the prompt)

GIB = 1024**3
CAPTION_TOKENS = 128  # a random model never stops captioning: capped, about a real caption's length
PHASES = ("exact1", "fast1", "fast1_again", "fastcache", "cfg2", "ulysses2", "fastcold", "fastwarm", "stockexact1")
ONE_GPU_PHASES = ("fastcold", "fastwarm", "stockexact1")
SPAWNED_AT_ENV = "STRATA_BENCH_SPAWNED_AT"  # the driver's time.time() when it started this phase


def emit(out: Path, record: dict) -> None:
    line = json.dumps(record, default=str)
    print("RESULT " + line, flush=True)
    with open(out / "records.jsonl", "a") as handle:
        handle.write(line + "\n")


class Runner:
    """One backend in this process, and the measurements the suite makes with it."""

    def __init__(self, args, phase: str, backend, device: str) -> None:
        self.args, self.phase, self.backend, self.device = args, phase, backend, device
        self.out = Path(args.out)

    def image(self, resolution: int):
        import numpy as np
        from PIL import Image

        pixels = np.random.default_rng(0).integers(0, 255, (resolution, resolution, 4), dtype=np.uint8)
        return Image.fromarray(pixels, "RGBA")

    def run(self, label: str, size: str, steps: int, prompt: str, warmup_steps: int = 1, save: bool = False,
            per_step: bool = True, counter=None) -> dict:
        import numpy as np
        import torch

        from inference_server.backends.base import CancelToken
        from inference_server.params import DecomposeParams

        resolution, layers = (int(part) for part in size.split("x"))
        on_cuda = self.device.startswith("cuda")
        marks: list[float] = []

        def progress(stage, step, total):
            if stage == "denoise" and per_step:
                if on_cuda:
                    torch.cuda.synchronize(self.device)
                marks.append(time.perf_counter())

        params = DecomposeParams(layers=layers, num_inference_steps=steps, resolution=resolution, prompt=prompt,
                                 seed=self.args.seed, preset=self.backend.preset).validate()
        if on_cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        if counter is not None:
            counter.calls = 0
        record = {"phase": self.phase, "label": label, "size": size, "steps": steps, "prompt": bool(prompt)}
        started = time.perf_counter()
        try:
            stack = self.backend.decompose(self.image(resolution), params, progress=progress, cancel=CancelToken())
        except Exception as error:  # noqa: BLE001 - an OOM or a broken path is a result too
            record["error"] = f"{type(error).__name__}: {error}"[:600]
            emit(self.out, record)
            return record
        record["job_s"] = round(time.perf_counter() - started, 3)
        record["timings_s"] = {key: round(value, 4) for key, value in stack.timings_s.items()}
        captions = [note[len("caption: "):] for note in stack.notes if note.startswith("caption: ")]
        if captions:
            record["caption_sha1"] = hashlib.sha1(captions[0].encode()).hexdigest()[:12]
            record["caption_chars"] = len(captions[0])
        gaps = np.diff(marks)
        if per_step and gaps.size > warmup_steps:
            record["warmup_step_s"] = [round(float(v), 3) for v in gaps[:warmup_steps]]
            record["s_per_step"] = round(float(gaps[warmup_steps:].mean()), 4)
        if on_cuda:
            record["peak_gib"] = round(torch.cuda.max_memory_allocated(self.device) / GIB, 2)
        if counter is not None:
            passes = steps * 2
            record["skip_rate"] = round(1.0 - counter.calls / passes, 3)
        if save:
            path = Path(self.args.layers_dir or self.out) / f"layers_{self.phase}_{label}.npy"
            np.save(path, np.stack([layer.rgba for layer in stack.layers]))
            record["layers_file"] = path.name
        emit(self.out, record)
        return record


def _factory(args):
    return functools.partial(bench_gpu.build_random_pipeline, tiny=args.cpu_dry_run, seed=args.seed)


def _compile_backend(args):
    return "none" if args.cpu_dry_run else None


def run_phase(args) -> None:
    """One phase in this process (the driver starts each as a subprocess)."""
    import torch

    phase = args.phase
    out = Path(args.out)
    dry = args.cpu_dry_run
    steps50 = 3 if dry else 50
    timed = 2 if dry else 4
    sizes_1024 = "640x2" if dry else "1024x4"
    size = "640x2" if dry else "640x4"
    caption_tokens = 4 if dry else CAPTION_TOKENS
    started = time.perf_counter()
    from inference_server.backends.qwen import QwenLayeredBackend

    if phase in ("cfg2", "ulysses2"):
        from inference_server.backends.qwen_parallel import ParallelQwenBackend

        devices = ["cpu", "cpu"] if dry else ["cuda:0", "cuda:1"]
        backend = ParallelQwenBackend(devices, mode="cfg" if phase == "cfg2" else "ulysses",
                                      pipeline_factory=_factory(args), preset="exact",
                                      compile_backend=_compile_backend(args))
        device = devices[0]
    else:
        device = "cpu" if dry else f"cuda:{args.gpu}"
        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))
        preset = "exact" if phase == "exact1" else "fast"
        backend = QwenLayeredBackend(device=device, preset=preset, pipeline=_factory(args)(device),
                                     compile_backend=_compile_backend(args))
    build_s = time.perf_counter() - started
    pipe = backend._given_pipeline
    bench_gpu._cap_caption_length(pipe.text_encoder, caption_tokens)
    started = time.perf_counter()
    backend.load()
    emit(out, {"phase": phase, "label": "setup", "build_s": round(build_s, 2),
               "preset_setup_s": round(time.perf_counter() - started, 2),
               "compile_cache": os.environ.get("TORCHINDUCTOR_CACHE_DIR")})
    runner = Runner(args, phase, backend, device)
    prompt = bench_gpu.PROMPT
    if phase == "exact1":
        runner.run("640x4", size, 1 + timed, prompt, save=True)
        runner.run("1024x4", sizes_1024, 3, prompt, save=True)
        runner.run("job50", size, steps50, prompt, save=True, per_step=False)
    elif phase == "fast1":
        runner.run("640x4", size, 1 + timed, prompt)
        runner.run("job50", size, steps50, prompt, save=True, per_step=False)
    elif phase == "fast1_again":
        runner.run("640x4", size, 2 + timed, prompt, warmup_steps=2)
        # Captioning (same text encoder in every preset): eager generate vs a static KV cache (compiled decoding).
        from inference_server.backends.qwen_speed import use_static_caption_cache

        runner.run("caption_dynamic", size, 2, "", per_step=False)
        use_static_caption_cache(backend.pipe.text_encoder)
        runner.run("caption_static_first", size, 2, "", per_step=False)
        runner.run("caption_static", size, 2, "", per_step=False)
    elif phase == "fastcache":
        from inference_server.backends.qwen_speed import BlockCallCounter

        runner.run("warmup", size, 2, prompt, per_step=False)
        counter = BlockCallCounter(backend.pipe.transformer)
        runner.run("job50", size, steps50, prompt, save=True, per_step=False, counter=counter)
    elif phase == "cfg2":
        runner.run("640x4", size, 1 + timed, prompt, save=True)
        runner.run("1024x4", sizes_1024, 3, prompt, save=True)
        runner.run("job50", size, steps50, prompt, per_step=False)
    elif phase == "ulysses2":
        runner.run("640x4", size, 1 + timed, prompt, save=True)
    if hasattr(backend, "close"):
        backend.close()


# ---------------------------------------------------------------------------------------------------- one GPU
class FirstCallsTimer:
    """Times the transformer's first ``calls`` passes one by one (synchronised): where a start's warm-up goes."""

    def __init__(self, transformer, calls: int, device: str) -> None:
        import torch

        self.seconds: list[float] = []
        inner = transformer.forward
        on_cuda = device.startswith("cuda")

        def timed(*args, **kwargs):
            if len(self.seconds) >= calls:
                return inner(*args, **kwargs)
            if on_cuda:
                torch.cuda.synchronize(device)
            started = time.perf_counter()
            result = inner(*args, **kwargs)
            if on_cuda:
                torch.cuda.synchronize(device)
            self.seconds.append(round(time.perf_counter() - started, 3))
            return result

        transformer.forward = timed


def compile_stats() -> dict:
    """Dynamo's and inductor's counters (cache hits, recompiles, graphs) and time per compile stage so far."""
    from torch._dynamo import utils as dynamo_utils

    counters = {group: dict(list(values.items())[:40]) for group, values in dynamo_utils.counters.items() if values}
    try:
        times = dynamo_utils.compile_times(repr="str", aggregate=True)
    except Exception as error:  # noqa: BLE001 - a diagnostic only
        times = f"unavailable: {error}"
    return {"counters": counters, "compile_times": times}


def run_one_gpu_phase(args) -> None:
    """One phase of the one-GPU suite (see the module's docstring)."""
    import torch

    spawned_at = float(os.environ.get(SPAWNED_AT_ENV) or time.time())
    phase, out, dry = args.phase, Path(args.out), args.cpu_dry_run
    imported_s = round(time.time() - spawned_at, 2)
    deadline = args.deadline or float("inf")
    steps50 = 7 if dry else 50  # 7: TaylorSeer predicts steps 4 and 6
    timed = 2 if dry else 4
    size = "640x2" if dry else "640x4"
    caption_tokens = 4 if dry else CAPTION_TOKENS
    prompt = bench_gpu.PROMPT
    device = "cpu" if dry else "cuda:0"
    if not dry:
        torch.cuda.set_device(torch.device(device))
    # Recompiles and graph breaks, with their reasons, go to the phase's log.
    torch._logging.set_logs(recompiles=True, graph_breaks=True)
    from inference_server.backends.qwen import QwenLayeredBackend
    from inference_server.backends.qwen_speed import BlockCallCounter, step_cache_config, use_static_caption_cache

    started = time.perf_counter()
    pipe = _factory(args)(device)
    build_s = time.perf_counter() - started
    bench_gpu._cap_caption_length(pipe.text_encoder, caption_tokens)
    if phase == "stockexact1":
        stock = QwenLayeredBackend(device=device, preset="stock", pipeline=pipe)
        stock.load()
        Runner(args, "stock1", stock, device).run("640x4", size, 1 + timed, prompt)
        exact = QwenLayeredBackend(device=device, preset="exact", pipeline=pipe, compile_backend=_compile_backend(args))
        exact.load()
        runner = Runner(args, "exact1", exact, device)
        runner.run("640x4", size, 1 + timed, prompt)
        runner.run("job50", size, steps50, prompt, save=True, per_step=False)
        return
    # Compiling on the CPU too (tiny model, no C++ compiler: "aot_eager") so the same code paths run.
    backend = QwenLayeredBackend(device=device, preset="fast", pipeline=pipe,
                                 compile_backend="aot_eager" if dry else None)
    started = time.perf_counter()
    backend.load()
    setup = {"phase": phase, "label": "setup", "build_s": round(build_s, 2), "imported_s": imported_s,
             "preset_setup_s": round(time.perf_counter() - started, 2),
             "preset_applied_s": round(time.time() - spawned_at, 2),
             "compile_cache": os.environ.get("TORCHINDUCTOR_CACHE_DIR")}
    emit(out, setup)
    transformer = backend.pipe.transformer
    calls = FirstCallsTimer(transformer, 4, device)
    runner = Runner(args, "fast1" if phase == "fastcold" else "fast1_again", backend, device)
    if phase == "fastcold":
        runner.run("640x4", size, 1 + timed, prompt)
        emit(out, {"phase": phase, "label": "compile", "first_passes_s": calls.seconds,
                   "since_spawn_s": round(time.time() - spawned_at, 2), **compile_stats()})
        # The step caches: hooks around the same compiled blocks (no compile again); reset by the pipeline.
        for cache in ("taylorseer", "none", "fbc"):
            if time.time() > deadline - (40 if cache == "fbc" else 10):
                emit(out, {"phase": phase, "label": f"job50 {cache}", "error": "skipped: the phase's time is up"})
                continue
            if cache == "none":
                runner.run("job50", size, steps50, prompt, save=True, per_step=False)
                continue
            transformer.enable_cache(step_cache_config(cache))
            counter = BlockCallCounter(transformer)
            Runner(args, f"fast_{cache}", backend, device).run("job50", size, steps50, prompt, save=True,
                                                                per_step=False, counter=counter)
            transformer.disable_cache()
        emit(out, {"phase": phase, "label": "compile_end", **compile_stats()})
        return
    # fastwarm: the second start.
    record = runner.run("640x4", size, 2 + timed, prompt, warmup_steps=2)
    emit(out, {"phase": phase, "label": "warm", "imported_s": imported_s, "build_s": round(build_s, 2),
               "preset_applied_s": setup["preset_applied_s"], "first_job_done_s": round(time.time() - spawned_at, 2),
               "first_passes_s": calls.seconds, "warmup_step_s": record.get("warmup_step_s"),
               "s_per_step": record.get("s_per_step"), **compile_stats()})
    # Captioning (same text encoder in every preset): eager, the same image again (remembered), static KV cache.
    runner.run("caption_dynamic", size, 2, "", per_step=False)
    runner.run("caption_again", size, 2, "", per_step=False)
    if time.time() < deadline - 60:
        backend._captions.clear()
        use_static_caption_cache(backend.pipe.text_encoder)
        runner.run("caption_static_first", size, 2, "", per_step=False)
        backend._captions.clear()
        runner.run("caption_static", size, 2, "", per_step=False)


def drive_one_gpu(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.layers_dir:
        Path(args.layers_dir).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    end = t0 + args.budget_s
    phases = [p for p in ONE_GPU_PHASES if p in {q.strip() for q in args.phases.split(",")} or args.phases == "all"]
    env = {"STRATA_COMPILE_CACHE_DIR": args.compile_cache or str(out / "compile-cache"),
           "STRATA_FAST_STEP_CACHE": "none"}
    # Each phase's share of what is left: the cold compile first and longest; the restart and stock/exact after.
    reserve = {"fastcold": args.reserve_s, "fastwarm": args.reserve_s * 0.45, "stockexact1": 0.0}
    for phase in phases:
        deadline = end - reserve[phase]
        if deadline - time.perf_counter() < 30:
            print(f"# {phase} skipped: {end - time.perf_counter():.0f} s left of the budget", flush=True)
            continue
        extra = {**env, SPAWNED_AT_ENV: repr(time.time())}
        wall_deadline = time.time() + (deadline - time.perf_counter())
        wait_phases({phase: start_phase(args, phase, 0, extra, ["--deadline", repr(wall_deadline)])}, deadline)
    records = [json.loads(line) for line in open(out / "records.jsonl")] if (out / "records.jsonl").exists() else []
    text = one_gpu_tables(records, Path(args.layers_dir or out))
    print(text)
    (out / "tables.md").write_text(text)
    return 0


def one_gpu_tables(records: list[dict], layers: Path) -> str:
    by = {(r["phase"], r["label"]): r for r in records}
    lines = ["| run | steps | s/step | vs exact | first step s | caption s | encode s | denoise s | decode s | job s | "
             "peak GiB | skip rate | note |", "|" + "---|" * 13]
    exact = (by.get(("exact1", "640x4")) or {}).get("s_per_step")
    for r in records:
        if "steps" not in r:
            if r.get("error"):
                lines.append(f"| {r['phase']} {r['label']} | | | | | | | | | | | | {r['error'][:120]} |")
            continue
        t = r.get("timings_s", {})
        fmt = lambda key, t=t: f"{t[key]:.2f}" if key in t else "-"  # noqa: E731
        per_step = r.get("s_per_step")
        if per_step is None and "denoise" in t and r["label"].startswith("job"):
            per_step = round(t["denoise"] / r["steps"], 4)  # a whole job's average, its first step included
        ratio = f"{exact / per_step:.2f}×" if exact and per_step else "-"
        lines.append(
            f"| {r['phase']} {r['label']} | {r['steps']} | {per_step if per_step is not None else '-'} | {ratio} | "
            f"{fmt('first_step_s')} | {fmt('caption')} | {fmt('encode')} | {fmt('denoise')} | {fmt('decode')} | "
            f"{r.get('job_s', '-')} | {r.get('peak_gib', '-')} | {r.get('skip_rate', '-')} | "
            f"{(r.get('error') or r.get('caption_sha1') or '')[:120].replace('|', '/')} |")
    lines += ["", "| layers (50 steps) | vs | max / mean abs Δ (0–255) |", "|---|---|---|"]
    for a, b in [("fast1_job50", "exact1_job50"), ("fast_taylorseer_job50", "exact1_job50"),
                 ("fast_taylorseer_job50", "fast1_job50"), ("fast_fbc_job50", "exact1_job50"),
                 ("fast_fbc_job50", "fast1_job50")]:
        lines.append(f"| {a} | {b} | {_delta(layers, f'layers_{a}.npy', f'layers_{b}.npy')} |")
    warm = by.get(("fastwarm", "warm"))
    if warm:
        steady = warm.get("s_per_step") or 0.0
        first = (warm.get("warmup_step_s") or [0.0])[0]
        lines += ["", f"- second start: imports {warm['imported_s']} s, random weights {warm['build_s']} s, preset "
                  f"applied at {warm['preset_applied_s']} s, first job done at {warm['first_job_done_s']} s after the "
                  f"process started; warm-up (first step − steady step) {first - steady:.1f} s; first passes "
                  f"{warm.get('first_passes_s')} s"]
    cold = by.get(("fastcold", "compile"))
    if cold:
        fast = by.get(("fast1", "640x4")) or {}
        first = (fast.get("warmup_step_s") or [0.0])[0]
        lines.append(f"- cold start: first step {first} s (compile), first passes {cold.get('first_passes_s')} s")
    dynamic, again, static = (by.get(("fast1_again", key))
                              for key in ("caption_dynamic", "caption_again", "caption_static"))
    if dynamic and "timings_s" in dynamic:
        text = f"- caption ({CAPTION_TOKENS} tokens): eager {dynamic['timings_s'].get('caption')} s"
        if again and "timings_s" in again:
            text += f", same image again {again['timings_s'].get('caption')} s"
        if static and "timings_s" in static:
            text += (f", static KV cache + compiled decoding {static['timings_s'].get('caption')} s (same words: "
                     f"{dynamic.get('caption_sha1') == static.get('caption_sha1')})")
        lines.append(text)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------- driver
def start_phase(args, phase: str, gpu: int | None, extra_env: dict | None = None, extra_args: list | None = None):
    command = [sys.executable, __file__, "--phase", phase, "--out", args.out, "--seed", str(args.seed)]
    command += list(extra_args or [])
    if args.layers_dir:
        command += ["--layers-dir", args.layers_dir]
    if gpu is not None:
        command += ["--gpu", str(gpu)]
    if args.cpu_dry_run:
        command.append("--cpu-dry-run")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    log = open(Path(args.out) / f"{phase}.log", "w")
    print(f"# start {phase}: {' '.join(command[1:])}", flush=True)
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env), time.perf_counter()


def wait_phases(running: dict, deadline: float) -> None:
    """Wait for the phases in ``running``; kill any still going at ``deadline`` (monotonic perf_counter)."""
    for phase, (process, started) in running.items():
        left = max(1.0, deadline - time.perf_counter())
        try:
            code = process.wait(timeout=left)
        except subprocess.TimeoutExpired:
            process.kill()
            code = "killed at the time limit"
        print(f"# {phase} ended ({code}) after {time.perf_counter() - started:.0f} s", flush=True)


def drive(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    budget = args.budget_s
    cache = {"STRATA_COMPILE_CACHE_DIR": args.compile_cache or str(out / "compile-cache")}
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    # 1. One-GPU rows, GPU 0 and GPU 1 at once.
    lane0 = [p for p in ("exact1", "fastcache") if p in phases]
    lane1 = [p for p in ("fast1", "fast1_again") if p in phases]
    env_for = {"fast1": {**cache, "STRATA_FAST_STEP_CACHE": "none"},
               "fast1_again": {**cache, "STRATA_FAST_STEP_CACHE": "none"},
               "fastcache": {**cache, "STRATA_FAST_STEP_CACHE": "fbc"},
               "exact1": cache, "cfg2": cache, "ulysses2": cache}
    one_gpu_deadline = t0 + budget * args.one_gpu_share
    lanes = [(0, lane0), (1, lane1)]
    cursors = {gpu: 0 for gpu, _ in lanes}
    running = {}
    for gpu, lane in lanes:
        if lane:
            running[gpu] = (lane[0], *start_phase(args, lane[0], gpu, env_for[lane[0]]))
    while running:
        time.sleep(1.0)
        for gpu in list(running):
            phase, process, started = running[gpu]
            code = process.poll()
            if code is None and time.perf_counter() < one_gpu_deadline:
                continue
            if code is None:
                process.kill()
                code = "killed at the time limit"
            print(f"# {phase} ended ({code}) after {time.perf_counter() - started:.0f} s", flush=True)
            del running[gpu]
            lane = dict(lanes)[gpu]
            cursors[gpu] += 1
            if cursors[gpu] < len(lane) and time.perf_counter() < one_gpu_deadline - 60:
                nxt = lane[cursors[gpu]]
                running[gpu] = (nxt, *start_phase(args, nxt, gpu, env_for[nxt]))
    # 2. Two-GPU rows.
    for phase in [p for p in ("cfg2", "ulysses2") if p in phases]:
        left = t0 + budget - time.perf_counter()
        if left < 60:
            print(f"# {phase} skipped: {left:.0f} s left of the budget", flush=True)
            continue
        wait_phases({phase: start_phase(args, phase, None, env_for[phase])}, t0 + budget)
    records = [json.loads(line) for line in open(out / "records.jsonl")] if (out / "records.jsonl").exists() else []
    text = tables(records, out)
    print(text)
    (out / "tables.md").write_text(text)
    return 0


def _delta(out: Path, a: str, b: str) -> str:
    import numpy as np

    pa, pb = out / a, out / b  # out: the folder of the layer files
    if not (pa.exists() and pb.exists()):
        return "-"
    x, y = np.load(pa).astype(np.float64), np.load(pb).astype(np.float64)
    if x.shape != y.shape:
        return "shape differs"
    diff = np.abs(x - y)
    px, py = x.copy(), y.copy()
    px[..., :3] *= px[..., 3:4] / 255.0
    py[..., :3] *= py[..., 3:4] / 255.0
    pdiff = np.abs(px - py)
    return f"{diff.max():.0f} / {diff.mean():.3f} (premult. {pdiff.max():.1f} / {pdiff.mean():.3f})"


def tables(records: list[dict], out: Path) -> str:
    by = {(r["phase"], r["label"]): r for r in records}
    lines = ["| phase | run | size | steps | s/step | warm-up step s | caption s | encode s | denoise s | decode s | "
             "job s | peak GiB | skip rate | note |", "|" + "---|" * 14]
    for r in records:
        if r["label"] == "setup":
            continue
        t = r.get("timings_s", {})
        fmt = lambda key, t=t: f"{t[key]:.2f}" if key in t else "-"  # noqa: E731
        lines.append(
            f"| {r['phase']} | {r['label']} | {r['size']} | {r['steps']} | {r.get('s_per_step', '-')} | "
            f"{', '.join(map(str, r.get('warmup_step_s', []))) or '-'} | {fmt('caption')} | {fmt('encode')} | "
            f"{fmt('denoise')} | {fmt('decode')} | {r.get('job_s', '-')} | {r.get('peak_gib', '-')} | "
            f"{r.get('skip_rate', '-')} | {(r.get('error') or '')[:160].replace('|', '/')} |")
    lines.append("")
    for r in records:
        if r["label"] == "setup":
            lines.append(f"- {r['phase']}: random weights built in {r['build_s']} s, preset applied in "
                         f"{r['preset_setup_s']} s (compile cache {r.get('compile_cache')})")
    lines.append("")
    lines.append("| layers | vs | max / mean abs Δ (0–255) |")
    lines.append("|---|---|---|")
    pairs = [("cfg2 640x4", "layers_cfg2_640x4.npy", "exact1 640x4", "layers_exact1_640x4.npy"),
             ("cfg2 1024x4", "layers_cfg2_1024x4.npy", "exact1 1024x4", "layers_exact1_1024x4.npy"),
             ("ulysses2 640x4", "layers_ulysses2_640x4.npy", "exact1 640x4", "layers_exact1_640x4.npy"),
             ("fast1 job50", "layers_fast1_job50.npy", "exact1 job50", "layers_exact1_job50.npy"),
             ("fastcache job50", "layers_fastcache_job50.npy", "exact1 job50", "layers_exact1_job50.npy"),
             ("fastcache job50", "layers_fastcache_job50.npy", "fast1 job50", "layers_fast1_job50.npy")]
    for name_a, file_a, name_b, file_b in pairs:
        lines.append(f"| {name_a} | {name_b} | {_delta(out, file_a, file_b)} |")
    dynamic, static = by.get(("fast1_again", "caption_dynamic")), by.get(("fast1_again", "caption_static"))
    if dynamic and static and "timings_s" in dynamic and "timings_s" in static:
        lines.append("")
        lines.append(f"- caption ({CAPTION_TOKENS} tokens): dynamic cache {dynamic['timings_s'].get('caption')} s, "
                     f"static cache + compiled decoding {static['timings_s'].get('caption')} s; same words: "
                     f"{dynamic.get('caption_sha1') == static.get('caption_sha1')}")
    cold, warm = by.get(("fast1", "640x4")), by.get(("fast1_again", "640x4"))
    if cold and warm and cold.get("s_per_step") and warm.get("s_per_step"):
        lines.append("")
        lines.append(f"- fast warm-up (first step − steady step): cold start "
                     f"{cold['warmup_step_s'][0] - cold['s_per_step']:.1f} s, second start "
                     f"{sum(warm['warmup_step_s']) - 2 * warm['s_per_step']:.1f} s")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--phases", default=",".join(PHASES))
    parser.add_argument("--budget-s", type=float, default=540.0, help="the whole suite's time limit")
    parser.add_argument("--one-gpu-share", type=float, default=0.62, help="share of the budget for one-GPU rows")
    parser.add_argument("--cpu-dry-run", action="store_true")
    parser.add_argument("--one-gpu", action="store_true", help="the one-GPU suite (fastcold, fastwarm, stockexact1)")
    parser.add_argument("--reserve-s", type=float, default=150.0,
                        help="one GPU: seconds of the budget kept for the phases after the cold compile")
    parser.add_argument("--compile-cache", help="compile cache folder (default OUT/compile-cache)")
    parser.add_argument("--layers-dir", help="where the layers of compared runs go (default OUT)")
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--gpu", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase in ONE_GPU_PHASES:
        run_one_gpu_phase(args)
        return 0
    if args.phase:
        run_phase(args)
        return 0
    if args.one_gpu:
        if args.phases == ",".join(PHASES):
            args.phases = "all"
        return drive_one_gpu(args)
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
