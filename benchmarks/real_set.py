# SPDX-License-Identifier: GPL-3.0-or-later
"""Reading a real layered set that ``scripts/real_layered_set.py`` built: ``index.json`` lists the cases, each a
folder with ``composite.png`` (the flat image), ``layer_NN.png`` (the ground truth, back→front) and ``case.json``.

    names = real_case_names(Path("/work/data/real_heldout"), None)
    composite, truth, info = load_real_case(Path("/work/data/real_heldout") / names[0])
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

DEFAULT_REAL_DATA = Path("/work/data/real")


def real_case_names(data: Path, cases: list[str] | None) -> list[str]:
    """The real set's case names in ``data`` (only ``cases`` when given), sorted; SystemExit when there is no set,
    when the set is still being built, or when a case asked for is not in it."""
    index_path = data / "index.json"
    if not index_path.exists():
        raise SystemExit(f"no real set at {data}: build it with scripts/real_layered_set.py")
    index = json.loads(index_path.read_text())
    if index.get("complete") is False:  # indexes written before the flag existed are whole sets
        raise SystemExit(f"the real set at {data} is still being built ({index_path} says incomplete, "
                         f"{len(index['cases'])} cases so far): wait for scripts/real_layered_set.py to finish, "
                         f"or resume a stopped build with --only-new")
    names = sorted(index["cases"])
    if not cases:
        return names
    unknown = sorted(set(cases) - set(names))
    if unknown:
        raise SystemExit(f"no case {', '.join(unknown)} in {index_path}")
    return [name for name in names if name in set(cases)]


def load_real_case(folder: Path) -> tuple[np.ndarray, list[np.ndarray], dict]:
    """(composite, ground-truth layers back→front, case.json) of one case folder of the real set."""
    with Image.open(folder / "composite.png") as image:
        composite = np.asarray(image.convert("RGBA"), dtype=np.uint8).copy()
    layers = []
    for path in sorted(folder.glob("layer_*.png")):
        with Image.open(path) as image:
            layers.append(np.asarray(image.convert("RGBA"), dtype=np.uint8).copy())
    info = json.loads((folder / "case.json").read_text())
    if len(layers) != info["layers"]:
        raise ValueError(f"{folder}: case.json says {info['layers']} layers, found {len(layers)} layer files")
    return composite, layers, info
