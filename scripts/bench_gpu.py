# SPDX-License-Identifier: GPL-3.0-or-later
"""GPU benchmark of the Qwen-Image-Layered backend: stock vs each preset, per stage, with peak memory.

    python scripts/bench_gpu.py                       # every preset, 640 and 1024 px, 4 and 8 layers
    python scripts/bench_gpu.py --presets stock,exact --sizes 640x4 --timed-steps 4
    python scripts/bench_gpu.py --cpu-dry-run         # the same code on a scaled-down model, on CPU

No weights are downloaded: the real-size architecture (transformer 20.4 B parameters, RGBA VAE, Qwen2.5-VL-7B text
encoder) is built with random weights straight on the GPU in bf16, block by block, and handed to
``QwenLayeredBackend``, whose own ``decompose`` is timed. Each preset runs in a fresh process (clean compile caches
and peak-memory counters) on the same random weights (same seed), so results are comparable and exact presets can
be checked against stock.

The prompt is given (no captioning) for the timed runs; captioning is timed once per preset with the generated
caption capped (a random model never says stop). The tokenizer is byte-level (no BPE merges), so the prompt is
chosen to give about as many text tokens as a real caption (~300).

Per configuration: ``warmup`` steps (compile happens here) then ``timed`` steps; s/step is the mean of the timed
steps, both CFG passes included (the model card runs true CFG with a single-space negative prompt).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

PRESETS = ("stock", "exact", "fast", "lowvram")
DEFAULT_SIZES = ("640x4", "640x8", "1024x4", "1024x8")
# About 300 byte-level tokens after the template's system prefix: a typical length of a real caption.
PROMPT = (
    "A flat illustration of a red bicycle leaning against a pale yellow brick wall, a potted fern on the left, "
    "a round wall clock above, soft afternoon light from the right casting long shadows on a grey pavement; "
    "the word 'OPEN' painted in white letters on a blue sign."
)
LOWVRAM_BUDGET_GIB = 22.0
CAPTION_MAX_NEW_TOKENS = 64
GIB = 1024**3

# Real sizes: Qwen-Image-Layered's transformer and VAE (diffusers defaults + layered flags) and Qwen2.5-VL-7B.
REAL_TEXT_CONFIG = dict(
    hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
    rope_theta=1000000.0, max_position_embeddings=128000,
    rope_scaling={"mrope_section": [16, 24, 24], "rope_type": "default", "type": "default"},
)
REAL_VISION_CONFIG = dict(
    depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584, patch_size=14,
    spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31],
)
TINY_TEXT_CONFIG = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    rope_theta=1000000.0, rope_scaling={"mrope_section": [2, 3, 3], "rope_type": "default", "type": "default"},
)
TINY_VISION_CONFIG = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                          fullatt_block_indexes=[1])
# Qwen2 numbers its special tokens from here; the byte-level tokenizer keeps these ids so the 152,064-row
# embedding of the real text encoder is used as in the real model.
QWEN_FIRST_SPECIAL_ID = 151643
QWEN_VOCAB_SIZE = 152064


def _builder():
    spec = importlib.util.spec_from_file_location("make_tiny_qwen_layered",
                                                  REPO_ROOT / "scripts" / "make_tiny_qwen_layered.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_random_pipeline(device: str, tiny: bool, seed: int = 0, transformer_blocks: int | None = None):
    """A QwenImageLayeredPipeline of the real architecture with random weights, built on ``device``.

    transformer_blocks: build only this many transformer blocks (the tier benchmark loads its transformer from
    files instead, and passes 0).

    Every module is created on the device in fp32 one block at a time and cast to bf16 at once, so the peak is
    the bf16 model plus one fp32 block, and nothing passes through CPU memory.
    """
    import torch
    from diffusers import AutoencoderKLQwenImage, QwenImageLayeredPipeline, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    builder = _builder()
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    torch.manual_seed(seed)
    tokenizer = builder.build_tokenizer(first_special_id=None if tiny else QWEN_FIRST_SPECIAL_ID)
    token_id = tokenizer.convert_tokens_to_ids

    with torch.device(device):
        # Transformer: the embedders and output head first (no blocks), then the 60 blocks one by one.
        dims = dict(num_layers=2, attention_head_dim=32, num_attention_heads=4, joint_attention_dim=64,
                    axes_dims_rope=(8, 12, 12)) if tiny else dict(num_layers=60)
        num_blocks = dims.pop("num_layers")
        built_blocks = num_blocks if transformer_blocks is None else transformer_blocks
        transformer = QwenImageTransformer2DModel(num_layers=0, use_additional_t_cond=True, use_layer3d_rope=True,
                                                  **dims).to(dtype)
        from diffusers.models.transformers.transformer_qwenimage import QwenImageTransformerBlock

        for _ in range(built_blocks):
            transformer.transformer_blocks.append(
                QwenImageTransformerBlock(dim=transformer.inner_dim,
                                          num_attention_heads=transformer.config.num_attention_heads,
                                          attention_head_dim=transformer.config.attention_head_dim).to(dtype)
            )
        transformer.register_to_config(num_layers=built_blocks)
        transformer.eval()

        vae_dims = dict(base_dim=8, dim_mult=[1, 1, 2, 2], num_res_blocks=1) if tiny else {}
        vae = AutoencoderKLQwenImage(input_channels=4, **vae_dims).to(dtype).eval()

        text_config = dict(TINY_TEXT_CONFIG if tiny else REAL_TEXT_CONFIG)
        vision_config = dict(TINY_VISION_CONFIG if tiny else REAL_VISION_CONFIG)
        vocab_size = len(tokenizer) if tiny else QWEN_VOCAB_SIZE
        config = Qwen2_5_VLConfig(
            text_config={**text_config, "vocab_size": vocab_size, "bos_token_id": None,
                         "eos_token_id": token_id("<|im_end|>"), "pad_token_id": token_id("<|endoftext|>")},
            vision_config=vision_config,
            vocab_size=vocab_size,
            image_token_id=token_id("<|image_pad|>"),
            video_token_id=token_id("<|video_pad|>"),
            vision_start_token_id=token_id("<|vision_start|>"),
            vision_end_token_id=token_id("<|vision_end|>"),
        )
        # Decoder layers one at a time, like the transformer's blocks.
        layer_count = config.text_config.num_hidden_layers
        config.text_config.num_hidden_layers = 0
        text_encoder = Qwen2_5_VLForConditionalGeneration(config).to(dtype)
        from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLDecoderLayer

        language_model = text_encoder.model.language_model
        for index in range(layer_count):
            language_model.layers.append(Qwen2_5_VLDecoderLayer(config.text_config, layer_idx=index).to(dtype))
        config.text_config.num_hidden_layers = layer_count
        text_encoder.eval()
        text_encoder.generation_config.do_sample = False
        text_encoder.generation_config.pad_token_id = token_id("<|endoftext|>")

    scheduler = builder.build_scheduler()
    processor = builder.build_processor(tokenizer, max_pixels=None if not tiny else builder.CAPTION_MAX_PIXELS)
    pipe = QwenImageLayeredPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                    processor=processor, transformer=transformer)
    return pipe


def _cap_caption_length(text_encoder, max_new_tokens: int) -> None:
    """The pipeline asks for up to 512 caption tokens; a random model never stops, so cap it for the benchmark."""
    generate = text_encoder.generate

    def capped_generate(*args, **kwargs):
        kwargs["max_new_tokens"] = min(kwargs.get("max_new_tokens", max_new_tokens), max_new_tokens)
        return generate(*args, **kwargs)

    text_encoder.generate = capped_generate


def timed_decompose(backend, size: str, prompt: str, steps: int, *, seed: int, on_cuda: bool,
                    error_chars: int | None = None, **param_options):
    """Run ``backend`` once on a random RGBA image of ``size`` ("640x4": side px x layers).

    Returns (stack or None, error or None, per-step seconds, peak GiB); an exception (an OOM under a cap, a NaN) is
    a result too, its message cut to ``error_chars`` where given. ``param_options`` go to DecomposeParams (preset,
    offload)."""
    import numpy as np
    import torch
    from PIL import Image

    from inference_server.backends.base import CancelToken
    from inference_server.params import DecomposeParams

    resolution, layers = (int(part) for part in size.split("x"))
    image = Image.fromarray(
        np.random.default_rng(0).integers(0, 255, (resolution, resolution, 4), dtype=np.uint8), "RGBA"
    )
    marks: list[float] = []

    def progress(stage, step, total):
        if stage == "denoise":
            if on_cuda:
                torch.cuda.synchronize()
            marks.append(time.perf_counter())

    params = DecomposeParams(layers=layers, num_inference_steps=steps, resolution=resolution, prompt=prompt,
                             seed=seed, **param_options).validate()
    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    stack = error = None
    try:
        stack = backend.decompose(image, params, progress=progress, cancel=CancelToken())
    except Exception as failure:  # noqa: BLE001 - an OOM or NaN is a result too
        error = f"{type(failure).__name__}: {str(failure)[:error_chars]}"
    peak = round(torch.cuda.max_memory_allocated() / GIB, 2) if on_cuda else None
    return stack, error, np.diff(marks), peak  # marks[0] is the "0 of N" report before the first step


def run_worker(args) -> None:
    """One preset, every size; prints one JSON line per measurement."""
    import numpy as np
    import torch

    from inference_server.backends.qwen import QwenLayeredBackend

    device = "cpu" if args.cpu_dry_run else "cuda"
    preset = args.worker
    emit = lambda record: print("RESULT " + json.dumps({"preset": preset, **record}), flush=True)  # noqa: E731

    started = time.perf_counter()
    pipe = build_random_pipeline(device, tiny=args.cpu_dry_run, seed=args.seed)
    build_s = time.perf_counter() - started
    _cap_caption_length(pipe.text_encoder, CAPTION_MAX_NEW_TOKENS)
    offload = "group" if preset == "lowvram" else "none"
    backend = QwenLayeredBackend(device=device, preset=preset, offload=offload, pipeline=pipe,
                                 compile_backend="none" if args.no_compile else
                                 ("eager" if args.cpu_dry_run and preset in ("exact", "fast") else None))
    started = time.perf_counter()
    try:
        backend.load(preset, offload)
    except Exception as error:  # noqa: BLE001 - report and go on with the next preset
        emit({"stage": "setup", "error": f"{type(error).__name__}: {error}"})
        return
    setup_s = time.perf_counter() - started
    on_cuda = device == "cuda"
    if on_cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        resident_gib = torch.cuda.memory_allocated() / GIB
        if preset == "lowvram":
            # Anything past the budget now raises OutOfMemory instead of quietly using the rest of the card.
            total = torch.cuda.get_device_properties(0).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, LOWVRAM_BUDGET_GIB * GIB / total))
    else:
        resident_gib = 0.0
    emit({"stage": "setup", "build_s": build_s, "preset_setup_s": setup_s, "resident_gib": resident_gib})

    def decompose(size: str, prompt: str, steps: int):
        return timed_decompose(backend, size, prompt, steps, seed=args.seed, on_cuda=on_cuda, preset=preset,
                               offload=offload)

    if preset in args.caption_presets.split(","):
        # Captioning depends on the image size only; one short run at the first size times it.
        stack, error, _, peak = decompose(args.sizes[0], "", 2)
        emit({"stage": "caption", "size": args.sizes[0], "error": error, "peak_gib": peak,
              "caption_s": stack.timings_s.get("caption") if stack else None,
              "caption_tokens_max": CAPTION_MAX_NEW_TOKENS})

    compare_size = args.compare_size or args.sizes[0]
    for size in args.sizes:
        stack, error, steps, peak = decompose(size, PROMPT, args.warmup_steps + args.timed_steps)
        timed = steps[args.warmup_steps:]
        record = {
            "size": size,
            "error": error,
            "timings_s": {k: round(v, 4) for k, v in stack.timings_s.items()} if stack else {},
            "warmup_step_s": [round(float(value), 3) for value in steps[: args.warmup_steps]],
            "s_per_step": round(float(timed.mean()), 4) if timed.size else None,
            "s_per_step_min": round(float(timed.min()), 4) if timed.size else None,
            "peak_gib": peak,
        }
        if stack is not None and args.save_layers and size == compare_size:
            out = Path(args.save_layers) / f"{preset}_{size}.npy"
            out.parent.mkdir(parents=True, exist_ok=True)
            np.save(out, np.stack([layer.rgba for layer in stack.layers]))
            record["layers_file"] = str(out)
        emit(record)


def attention_check() -> None:
    """SDPA kernels at the model's shapes (24 heads × 128, one image + ~300 text tokens): which is fastest here."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    for tokens in (6 * 1600 + 300, 10 * 1600 + 300, 6 * 4096 + 300):
        q, k, v = (torch.randn(1, 24, tokens, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        flops = 4 * tokens * tokens * 128 * 24
        line = [f"attention at {tokens} tokens:"]
        for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION):
            try:
                with sdpa_kernel(backend):
                    for _ in range(3):
                        torch.nn.functional.scaled_dot_product_attention(q, k, v)
                    torch.cuda.synchronize()
                    start = time.perf_counter()
                    for _ in range(10):
                        torch.nn.functional.scaled_dot_product_attention(q, k, v)
                    torch.cuda.synchronize()
                seconds = (time.perf_counter() - start) / 10
                line.append(f"{backend.name} {seconds * 1e3:.2f} ms ({flops / seconds / 1e12:.0f} TFLOP/s)")
            except RuntimeError as error:
                line.append(f"{backend.name} unavailable ({str(error)[:60]})")
        print("ATTENTION " + "; ".join(line), flush=True)


def print_table(records: list[dict], out=sys.stdout) -> None:
    setups = {r["preset"]: r for r in records if r.get("stage") == "setup"}
    captions = {r["preset"]: r for r in records if r.get("stage") == "caption"}
    rows = [r for r in records if "size" in r and "stage" not in r]
    print("\n| preset | size (px × layers) | s/step | warm-up step s | encode s | decode s | peak GiB | note |",
          file=out)
    print("|---|---|---|---|---|---|---|---|", file=out)
    for r in rows:
        t = r.get("timings_s", {})
        size_px, layer_count = r["size"].split("x")
        per_step = f"{r['s_per_step']:.3f}" if r.get("s_per_step") is not None else "-"
        warm = ", ".join(f"{v:.2f}" for v in r.get("warmup_step_s", [])) or "-"
        note = (r.get("error") or "")[:140].replace("|", "/")
        print(
            f"| {r['preset']} | {size_px} × {layer_count} | {per_step} | {warm} | "
            f"{t['encode']:.3f} | {t['decode']:.2f} | {r['peak_gib'] if r['peak_gib'] is not None else '-'} | {note} |"
            if t else
            f"| {r['preset']} | {size_px} × {layer_count} | {per_step} | {warm} | - | - | "
            f"{r.get('peak_gib', '-')} | {note} |",
            file=out,
        )
    for preset, setup in setups.items():
        if setup.get("error"):
            print(f"\n{preset}: setup failed: {setup['error']}", file=out)
            continue
        line = (f"\n{preset}: random weights built in {setup['build_s']:.1f} s, preset applied in "
                f"{setup['preset_setup_s']:.1f} s, {setup['resident_gib']:.1f} GiB resident after setup")
        caption = captions.get(preset)
        if caption:
            line += (f"; caption ({caption['size']}, prefill + {caption['caption_tokens_max']} tokens) "
                     + (f"{caption['caption_s']:.2f} s, peak {caption['peak_gib']} GiB" if caption.get("caption_s")
                        else f"failed: {caption.get('error')}"))
        print(line, file=out)


def compare_layers(records: list[dict], out=sys.stdout) -> None:
    import numpy as np

    files = {(r["preset"], r["size"]): r["layers_file"] for r in records if r.get("layers_file")}
    for (preset, size), path in sorted(files.items()):
        reference = files.get(("stock", size))
        if preset == "stock" or reference is None:
            continue
        a = np.load(reference).astype(np.int16)
        b = np.load(path).astype(np.int16)
        diff = np.abs(a - b)
        print(f"{preset} vs stock at {size}: max |Δ| {diff.max()} / 255, mean |Δ| {diff.mean():.3f}", file=out)


def stream_worker(command: list[str], records: list[dict], json_out: str | None, label: str = "") -> int:
    """Run one benchmark worker process, passing its ``RESULT {json}`` lines on as they come (so a run cut short by
    a time limit still leaves its finished records behind: in ``records`` and appended to ``json_out``)."""
    print(f"# {label}{' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    tail: list[str] = []
    for line in process.stdout:
        line = line.rstrip("\n")
        tail = (tail + [line])[-30:]
        if line.startswith("RESULT "):
            record = json.loads(line[len("RESULT "):])
            records.append(record)
            print(line, flush=True)
            if json_out:
                with open(json_out, "a") as handle:
                    handle.write(json.dumps(record) + "\n")
    code = process.wait()
    if code != 0:
        print(f"# {label}exited {code}:\n" + "\n".join(tail), flush=True)
    print(f"# {label}{time.perf_counter() - started:.0f} s", flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--sizes", default=",".join(DEFAULT_SIZES), help="RESOLUTIONxLAYERS, comma separated")
    parser.add_argument("--warmup-steps", type=int, default=1)
    parser.add_argument("--timed-steps", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--caption-presets", default="stock,lowvram",
                        help="presets that also time one captioned run (captioning is the same in the others)")
    parser.add_argument("--cpu-dry-run", action="store_true", help="scaled-down model on CPU: checks the code path")
    parser.add_argument("--save-layers", default=None, help="folder for the layers of the first size (for Δ vs stock)")
    parser.add_argument("--compare-size", default=None)
    parser.add_argument("--json-out", default=None, help="append every record to this JSON-lines file")
    parser.add_argument("--no-compile", action="store_true", help="exact/fast without torch.compile")
    parser.add_argument("--attention-check", action="store_true", help="time the SDPA kernels and exit")
    parser.add_argument("--speed-suite", metavar="OUT", default=None,
                        help="run scripts/bench_gpu_speed.py instead (exact vs fast, CFG-parallel on 2 GPUs, warm-up, "
                             "whole job by stage) with its results in OUT")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--tiers", default=None,
                        help="VRAM tiers instead of presets, e.g. 24,16,12,8 (scripts/bench_gpu_tiers.py; its own "
                             "options follow --tiers there)")
    args, unknown = parser.parse_known_args(argv)
    if args.tiers:
        sys.path.insert(0, str(REPO_ROOT / "scripts"))
        from bench_gpu_tiers import main as tiers_main

        raw = list(argv if argv is not None else sys.argv[1:])
        return tiers_main(raw)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.speed_suite:
        suite = [sys.executable, str(REPO_ROOT / "scripts" / "bench_gpu_speed.py"), "--out", args.speed_suite]
        return subprocess.call(suite + (["--cpu-dry-run"] if args.cpu_dry_run else []))
    args.sizes = [size.strip() for size in args.sizes.split(",") if size.strip()]

    if args.worker:
        run_worker(args)
        return 0
    if args.attention_check:
        attention_check()
        return 0

    records: list[dict] = []
    for preset in [p.strip() for p in args.presets.split(",") if p.strip()]:
        if preset not in PRESETS:
            parser.error(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        raw = list(argv if argv is not None else sys.argv[1:])
        passed = []
        while raw:
            arg = raw.pop(0)
            if arg == "--presets":
                raw.pop(0)
            elif not arg.startswith("--presets="):
                passed.append(arg)
        command = [sys.executable, __file__, "--worker", preset] + passed
        if stream_worker(command, records, args.json_out, label=f"{preset}: ") != 0:
            records.append({"preset": preset, "stage": "setup", "error": "worker exited with an error (log above)"})
    print_table(records)
    if args.save_layers:
        compare_layers(records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
