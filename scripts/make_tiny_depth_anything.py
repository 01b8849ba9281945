# SPDX-License-Identifier: GPL-3.0-or-later
"""Build a tiny, random-weight Depth Anything folder (``DepthAnythingForDepthEstimation`` + its image processor),
offline.

    python scripts/make_tiny_depth_anything.py OUT_DIR

Same classes and the same preprocessing as depth-anything/Depth-Anything-V2-Small-hf (a DINOv2 backbone, the DPT-style
neck and relative-depth head, ``DPTImageProcessor`` with mean/std normalisation, aspect kept, sides a multiple of 14),
only a few channels wide and a 126 px input, so it loads with ``from_pretrained(OUT_DIR)`` in well under a second and
runs on a CPU in milliseconds. Its depth maps are noise-shaped: honest for the loading path and the file format, never
for quality. Tests import ``build_tiny_depth_model(out_dir)`` from this file.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def build_tiny_depth_model(out_dir: str | Path, seed: int = 0) -> Path:
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                            image_size=126, patch_size=14, out_features=["stage1", "stage2", "stage3", "stage4"],
                            reshape_hidden_states=False, apply_layernorm=True)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, patch_size=14,
                                 neck_hidden_sizes=[8, 16, 32, 64], fusion_hidden_size=16, head_hidden_size=8,
                                 depth_estimation_type="relative")
    model = DepthAnythingForDepthEstimation(config).eval()
    model.save_pretrained(out_dir)
    processor = DPTImageProcessor(do_resize=True, size={"height": 126, "width": 126}, keep_aspect_ratio=True,
                                  ensure_multiple_of=14, resample=3, do_rescale=True, rescale_factor=1 / 255,
                                  do_normalize=True, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
                                  do_pad=False)
    processor.save_pretrained(out_dir)
    return out_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    print(build_tiny_depth_model(args.out_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
