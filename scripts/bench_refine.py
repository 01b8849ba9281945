# SPDX-License-Identifier: GPL-3.0-or-later
"""Refine-stage benchmark: resize-only against refine, at full resolution, against ground-truth layers.

    .venv/bin/python scripts/bench_refine.py                       # generated sets + /work/data/real if present
    .venv/bin/python scripts/bench_refine.py --seeds 2 --sets flat,semi --no-timing
    taskset -c 0,1 .venv/bin/python scripts/bench_refine.py --timing-only

Ground truth: layered images from benchmarks.samples (flat, gradient, photo, cutout, semi, text; at
--size, 1536×1024 by default), the held-out generator (benchmarks.samples_heldout, 1024²), an RGBA set
("transparent": the flat samples without their background layer, so the input itself is transparent), and the
real-world set in --real (/work/data/real: ``index.json`` lists the cases, each a folder with ``composite.png`` and
``layer_XX.png``; all of them) when it exists. From each ground truth a "model-like" output is made, as
Qwen-Image-Layered returns it: every layer downscaled (premultiplied, area) to 640 px on the long side, a mild blur
(Gaussian σ 0.6 px there), a colour jitter of ±3 levels (per layer and channel) and alpha noise (Gaussian σ 0.02,
clipped).

Methods, both to the input's full size: **resize** — Lanczos, premultiplied (what the qwen backend did before the
refine stage); **refine** — ``inference_server.refine.refine_layers``. Columns per set (means over its images):
composite PSNR (dB, vs the input, colour premultiplied + alpha) and the worst pixel's error (0–255, max over all
images and channels); LayerD RGB L1 ↓ and soft alpha IoU ↑ (benchmarks.metrics, edit level 0); sharpness
= mean gradient magnitude of each layer (premultiplied colour and alpha, Sobel) / the ground truth's, averaged over
layers. Then timings of refine alone: 1024² × 4 layers and 4096² × 8 layers (distinct layers: a flat poster's
and other posters' shapes and text on top), wall and CPU seconds (median of --repeats; on a shared machine the CPU
seconds are the fairer number), and the peak of numpy allocations during a refine (tracemalloc).

With --cpu-backend: the CPU decomposer's own composite error (worst pixel, and how many pixels are more than one
level off) and the same after the refine stage, on 512×384 generated images.

Targets: composite max error ≤ 1; L1 ≥ 40 % lower than resize; sharpness ratio ≥ 0.9; ≤ 1 s (1024² × 4) and
≤ 6 s (4096² × 8) on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.metrics import score_layers  # noqa: E402
from benchmarks.real_set import DEFAULT_REAL_DATA, load_real_case, real_case_names  # noqa: E402
from benchmarks.samples import SAMPLE_KINDS, make_sample  # noqa: E402
from benchmarks.samples_heldout import HELDOUT_KINDS, make_heldout_sample  # noqa: E402
from inference_server.layers import composite_over  # noqa: E402
from inference_server.refine import refine_layers  # noqa: E402

MODEL_SIDE_PX = 640
BLUR_SIGMA_PX = 0.6
JITTER_LEVELS = 3
ALPHA_NOISE = 0.02


def model_like(layers: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """What a 640-px model returns for these ground-truth layers (see the module docstring)."""
    height, width = layers[0].shape[:2]
    scale = MODEL_SIDE_PX / max(height, width)
    size_wh = (max(16, round(width * scale)), max(16, round(height * scale)))
    out = []
    for rgba in layers:
        small = np.asarray(Image.fromarray(rgba, "RGBA").resize(size_wh, Image.Resampling.BOX)).astype(np.float32)
        alpha = small[..., 3:4] / 255.0
        premul = cv2.GaussianBlur(small[..., :3] * alpha, (0, 0), BLUR_SIGMA_PX)
        alpha = cv2.GaussianBlur(alpha[..., 0], (0, 0), BLUR_SIGMA_PX)[..., None]
        colour = np.where(alpha > 1e-3, premul / np.maximum(alpha, 1e-3), small[..., :3])
        colour += rng.integers(-JITTER_LEVELS, JITTER_LEVELS + 1, size=3)
        alpha = alpha + rng.normal(0.0, ALPHA_NOISE, alpha.shape) * (alpha > 0.0)
        result = np.concatenate([colour, np.clip(alpha, 0, 1) * 255.0], axis=2)
        out.append(np.clip(np.rint(result), 0, 255).astype(np.uint8))
    return out


def resize_only(layers: list[np.ndarray], width_px: int, height_px: int) -> list[np.ndarray]:
    return [np.asarray(Image.fromarray(rgba, "RGBA").resize((width_px, height_px), Image.Resampling.LANCZOS))
            for rgba in layers]


def composite_errors(layers: list[np.ndarray], target: np.ndarray) -> tuple[float, float]:
    """(PSNR dB, max error 0–255) of the composite against the target: colour where the target shows, alpha."""
    composite = composite_over(layers).astype(np.float64)
    target = target.astype(np.float64)
    premul_c = composite[..., :3] * composite[..., 3:4] / 255.0
    premul_t = target[..., :3] * target[..., 3:4] / 255.0
    diff = np.concatenate([premul_c - premul_t, composite[..., 3:4] - target[..., 3:4]], axis=2)
    mse = float((diff ** 2).mean())
    psnr = 99.0 if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)
    shows = target[..., 3] > 0
    straight = np.abs(composite[..., :3] - target[..., :3])[shows]
    worst = max(float(straight.max()) if straight.size else 0.0,
                float(np.abs(composite[..., 3] - target[..., 3]).max()))
    return psnr, worst


def gradient_energy(rgba: np.ndarray) -> float:
    values = rgba.astype(np.float32)
    values[..., :3] *= values[..., 3:4] / 255.0
    gx = cv2.Sobel(values, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(values, cv2.CV_32F, 0, 1, ksize=3)
    return float(np.sqrt(gx * gx + gy * gy).mean())


def sharpness(pred: list[np.ndarray], gt: list[np.ndarray]) -> float:
    ratios = [gradient_energy(p) / max(gradient_energy(g), 1e-6) for p, g in zip(pred, gt, strict=False)
              if gradient_energy(g) > 1e-3]
    return float(np.mean(ratios)) if ratios else 1.0


def ground_truth_sets(names: list[str], seeds: int, size_wh: tuple[int, int], real_dir: Path):
    """Yields (set name, composite, layers)."""
    for kind in names:
        if kind in SAMPLE_KINDS:
            for seed in range(seeds):
                sample = make_sample(kind, size_wh[0], size_wh[1], seed)
                yield kind, sample.composite, sample.layers
        elif kind == "heldout":
            for seed in range(seeds):
                sample = make_heldout_sample(HELDOUT_KINDS[seed % len(HELDOUT_KINDS)], 1024, 1024, seed)
                yield kind, sample.composite, sample.layers
        elif kind == "transparent":
            for seed in range(seeds):
                layers = make_sample("flat", size_wh[0], size_wh[1], seed).layers[1:]
                yield kind, composite_over(layers), layers
        elif kind == "real" and not (real_dir / "index.json").is_file():
            print(f"real: no real set at {real_dir} (scripts/real_layered_set.py builds it): left out")
        elif kind == "real":
            for case in real_case_names(real_dir, None):  # refuses a set still being built
                target, layers, _ = load_real_case(real_dir / case)
                yield kind, target, layers


def run_quality(args) -> list[dict]:
    rng = np.random.default_rng(7)
    rows: dict[str, dict] = {}
    for name, target, gt in ground_truth_sets(args.sets.split(","), args.seeds, (args.width, args.height),
                                              Path(args.real)):
        height, width = target.shape[:2]
        low = model_like(gt, rng)
        results = {"resize": resize_only(low, width, height)}
        started = time.perf_counter()
        results["refine"] = refine_layers(low, target).layers
        refine_s = time.perf_counter() - started
        row = rows.setdefault(name, {"set": name, "images": 0, "refine_s": []})
        row["images"] += 1
        row["refine_s"].append(refine_s)
        for method, layers in results.items():
            psnr, worst = composite_errors(layers, target)
            levels = score_layers(layers, gt, max_edits=0)
            stats = row.setdefault(method, {"psnr": [], "max": [], "l1": [], "iou": [], "sharp": []})
            stats["psnr"].append(psnr)
            stats["max"].append(worst)
            if levels is not None:
                stats["l1"].append(levels[0].rgb_l1)
                stats["iou"].append(levels[0].alpha_iou)
            stats["sharp"].append(sharpness(layers, gt))
        print(f"  {name}: {width}×{height}, {len(gt)} layers, refine {refine_s:.2f} s", file=sys.stderr)
    table = []
    for row in rows.values():
        entry = {"set": row["set"], "images": row["images"], "refine_s": float(np.mean(row["refine_s"]))}
        for method in ("resize", "refine"):
            stats = row[method]
            entry[method] = {"psnr": float(np.mean(stats["psnr"])), "max": float(np.max(stats["max"])),
                             "l1": float(np.mean(stats["l1"])) if stats["l1"] else float("nan"),
                             "iou": float(np.mean(stats["iou"])) if stats["iou"] else float("nan"),
                             "sharp": float(np.mean(stats["sharp"]))}
        table.append(entry)
    return table


def print_quality(table: list[dict]) -> None:
    print("| set | images | PSNR dB resize / refine | max err resize / refine | RGB L1 resize / refine (Δ) "
          "| alpha IoU resize / refine | sharpness resize / refine |")
    print("|---|---|---|---|---|---|---|")
    for entry in table:
        a, b = entry["resize"], entry["refine"]
        drop = (1.0 - b["l1"] / a["l1"]) * 100.0 if a["l1"] > 0 else 0.0
        print(f"| {entry['set']} | {entry['images']} | {a['psnr']:.1f} / {b['psnr']:.1f} | {a['max']:.0f} / "
              f"{b['max']:.0f} | {a['l1']:.4f} / {b['l1']:.4f} (−{drop:.0f} %) | {a['iou']:.3f} / {b['iou']:.3f} | "
              f"{a['sharp']:.2f} / {b['sharp']:.2f} |")


def timing_case(side_px: int, count: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """A poster of ``count`` distinct layers: a flat sample's layers, then other samples' shapes and text on top."""
    layers = list(make_sample("flat", side_px, side_px, 0).layers)
    seed = 1
    while len(layers) < count:
        layers += make_sample("flat", side_px, side_px, seed).layers[1:]
        seed += 1
    layers = layers[:count]
    return composite_over(layers), layers


def run_timing(repeats: int) -> list[dict]:
    """Wall and CPU seconds of refine alone (median of ``repeats``), then its peak numpy memory in a separate run
    (tracemalloc slows what it watches)."""
    rows = []
    for side_px, count in ((1024, 4), (4096, 8)):
        target, gt = timing_case(side_px, count)
        low = model_like(gt, np.random.default_rng(side_px))
        walls, cpus = [], []
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            result = refine_layers(low, target)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            output_mib = sum(layer.nbytes for layer in result.layers) / 2**20
            del result
        tracemalloc.start()
        refine_layers(low, target)
        peak_mib = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        rows.append({"size": f"{side_px}²", "layers": count, "wall_s": float(np.median(walls)),
                     "cpu_s": float(np.median(cpus)), "peak_mib": peak_mib, "output_mib": output_mib})
    return rows


def print_timing(rows: list[dict]) -> None:
    print("| refine of | wall s (median) | CPU s (median) | peak MiB (of which the output layers) |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['size']} × {row['layers']} layers (from 640 px) | {row['wall_s']:.2f} | {row['cpu_s']:.2f} | "
              f"{row['peak_mib']:.0f} ({row['output_mib']:.0f}) |")


def run_cpu_backend(seeds: int) -> list[dict]:
    """The CPU decomposer's own composite error, and after the refine stage (512×384 generated images, 4 layers)."""
    from inference_server.backends.cpu import CpuDecomposer
    from inference_server.params import DecomposeParams

    decomposer = CpuDecomposer()
    rows = []
    for kind in SAMPLE_KINDS:
        before, after, pixels_off = [], [], []
        for seed in range(seeds):
            target = make_sample(kind, 512, 384, seed).composite
            stack = decomposer.decompose(Image.fromarray(target, "RGBA"), DecomposeParams(layers=4, backend="cpu"))
            layers = [layer.rgba for layer in stack.layers]
            before.append(composite_errors(layers, target)[1])
            composite = composite_over(layers).astype(int)
            pixels_off.append(int((np.abs(composite - target.astype(int)).max(axis=2) > 1).sum()))
            after.append(composite_errors(refine_layers(layers, target).layers, target)[1])
        rows.append({"set": kind, "images": seeds, "max_before": max(before), "pixels_off_before": max(pixels_off),
                     "max_after": max(after)})
    return rows


def print_cpu_backend(rows: list[dict]) -> None:
    print("| cpu backend, set | images | composite max error: backend alone (pixels > 1 level off) | after refine |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['set']} | {row['images']} | {row['max_before']:.0f} ({row['pixels_off_before']}) | "
              f"{row['max_after']:.0f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default=",".join(SAMPLE_KINDS) + ",heldout,transparent,real")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--width", type=int, default=1536)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--real", default=str(DEFAULT_REAL_DATA))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--timing-only", action="store_true")
    parser.add_argument("--cpu-only", action="store_true", help="only the --cpu-backend table")
    parser.add_argument("--cpu-backend", action="store_true",
                        help="also: the CPU decomposer's composite error before and after refine")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    report = {}
    if not args.timing_only and not args.cpu_only:
        report["quality"] = run_quality(args)
        print_quality(report["quality"])
    if args.cpu_backend or args.cpu_only:
        report["cpu_backend"] = run_cpu_backend(args.seeds)
        print()
        print_cpu_backend(report["cpu_backend"])
    if not args.no_timing and not args.cpu_only:
        report["timing"] = run_timing(args.repeats)
        print()
        print_timing(report["timing"])
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
