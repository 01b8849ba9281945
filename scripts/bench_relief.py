#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Seconds the Blender main thread spends placing Relief on a stack (grid meshes built with foreach_set).

    .venv-blender/bin/python scripts/bench_relief.py [--repeats 3]

Synthetic layers (a disc per layer) with a 16-bit depth map each; for 4 and 8 layers at 640² and 1024² it times:
building the flat stack (baseline), switching Relief on for every layer (first time: depth maps read), a re-layout
of the stack with relief on (depth spacing changed: every grid rebuilt), and Relief back to 0. Best of N repeats.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))


def synthetic_depths(paths):
    import numpy as np
    from PIL import Image

    for index, path in enumerate(paths):
        size_px = Image.open(path).size[0]
        y, x = np.mgrid[0:size_px, 0:size_px] / size_px
        nearness = 0.5 + 0.3 * np.sin(6 * x + index) * np.cos(4 * y)
        depth_path = Path(path).parent / f"depth_{index:02d}.png"
        Image.fromarray(np.rint(nearness * 65535).astype(np.uint16)).save(depth_path, compress_level=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="strata-bench-"))
    sys.path.insert(0, str(ROOT))
    import addon_utils
    import bpy
    from bench_blender_stack import synthetic_layers

    addon_utils.enable("blender_addon", default_set=True, handle_error=None)
    from blender_addon.scene import planes
    from blender_addon.scene.stack import stack_layers

    rows = []
    for count in (4, 8):
        for size_px in (640, 1024):
            folder = Path(tempfile.mkdtemp(prefix="strata-bench-relief-"))
            paths = []
            for index, path in enumerate(synthetic_layers(folder, count, size_px)):
                target = folder / f"layer_{index:02d}.png"
                os.replace(path, target)
                paths.append(str(target))
            synthetic_depths(paths)
            best = {}
            for _ in range(args.repeats):
                from blender_addon.scene import relief as scene_relief

                scene_relief._nearness_cache.clear()
                timings = {}
                start = time.perf_counter()
                root = planes.build_stack(bpy.context, paths, [f"L{i}" for i in range(count)], "bench", "",
                                          f"relief {count} {size_px}")
                timings["flat stack"] = time.perf_counter() - start
                layers = stack_layers(root)
                start = time.perf_counter()
                for obj in layers:
                    obj.strata.relief = 0.7
                timings["relief on"] = time.perf_counter() - start
                assert all(len(obj.data.vertices) > 4 for obj in layers)
                start = time.perf_counter()
                root.strata.depth_spacing_m = 0.8
                timings["relayout"] = time.perf_counter() - start
                start = time.perf_counter()
                for obj in layers:
                    obj.strata.relief = 0.0
                timings["relief off"] = time.perf_counter() - start
                planes.remove_stack(root)
                for name, seconds in timings.items():
                    best[name] = min(best.get(name, seconds), seconds)
            rows.append((count, size_px, best))
    print(f"{'layers':>6} {'size_px':>8} {'flat_stack_s':>13} {'relief_on_s':>12} {'relayout_s':>11} "
          f"{'relief_off_s':>13}")
    for count, size_px, best in rows:
        print(f"{count:>6} {size_px:>8} {best['flat stack']:>13.3f} {best['relief on']:>12.3f} "
              f"{best['relayout']:>11.3f} {best['relief off']:>13.3f}")
    addon_utils.disable("blender_addon", default_set=True)


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)
