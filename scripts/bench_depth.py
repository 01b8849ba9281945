#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Seconds that depth per layer adds to a job: Depth Anything V2 Small's architecture (random weights, built offline:
honest for speed, never for quality) on the composite, then the per-layer hidden-area completion.

    .venv/bin/python scripts/bench_depth.py [--sizes 640 1024] [--layers 4 8] [--repeats 3]

Prints a table: image size × layers → model seconds (load excluded; the worker keeps the model), completion seconds,
total, and the decomposition's own CPU seconds for scale are in README's CPU table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_blender_stack's synthetic layers


def build_small_model(out_dir: str) -> str:
    """Depth Anything V2 Small's configuration (ViT-S/14 DINOv2 backbone, DPT head) with random weights."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    torch.manual_seed(0)
    backbone = Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, mlp_ratio=4, patch_size=14,
                            image_size=518, layerscale_value=1.0,
                            out_features=["stage3", "stage6", "stage9", "stage12"], reshape_hidden_states=False,
                            apply_layernorm=True)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=384,
                                 neck_hidden_sizes=[48, 96, 192, 384], fusion_hidden_size=64, head_hidden_size=32,
                                 reassemble_factors=[4, 2, 1, 0.5], depth_estimation_type="relative")
    DepthAnythingForDepthEstimation(config).eval().save_pretrained(out_dir)
    DPTImageProcessor(size={"height": 518, "width": 518}, keep_aspect_ratio=True, ensure_multiple_of=14,
                      resample=3, do_normalize=True, image_mean=[0.485, 0.456, 0.406],
                      image_std=[0.229, 0.224, 0.225]).save_pretrained(out_dir)
    return out_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[640, 1024])
    parser.add_argument("--layers", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    import torch
    from bench_blender_stack import synthetic_layer_arrays

    from inference_server import depth
    from inference_server.layers import composite_over

    with tempfile.TemporaryDirectory(prefix="strata-depth-small-") as folder:
        model_dir = build_small_model(folder)
        start = time.perf_counter()
        estimator = depth.get_estimator(model_dir)
        load_s = time.perf_counter() - start
        parameters_m = sum(p.numel() for p in estimator.model.parameters()) / 1e6
        rows = []
        for size_px in args.sizes:
            for count in args.layers:
                layers = synthetic_layer_arrays(count, size_px)
                composite = composite_over(layers)
                model_s, fill_s = [], []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    nearness = estimator(composite[..., :3].copy())
                    model_s.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    depth.encode_depth_maps(depth.layer_depths(
                        nearness, [layer[..., 3].astype(np.float32) / 255.0 for layer in layers]))
                    fill_s.append(time.perf_counter() - start)
                rows.append((size_px, count, min(model_s), min(fill_s)))
    print(f"Depth Anything V2 Small architecture, random weights: {parameters_m:.1f} M parameters, "
          f"load {load_s:.2f} s, torch {torch.__version__}, {torch.get_num_threads()} threads, best of {args.repeats}")
    print(f"{'size_px':>8} {'layers':>6} {'model_s':>8} {'completion_s':>13} {'total_s':>8}")
    for size_px, count, model_s, fill_s in rows:
        print(f"{size_px:>8} {count:>6} {model_s:>8.3f} {fill_s:>13.3f} {model_s + fill_s:>8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
