#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""How long the Blender main thread is busy when a stack is built (the only part of a job that can freeze the UI).

    .venv-blender/bin/python scripts/bench_blender_stack.py

Builds stacks from synthetic layers (a disc per layer) with ``scene.planes.build_stack`` and prints a table:
layers × size × texture filtering → main-thread seconds. Linear filtering includes the transparent-texel dilation
and PNG rewrite; Closest (pixel-exact, the default) needs neither.
"""

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def synthetic_layer_arrays(count, size_px):
    """An opaque background and ``count - 1`` discs: size_px² straight-alpha RGBA uint8 arrays, back to front."""
    import numpy as np

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size_px, 0:size_px]
    layers = []
    for index in range(count):
        rgba = np.zeros((size_px, size_px, 4), np.uint8)
        rgba[..., :3] = rng.integers(0, 256, 3)
        (cx, cy), radius = rng.uniform(0.2, 0.8, 2) * size_px, size_px * rng.uniform(0.1, 0.3)
        rgba[..., 3] = np.where(index == 0, 255, ((x - cx) ** 2 + (y - cy) ** 2 < radius ** 2) * 255)
        layers.append(rgba)
    return layers


def synthetic_layers(folder, count, size_px):
    from PIL import Image

    paths = []
    for index, rgba in enumerate(synthetic_layer_arrays(count, size_px)):
        path = folder / f"layer_{count}_{size_px}_{index:02d}.png"
        Image.fromarray(rgba, "RGBA").save(path, compress_level=1)
        paths.append(str(path))
    return paths


def main():
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="strata-bench-"))
    sys.path.insert(0, str(ROOT))
    import addon_utils
    import bpy  # noqa: F401  (addon_utils exists only once bpy is imported)

    addon_utils.enable("blender_addon", default_set=True, handle_error=None)
    from blender_addon.scene import planes

    folder = Path(tempfile.mkdtemp(prefix="strata-bench-layers-"))
    rows = []
    for count in (4, 8):
        for size_px in (640, 1024):
            paths = synthetic_layers(folder, count, size_px)
            for interpolation in ('Closest', 'Linear'):
                start = time.perf_counter()
                root = planes.build_stack(bpy.context, paths, [f"L{i}" for i in range(count)], "bench", "",
                                          f"bench {count} {size_px} {interpolation}", interpolation=interpolation)
                elapsed_s = time.perf_counter() - start
                planes.remove_stack(root)
                rows.append((count, size_px, interpolation, elapsed_s))
    print(f"{'layers':>6} {'size_px':>8} {'filtering':>9} {'main_thread_s':>14}")
    for count, size_px, interpolation, elapsed_s in rows:
        print(f"{count:>6} {size_px:>8} {interpolation:>9} {elapsed_s:>14.3f}")
    addon_utils.disable("blender_addon", default_set=True)


if __name__ == "__main__":
    main()
