# SPDX-License-Identifier: GPL-3.0-or-later
"""Export speed and file size: PPTX, PSD and zip of a decomposition folder, for a few sizes and layer counts.

    .venv/bin/python scripts/bench_exports.py [--sizes 640 1024] [--layers 4 8 16] [--repeats 3]

Prints one table row per case (best of ``--repeats``). Layers are the flat poster's, repeated to reach the count.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks.samples import make_flat_poster  # noqa: E402
from inference_server.exports.archive import archive_bytes  # noqa: E402
from inference_server.exports.export_layout import load_job_layout  # noqa: E402
from inference_server.exports.pptx import pptx_bytes  # noqa: E402
from inference_server.exports.psd import psd_bytes  # noqa: E402
from inference_server.layers import Layer, LayerStack  # noqa: E402


def tinted(rgba: np.ndarray, red_shift: int) -> np.ndarray:
    out = rgba.copy()
    out[..., 0] = (out[..., 0].astype(np.int32) + red_shift) % 256
    return out


def best_of(repeats: int, function, *args):
    best_s, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*args)
        best_s = min(best_s, time.perf_counter() - start)
    return best_s, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[640, 1024], help="square frame sides in px")
    parser.add_argument("--layers", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    print(f"{'size':>9} {'layers':>6} | {'load s':>7} {'pptx s':>7} {'pptx MB':>8} | {'psd s':>7} {'psd MB':>7} | "
          f"{'psd scaled s':>12} | {'zip s':>6} {'zip MB':>7}")
    for size_px in args.sizes:
        _, poster = make_flat_poster(size_px, size_px, seed=0)
        for count in args.layers:
            # Red shifted per copy so repeated layers are distinct images (python-pptx stores identical ones once).
            stack = LayerStack([Layer(tinted(poster[i % len(poster)], 7 * i)) for i in range(count)])
            with tempfile.TemporaryDirectory() as folder:
                stack.save(folder)
                load_s, layout = best_of(args.repeats, load_job_layout, folder)
                pptx_s, pptx = best_of(args.repeats, pptx_bytes, layout)
                psd_s, psd = best_of(args.repeats, psd_bytes, layout)
                # Every layer moved by a fraction and scaled 1.3×: the resampling path.
                scaled = replace(layout, layers=[replace(layer, x_px=layer.x_px + 0.4, width_px=layer.width_px * 1.3,
                                                         height_px=layer.height_px * 1.3) for layer in layout.layers])
                scaled_s, _ = best_of(args.repeats, psd_bytes, scaled)
                zip_s, archive = best_of(args.repeats, archive_bytes, folder)
            print(f"{size_px:>4}×{size_px:<4} {count:>6} | {load_s:>7.3f} {pptx_s:>7.3f} {len(pptx) / 1e6:>8.2f} | "
                  f"{psd_s:>7.3f} {len(psd) / 1e6:>7.2f} | {scaled_s:>12.3f} | "
                  f"{zip_s:>6.3f} {len(archive) / 1e6:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
