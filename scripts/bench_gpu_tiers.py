# SPDX-License-Identifier: GPL-3.0-or-later
"""GPU benchmark of the qwen backend's VRAM tiers, side by side with ``exact`` (``bench_gpu.py --tiers`` runs this).

    python scripts/bench_gpu.py --tiers 24,16,12,8 --weights-dir /tmp/qwen-random --out-json OUT/tiers.json
    python scripts/bench_gpu.py --tiers 16,8 --cpu-dry-run            # the same code on a scaled-down model, on CPU

1. Once: the real-size transformer (60 blocks, 20.4 B parameters) is built with random weights on the GPU and
   written as bf16 safetensors shards (``--weights-dir``), a model folder's ``transformer/``.
2. Per tier, in a fresh process: the text encoder, VAE and the rest are built with random weights; the transformer
   loads from those files through the backend's own quantize-on-load path (``load_transformer_quantized``: one
   shard, one block at a time, quantized on the GPU, blocks that do not fit kept in pinned host RAM); the backend
   (``vram=TIER``) quantizes the text encoder and places everything as the tier says. Then a hard cap of the tier's
   size (``torch.cuda.set_per_process_memory_fraction``) and, with the backend's own ``decompose``: one captioned
   run (caption capped at 64 tokens: a random model never stops), 640 × 4 (1 warm-up step, timed steps) and
   1024 × 4, true CFG (s/step = both passes). Host RAM = peak RSS (VmHWM), sampled apart as anonymous and
   file-backed pages, and the machine's used memory; the pinned host copies are inside the RSS (``--pin-probe yes``
   shows it), so the issue's "peak RSS + pinned" (printed too) counts them twice.
3. ``exact`` runs through ``bench_gpu.py --worker exact`` (bf16, compiled, no cap) in the same call.
4. Quantization error: one real-size transformer block, random inputs, bf16 vs each format (relative RMS of the
   block's two outputs), with PyTorch's default init (uniform) and with normal weights.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
for path in (REPO_ROOT, REPO_ROOT / "scripts"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import bench_gpu  # noqa: E402

GIB = 1024**3
# What a card of each tier has free: its size less what the desktop and the CUDA context take.
DESKTOP_GIB = 0.7
ARTIST_RAM_GIB = (64.0, 48.0)  # total, available
SHARD_BLOCKS = 6  # about 3.8 GiB of bf16 per shard, like the Hub's 5 GB shards
# Seconds one tier's worker takes on an H200 with --from-random (budget guard): measured 373 s for the 24 GB tier
# with its first fp8 compile (309 s of it, cold cache) and 39 s for an eager NF4 tier without the caption run; the
# NF4 compile is assumed as long as fp8's (not measured).
TIER_ESTIMATE_S = {"compiled": 380, "eager": 60}


def emit(record: dict) -> None:
    print("RESULT " + json.dumps(record), flush=True)


def _status_kib() -> dict[str, int]:
    values = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "VmLck", "VmPin"):
                values[key] = int(rest.split()[0])
    return values


def _system_used_kib() -> int:
    """MemTotal - MemAvailable: what the whole machine uses, page cache that can be dropped excluded."""
    values = {}
    with open("/proc/meminfo") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            if key in ("MemTotal", "MemAvailable"):
                values[key] = int(rest.split()[0])
    return values["MemTotal"] - values["MemAvailable"]


def host_peak_gib() -> float:
    """Peak resident set of this process (VmHWM), GiB."""
    return _status_kib().get("VmHWM", float("nan")) * 1024 / GIB


class HostMemorySampler:
    """Peaks of this process's memory every 50 ms: RSS split into anonymous (malloc'd and pinned host copies alike)
    and file-backed (memory-mapped safetensors, libraries) pages, and the machine's used memory over its value at
    start (pinned pages the driver allocates show there even where they are not in RSS)."""

    def __init__(self) -> None:
        import threading

        self.peaks: dict[str, int] = {}
        self.used_at_start = _system_used_kib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        values = _status_kib()
        values["SystemUsedDelta"] = _system_used_kib() - self.used_at_start
        for key, value in values.items():
            self.peaks[key] = max(self.peaks.get(key, 0), value)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self._sample()

    def gib(self) -> dict[str, float]:
        self._sample()
        names = {"VmHWM": "rss_peak_gib", "RssAnon": "rss_anon_peak_gib", "RssFile": "rss_file_peak_gib",
                 "SystemUsedDelta": "system_used_delta_peak_gib", "VmLck": "locked_peak_gib"}
        return {label: round(self.peaks.get(key, 0) * 1024 / GIB, 2) for key, label in names.items()}


def pin_probe(args) -> None:
    """Are pinned pages inside VmRSS, and what does PyTorch's pinned allocator hold for a model's weights? 40 buffers
    of one fp8 block weight's size (3072 × 12288 bytes): PyTorch's pinned allocator vs one registered arena, each
    read in /proc/self/status and /proc/meminfo; then host-to-device copy speed from each."""
    import torch

    from inference_server.backends.qwen_weights import HostArena

    count, numel = 40, 3072 * 12288
    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()

    def reading() -> tuple[int, int, int]:
        status = _status_kib()
        return status["VmRSS"], status.get("RssAnon", 0), _system_used_kib()

    def delta(before, after) -> dict:
        return {"rss_gib": round((after[0] - before[0]) * 1024 / GIB, 3),
                "rss_anon_gib": round((after[1] - before[1]) * 1024 / GIB, 3),
                "system_used_gib": round((after[2] - before[2]) * 1024 / GIB, 3)}

    def h2d_gb_s(host) -> float:
        device = torch.empty(numel, dtype=torch.uint8, device="cuda")
        device.copy_(host, non_blocking=True)
        torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(10):
            device.copy_(host, non_blocking=True)
        torch.cuda.synchronize()
        return round(10 * numel / (time.perf_counter() - started) / 1e9, 1)

    before = reading()
    pinned = [torch.empty(numel, dtype=torch.uint8, pin_memory=True) for _ in range(count)]
    for tensor in pinned:
        tensor.fill_(1)
    after_pinned = reading()
    sources = [torch.full((numel,), 2, dtype=torch.uint8, device="cuda") for _ in range(count)]
    arena = HostArena(sources, pin=True)
    after_arena = reading()
    pageable = torch.ones(numel, dtype=torch.uint8)
    emit({"stage": "pin_probe", "bytes_gib": round(count * numel / GIB, 3),
          "torch_pinned": delta(before, after_pinned), "arena": delta(after_pinned, after_arena),
          "arena_is_pinned": bool(arena.copies[0].is_pinned()), "arena_registered": arena.pinned,
          "arena_copy_ok": bool((arena.copies[-1] == 2).all()),
          "h2d_gb_s": {"torch_pinned": h2d_gb_s(pinned[0]), "arena": h2d_gb_s(arena.copies[0]),
                       "pageable": h2d_gb_s(pageable)}})


# ------------------------------------------------------------------------------------------ random weights
def write_random_transformer(folder: Path, device: str, tiny: bool, seed: int) -> dict:
    """The transformer with random weights, written as bf16 safetensors shards + index + config under folder."""
    import torch
    from diffusers import QwenImageTransformer2DModel
    from diffusers.models.transformers.transformer_qwenimage import QwenImageTransformerBlock
    from safetensors.torch import save_file

    started = time.perf_counter()
    target = folder / "transformer"
    partial = folder / "transformer.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    dtype = torch.bfloat16
    torch.manual_seed(seed)
    dims = dict(num_layers=2, attention_head_dim=32, num_attention_heads=4, joint_attention_dim=64,
                axes_dims_rope=(8, 12, 12)) if tiny else dict(num_layers=60)
    blocks = dims.pop("num_layers")
    with torch.device(device):
        transformer = QwenImageTransformer2DModel(num_layers=0, use_additional_t_cond=True, use_layer3d_rope=True,
                                                  **dims).to(dtype)
    transformer.register_to_config(num_layers=blocks)
    transformer.save_config(partial)
    weight_map: dict[str, str] = {}
    shard: dict = {k: v.detach().to("cpu").contiguous() for k, v in transformer.state_dict().items()}
    shard_count = -(-blocks // SHARD_BLOCKS)
    written = 0
    for index in range(blocks):
        with torch.device(device):
            block = QwenImageTransformerBlock(dim=transformer.inner_dim,
                                              num_attention_heads=transformer.config.num_attention_heads,
                                              attention_head_dim=transformer.config.attention_head_dim).to(dtype)
        for name, tensor in block.state_dict().items():
            shard[f"transformer_blocks.{index}.{name}"] = tensor.detach().to("cpu").contiguous()
        del block
        if (index + 1) % SHARD_BLOCKS == 0 or index + 1 == blocks:
            name = f"diffusion_pytorch_model-{written + 1:05d}-of-{shard_count:05d}.safetensors"
            save_file(shard, str(partial / name), metadata={"format": "pt"})
            weight_map.update({key: name for key in shard})
            written += 1
            shard = {}
    (partial / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map}))
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    size = sum(path.stat().st_size for path in target.glob("*.safetensors"))
    return {"stage": "weights", "write_s": round(time.perf_counter() - started, 1), "size_gib": round(size / GIB, 2),
            "shards": written}


# ------------------------------------------------------------------------------------------------ one tier
def run_tier(args) -> None:
    import torch

    from inference_server.backends.qwen import QwenLayeredBackend
    from inference_server.backends.qwen_tiers import TRANSFORMER_GIB, Machine, choose_tier
    from inference_server.backends.qwen_weights import load_transformer_quantized, streamed_blocks

    sampler = HostMemorySampler()
    tier = args.worker
    on_cuda = not args.cpu_dry_run
    device = "cuda" if on_cuda else "cpu"
    dtype = torch.bfloat16 if on_cuda else torch.float32
    record = {"tier": tier}

    def out(extra: dict) -> None:
        emit({**record, **extra})

    # The tier is chosen for an artist's 64 GB machine (the benchmark box's RAM reads would decide nothing);
    # what the tier really holds in host RAM is measured below.
    total_ram, available_ram = ARTIST_RAM_GIB
    if on_cuda:
        properties = torch.cuda.get_device_properties(0)
        capability = (properties.major, properties.minor)
        total_vram = properties.total_memory / GIB
    else:
        capability, total_vram = tuple(int(x) for x in args.dry_run_capability.split(".")), 80.0
    cap_gib = float(tier)
    machine = Machine(free_vram_gib=cap_gib - DESKTOP_GIB, total_vram_gib=cap_gib, total_ram_gib=total_ram,
                      available_ram_gib=available_ram, compute_capability=capability,
                      gpu_name=f"a {tier} GB card")
    plan = choose_tier(tier, machine)
    record.update(transformer_format=plan.transformer_format, text_encoder_format=plan.text_encoder_format)

    # 1. Everything but the transformer, random, on the device (--from-random: the transformer too, in bf16; the
    #    backend then quantizes it block by block, as from files, and no load seconds are measured).
    started = time.perf_counter()
    pipe = bench_gpu.build_random_pipeline(device, tiny=args.cpu_dry_run, seed=args.seed,
                                           transformer_blocks=None if args.from_random else 0)
    build_s = time.perf_counter() - started
    bench_gpu._cap_caption_length(pipe.text_encoder, bench_gpu.CAPTION_MAX_NEW_TOKENS)
    load_s = None
    if not args.from_random:
        # 2. The transformer from the bf16 files, quantized as it loads (the backend's path for a model folder).
        blocks = json.loads((Path(args.weights_dir) / "transformer" / "config.json").read_text())["num_layers"]
        streamed = streamed_blocks(plan, blocks, TRANSFORMER_GIB[plan.transformer_format])
        if on_cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        transformer = load_transformer_quantized(args.weights_dir, plan.transformer_format, device, dtype,
                                                 keep_on_host=streamed.__contains__)
        if on_cuda:
            torch.cuda.synchronize()
        load_s = round(time.perf_counter() - started, 1)
        pipe.register_modules(transformer=transformer)
    # 3. The backend applies the tier: text encoder quantized, placement, turns, streaming.
    backend = QwenLayeredBackend(device=device, preset="exact", pipeline=pipe, vram=tier, machine=machine,
                                 compile_backend="none" if (args.no_compile or not on_cuda) else None)
    started = time.perf_counter()
    backend.load("exact", "none")
    setup_s = time.perf_counter() - started
    placement = backend.describe()["tier"]
    if on_cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        resident_gib = torch.cuda.memory_allocated() / GIB
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap_gib * GIB / (total_vram * GIB)))
    else:
        resident_gib = 0.0
    pinned_gib = placement.get("pinned_host_gib", 0.0)
    out({"stage": "setup", "summary": plan.summary, "build_s": round(build_s, 1), "load_s": load_s,
         "setup_s": round(setup_s, 1), "resident_gib": round(resident_gib, 2), "streamed_blocks":
         placement.get("streamed_blocks", 0), "pinned_gib": pinned_gib,
         "host_copies_gib": placement.get("host_copies_gib"), **sampler.gib(), "cap_gib": cap_gib})

    def decompose(size: str, prompt: str, steps: int):
        return bench_gpu.timed_decompose(backend, size, prompt, steps, seed=args.seed, on_cuda=on_cuda,
                                         error_chars=300, preset="exact")

    # 4. Captioned run: caption + encode (+ the models' turns on the card); its first step carries the compile.
    stack, error, steps, peak = (decompose(args.sizes[0], "", 2) if args.caption == "yes"
                                 else (None, "skipped", [], None))
    compile_error = None
    if error and error != "skipped" and backend._compiled:
        # A compile failure costs the compile, not the tier's numbers: measure it eager and say so.
        compile_error = error
        _uncompile(backend.pipe.transformer)
        backend._compiled = False
        stack, error, steps, peak = decompose(args.sizes[0], "", 2)
    timings = stack.timings_s if stack else {}
    out({"stage": "caption", "size": args.sizes[0], "error": error, "peak_gib": peak,
         "caption_s": _round(timings.get("caption")), "encode_s": _round(timings.get("encode")),
         "model_turns_s": _round(timings.get("model_turns")), "compiled": backend._compiled,
         "compile_error": compile_error, "first_step_s": round(float(steps[0]), 1) if len(steps) else None})
    # 5. Timed sizes.
    for index, size in enumerate(args.sizes):
        timed_steps = args.timed_steps if index == 0 else max(1, args.timed_steps - 1)
        stack, error, steps, peak = decompose(size, bench_gpu.PROMPT, args.warmup_steps + timed_steps)
        timed = steps[args.warmup_steps:]
        timings = stack.timings_s if stack else {}
        out({"size": size, "error": error, "s_per_step": round(float(timed.mean()), 4) if timed.size else None,
             "warmup_step_s": [round(float(v), 2) for v in steps[:args.warmup_steps]], "peak_gib": peak,
             "encode_s": _round(timings.get("encode")), "decode_s": _round(timings.get("decode")),
             "model_turns_s": _round(timings.get("model_turns")), "host_peak_gib": round(host_peak_gib(), 2)})
    # The formula adds the pinned bytes to the peak RSS; the host copies are malloc'd memory that
    # cudaHostRegister locks in place, so they are inside RSS already and the formula counts them twice.
    peaks = sampler.gib()
    out({"stage": "host", "host_peak_gib": peaks["rss_peak_gib"], "pinned_gib": pinned_gib,
         "host_ram_gib": round(peaks["rss_peak_gib"] + pinned_gib, 2), **peaks})


def _uncompile(transformer) -> None:
    import torch

    torch._dynamo.reset()
    for block in transformer.transformer_blocks:
        block.__dict__.pop("forward", None)
        block._compiled_call_impl = None


def _round(value, digits: int = 3):
    return None if value is None else round(float(value), digits)


# ---------------------------------------------------------------------------------------- quantization error
def quantization_error(args) -> None:
    """Relative RMS of one real-size block's outputs, each format vs bf16, on the same random inputs."""
    import torch
    from diffusers.models.transformers.transformer_qwenimage import QwenImageTransformerBlock

    from inference_server.backends.qwen_weights import quantize_linears

    on_cuda = not args.cpu_dry_run
    device = "cuda" if on_cuda else "cpu"
    dtype = torch.bfloat16 if on_cuda else torch.float32
    dim, heads, head_dim = (128, 4, 32) if args.cpu_dry_run else (3072, 24, 128)
    image_tokens, text_tokens = (64, 16) if args.cpu_dry_run else (1600, 300)
    formats = ["int8", "nf4"] + (["fp8"] if on_cuda and torch.cuda.get_device_capability() >= (8, 9) else [])
    for init in ("default", "normal"):
        torch.manual_seed(args.seed)
        with torch.device(device):
            reference = QwenImageTransformerBlock(dim=dim, num_attention_heads=heads, attention_head_dim=head_dim)
            if init == "normal":
                for module in reference.modules():
                    if isinstance(module, torch.nn.Linear):
                        torch.nn.init.normal_(module.weight, std=module.in_features ** -0.5)
            reference = reference.to(dtype).eval()
            hidden = torch.randn(1, image_tokens, dim, dtype=dtype)
            text = torch.randn(1, text_tokens, dim, dtype=dtype)
            temb = torch.randn(1, dim, dtype=dtype)
        with torch.inference_mode():
            expected = torch.cat([t.float().flatten() for t in reference(hidden, text, None, temb)])
        for fmt in formats:
            block = QwenImageTransformerBlock(dim=dim, num_attention_heads=heads, attention_head_dim=head_dim)
            block = block.to(device=device, dtype=dtype).eval()
            block.load_state_dict(reference.state_dict())
            quantize_linears(block, fmt)
            with torch.inference_mode():
                got = torch.cat([t.float().flatten() for t in block(hidden, text, None, temb)])
            error = float((got - expected).pow(2).mean().sqrt() / expected.pow(2).mean().sqrt())
            emit({"stage": "quant_error", "init": init, "format": fmt, "relative_rms": round(error, 5)})
            del block
        del reference
        if on_cuda:
            torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------------ parent
