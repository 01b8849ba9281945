# SPDX-License-Identifier: GPL-3.0-or-later
"""Score the fixed test layer sets with LayerD's own evaluation code and write the reference fixture.

    .venv/bin/python scripts/layerd_reference_scores.py --layerd-src /path/to/LayerD/src

``--layerd-src`` is the ``src`` folder of a checkout of github.com/CyberAgentAILab/LayerD (Apache-2.0); its
evaluation package is plain numpy/Pillow (and scikit-image), so it runs in our server env. Only
``layerd.evaluation`` and the grouping function in ``layerd.data.crello`` are used: the package's model,
renderer and inpainting imports are replaced by empty stand-ins, so torch models, skia and fonts are not needed.
No LayerD code is copied into this repository; the fixture holds only its scores. tests/test_metrics.py asserts
that benchmarks.metrics gives the same scores.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import types
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from layerd_reference import CASE_SEEDS, REFERENCE_SCORES, make_case  # noqa: E402


def load_layerd_evaluation(src: Path):
    """Import LayerD's evaluation package from ``src`` without its heavy model and renderer modules."""
    def package(name: str, path: Path) -> None:
        module = types.ModuleType(name)
        module.__path__ = [str(path)]
        sys.modules[name] = module

    package("layerd", src / "layerd")
    package("layerd.data", src / "layerd" / "data")
    package("layerd.models", src / "layerd" / "models")
    stand_ins = {
        "layerd.data.renderer": {"CrelloV5RendererLayers": object},
        "layerd.models.helpers": {"expand_mask": None, "shrink_mask": None},
        "layerd.models.inpaint": {"BaseInpaint": object},
    }
    for name, attributes in stand_ins.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        sys.modules[name] = module
    return importlib.import_module("layerd.evaluation")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layerd-src", type=Path, required=True, help="the src folder of a LayerD checkout")
    parser.add_argument("--layerd-commit", default="", help="the checkout's commit, recorded in the fixture")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / REFERENCE_SCORES)
    args = parser.parse_args(argv)
    evaluation = load_layerd_evaluation(args.layerd_src)
    evaluator = evaluation.LayersEditDist(max_edits=5)
    cases = {}
    for seed in CASE_SEEDS:
        pred, gt = make_case(seed)
        result = evaluator([Image.fromarray(p, "RGBA") for p in pred], [Image.fromarray(g, "RGBA") for g in gt])
        cases[str(seed)] = [{key: float(value) for key, value in level.items()} for level in result]
    commit = args.layerd_commit
    if not commit:
        probe = subprocess.run(["git", "-C", str(args.layerd_src), "rev-parse", "HEAD"], capture_output=True, text=True,
                               check=False)
        commit = probe.stdout.strip()
    fixture = {
        "about": "LayerD's LayersEditDist(max_edits=5) on tests/layerd_reference.make_case(seed), per seed: the "
                 "score dicts LayerD returns per edit level (a sample that stops early has fewer levels). Made by "
                 "scripts/layerd_reference_scores.py.",
        "layerd": {"repository": "github.com/CyberAgentAILab/LayerD", "commit": commit, "licence": "Apache-2.0"},
        "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