def print_table(records: list[dict], out=sys.stdout) -> None:
    setups = {r["tier"]: r for r in records if r.get("stage") == "setup" and "tier" in r}
    captions = {r["tier"]: r for r in records if r.get("stage") == "caption" and "tier" in r}
    hosts = {r["tier"]: r for r in records if r.get("stage") == "host" and "tier" in r}
    rows = {(r.get("tier") or r.get("preset"), r["size"]): r for r in records if "size" in r and "stage" not in r}
    names = list(dict.fromkeys([r.get("tier") or r.get("preset") for r in records
                                if "size" in r and "stage" not in r]))
    print("\n| tier | formats (transformer / text encoder) | 640 × 4 s/step | 1024 × 4 s/step | peak GiB (cap) | "
          "host RAM peak GiB (VmHWM: anon / file) | + pinned (issue's formula) | machine used Δ GiB | load s | "
          "caption s | encode s | turns s |", file=out)
    print("|---|---|---|---|---|---|---|---|---|---|---|---|", file=out)
    for name in names:
        setup, caption, host = setups.get(name, {}), captions.get(name, {}), hosts.get(name, {})
        small, large = rows.get((name, "640x4"), {}), rows.get((name, "1024x4"), {})

        def cell(row):
            if not row:
                return "–"
            if row.get("error"):
                return "**" + row["error"][:60].replace("|", "/") + "**"
            return f"{row['s_per_step']:.3f}" if row.get("s_per_step") is not None else "–"

        formats = (f"{setup['transformer_format']} / {setup['text_encoder_format']}" if setup.get("transformer_format")
                   else "bf16 / bf16")
        if setup.get("streamed_blocks"):
            formats += f", {setup['streamed_blocks']} blocks streamed"
        cap = f" ({setup['cap_gib']:g})" if setup.get("cap_gib") else ""
        rss = (f"{host['rss_peak_gib']} ({host.get('rss_anon_peak_gib', '–')} / {host.get('rss_file_peak_gib', '–')})"
               if host.get("rss_peak_gib") is not None else host.get("host_peak_gib", "–"))
        print(f"| {name} | {formats} | {cell(small)} | {cell(large)} | {small.get('peak_gib', '–')}{cap} | {rss} | "
              f"{host.get('host_ram_gib', '–')} (+ {host.get('pinned_gib', '–')}) | "
              f"{host.get('system_used_delta_peak_gib', '–')} | {setup.get('load_s') or '–'} | "
              f"{caption.get('caption_s') or '–'} | {caption.get('encode_s') or '–'} | "
              f"{caption.get('model_turns_s') or '–'} |", file=out)
    for record in records:
        if record.get("stage") == "pin_probe":
            print(f"\npin probe ({record['bytes_gib']} GiB in 40 buffers): PyTorch's pinned allocator "
                  f"{record['torch_pinned']}; registered arena {record['arena']}; host-to-device GB/s "
                  f"{record['h2d_gb_s']}", file=out)
    errors = [r for r in records if r.get("stage") == "quant_error"]
    if errors:
        print("\n| format | block output relative RMS vs bf16 (default init) | (normal init) |", file=out)
        print("|---|---|---|", file=out)
        for fmt in dict.fromkeys(r["format"] for r in errors):
            by_init = {r["init"]: r["relative_rms"] for r in errors if r["format"] == fmt}
            print(f"| {fmt} | {by_init.get('default', float('nan')):.2%} | {by_init.get('normal', float('nan')):.2%} |",
                  file=out)
    for record in records:
        if record.get("stage") == "setup" and record.get("error"):
            print(f"\n{record.get('tier') or record.get('preset')}: setup failed: {record['error']}", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiers", default="24,16,12,8")
    parser.add_argument("--sizes", default="640x4,1024x4")
    parser.add_argument("--warmup-steps", type=int, default=1)
    parser.add_argument("--timed-steps", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights-dir", default="/tmp/strata-random-qwen")
    parser.add_argument("--keep-weights", action="store_true", help="reuse the files if they exist")
    parser.add_argument("--exact", default="yes", choices=("yes", "no"), help="also run the exact preset")
    parser.add_argument("--quant-error", default="yes", choices=("yes", "no"))
    parser.add_argument("--caption", default="yes", choices=("yes", "no"), help="time one captioned run per tier")
    parser.add_argument("--from-random", action="store_true",
                        help="build the transformer in-process instead of loading the files (no load seconds)")
    parser.add_argument("--cpu-dry-run", action="store_true")
    parser.add_argument("--dry-run-capability", default="8.6", help=argparse.SUPPRESS)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--json-out", default=None)
    parser.add_argument("--pin-probe", default="no", choices=("yes", "no"),
                        help="first measure whether pinned pages are inside VmRSS (CUDA only)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="skip a tier that would not finish within this many seconds of the start")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args(argv)
    args.sizes = [size.strip() for size in args.sizes.split(",") if size.strip()]

    if args.worker == "pin-probe":
        pin_probe(args)
        return 0
    if args.worker == "quant-error":
        quantization_error(args)
        return 0
    if args.worker == "weights":
        emit(write_random_transformer(Path(args.weights_dir), "cpu" if args.cpu_dry_run else "cuda",
                                      args.cpu_dry_run, args.seed))
        return 0
    if args.worker:
        run_tier(args)
        return 0

    records: list[dict] = []
    started = time.perf_counter()
    me = [sys.executable, str(Path(__file__).resolve())]
    common = ["--seed", str(args.seed), "--weights-dir", args.weights_dir, "--sizes", ",".join(args.sizes),
              "--warmup-steps", str(args.warmup_steps), "--timed-steps", str(args.timed_steps)]
    common += ["--cpu-dry-run"] if args.cpu_dry_run else []
    common += ["--no-compile"] if args.no_compile else []
    common += ["--caption", args.caption] + (["--from-random"] if args.from_random else [])
    if args.pin_probe == "yes":
        bench_gpu.stream_worker(me + ["--worker", "pin-probe"] + common, records, args.json_out)
    if args.quant_error == "yes":
        bench_gpu.stream_worker(me + ["--worker", "quant-error"] + common, records, args.json_out)
    if not args.from_random and not (args.keep_weights and
                                     (Path(args.weights_dir) / "transformer" / "config.json").is_file()):
        bench_gpu.stream_worker(me + ["--worker", "weights"] + common, records, args.json_out)
    for tier in [t.strip() for t in args.tiers.split(",") if t.strip()]:
        elapsed = time.perf_counter() - started
        estimate = TIER_ESTIMATE_S["eager" if args.no_compile or args.cpu_dry_run else "compiled"]
        if args.budget_s is not None and elapsed + estimate > args.budget_s:
            print(f"# {tier}: skipped, {elapsed:.0f} s of {args.budget_s:.0f} used", flush=True)
            records.append({"tier": tier, "stage": "setup", "error": "skipped: out of the call's time"})
            continue
        code = bench_gpu.stream_worker(me + ["--worker", tier] + common, records, args.json_out)
        if code != 0:
            records.append({"tier": tier, "stage": "setup", "error": f"worker exited {code}"})
    if args.exact == "yes":
        command = [sys.executable, str(REPO_ROOT / "scripts" / "bench_gpu.py"), "--worker", "exact", "--sizes",
                   ",".join(args.sizes), "--warmup-steps", str(args.warmup_steps), "--timed-steps",
                   str(args.timed_steps), "--caption-presets", "exact", "--seed", str(args.seed)]
        command += ["--cpu-dry-run"] if args.cpu_dry_run else []
        before = len(records)
        bench_gpu.stream_worker(command, records, args.json_out)
        for record in records[before:]:
            if record.get("stage") == "caption":
                record["tier"] = "exact"
    print_table(records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
