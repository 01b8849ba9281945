# SPDX-License-Identifier: GPL-3.0-or-later
"""Where the CPU decomposer's loss on the real set goes: LayerD's RGB L1 and 1 − IoU split by pixel class.

    .venv/bin/python scripts/explain_decompose.py --data /work/data/real_heldout [--cases a b] [--auto] [--json F]

Each case is decomposed as ``scripts/bench_decompose.py --set real`` does (the truth's layer count, or ``--auto``)
and scored at edit levels 0 and 5 (``--levels``); benchmarks.loss_split sorts every matched pair's pixels into
classes (hidden ground under what we lifted off, a lower layer's completion, anti-aliased or translucent pixels,
missed or extra alpha, ...). Printed per level: each class's mean contribution (the classes add up to the mean L1
and to 1 − the mean IoU), its share, and the cases it costs most; the hidden ground by the kind of ground the truth
has there (flat, gradient, photo, covered); the missed visible alpha by where it went (a box of the colour it
lies on, a page over a hidden ground, our background, another of our layers); and the extra visible alpha by whose
pixels ours holds there (ground the designer never lifted, an edge, another layer, a pair apart); and the cases by
whether our stack of layers is deeper than the truth's, as deep or shallower. It tells which kind of fix has room
before one is tried.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_decompose import run_method  # noqa: E402

from benchmarks.loss_split import (  # noqa: E402
    EXTRA_CLASSES,
    GROUND_KINDS,
    IOU_CLASSES,
    L1_CLASSES,
    MISSING_CLASSES,
    covered_above,
    ground_kind,
    split_extra,
    split_loss,
    split_missing_visible,
)
from benchmarks.metrics import edit_states  # noqa: E402
from benchmarks.real_set import DEFAULT_REAL_DATA, load_real_case, real_case_names  # noqa: E402
from inference_server.backends.cpu import CpuDecomposer  # noqa: E402
from inference_server.params import AUTO_LAYERS  # noqa: E402

TOP_CASES = 4


def explain_case(decomposer: CpuDecomposer, folder: Path, auto: bool, levels: list[int]) -> dict:
    """One case's scores and loss classes at each level, and the kind of its truth's ground."""
    composite, truth, _ = load_real_case(folder)
    predicted, _ = run_method("cpu", decomposer, composite, AUTO_LAYERS if auto else len(truth))
    states = edit_states(predicted, truth, max(levels))
    record = {"case": folder.name, "layers": len(predicted), "gt_layers": len(truth),
              "groups": len(states[0].pred), "gt_groups": len(states[0].gt),
              "ground": ground_kind(states[0].gt[0], covered_above(states[0].gt)[0]), "levels": {}}
    for level in levels:
        state = states[level]
        went = {f"missing, visible: {name}": value for name, value in split_missing_visible(state).items()}
        held = {f"extra, visible: {name}": value for name, value in split_extra(state).items()}
        record["levels"][str(level)] = {"l1": state.rgb_l1, "iou": state.alpha_iou} | split_loss(state) | went | held
    return record


def print_classes(records: list[dict], level: str, names: tuple[str, ...], total: float, prefix: str = "",
                  indent: str = "  ") -> None:
    """One line per class (its record key: ``prefix + name``): its mean over the cases, its share of ``total``
    and the cases it costs most."""
    for name in names:
        values = sorted(((r["levels"][level][prefix + name], r["case"]) for r in records), reverse=True)
        mean = sum(value for value, _ in values) / len(records)
        top = ", ".join(f"{case} {value:.3f}" for value, case in values[:TOP_CASES] if value > 0)
        share = mean / total if total > 0 else 0.0
        print(f"{indent}{name:<{30 - len(indent)}} {mean:7.4f} {share:6.1%}  {top}")


def print_level(records: list[dict], level: str) -> None:
    count = len(records)
    l1 = float(np.mean([r["levels"][level]["l1"] for r in records]))
    iou = float(np.mean([r["levels"][level]["iou"] for r in records]))
    print(f"\nedit level {level}: RGB L1 {l1:.4f}, IoU {iou:.4f} (1 − IoU {1 - iou:.4f}), {count} cases")
    for title, classes, total in (("RGB L1", L1_CLASSES, l1), ("1 − IoU", IOU_CLASSES, 1 - iou)):
        print(f"  {title + ' by class':<28} {'mean':>7} {'share':>6}  costs most")
        print_classes(records, level, classes, total)
    for name, parts, title in (("missing, visible", MISSING_CLASSES, "went"),
                               ("extra, visible", EXTRA_CLASSES, "whose")):
        total = float(np.mean([r["levels"][level][name] for r in records]))
        print(f"  {name + ': ' + title:<28} {'mean':>7} {'share':>6}  costs most")
        print_classes(records, level, parts, total, prefix=f"{name}: ", indent="    ")
    print(f"  {'hidden ground by its kind':<28} {'mean':>7} {'cases':>6}")
    for kind in GROUND_KINDS:
        of_kind = [r for r in records if r["ground"] == kind]
        mean = sum(r["levels"][level]["hidden ground"] for r in of_kind) / count
        print(f"  {kind:<28} {mean:7.4f} {len(of_kind):6d}")


def print_depths(records: list[dict], levels: list[str]) -> None:
    """The cases by how deep our stack is against the truth's (LayerD's groups at edit level 0: layers whose
    alpha overlaps no later layer's count as one, so the groups are how many layers lie on one another) and
    their mean IoU at each level: a stack deeper than the design's cuts a thing from what is set on it."""
    print(f"\nstack depth (LayerD's groups, ours against the truth's)  {'cases':>5}  "
          + "  ".join(f"IoU e{level}" for level in levels))
    for name, sign in (("deeper", 1), ("as deep", 0), ("shallower", -1)):
        of_kind = [r for r in records if np.sign(r["groups"] - r["gt_groups"]) == sign]
        ious = "  ".join(f"{np.mean([r['levels'][level]['iou'] for r in of_kind]) if of_kind else 0.0:7.3f}"
                         for level in levels)
        print(f"  {name:<53} {len(of_kind):5d}  {ious}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_REAL_DATA,
                        help="folder of the real set (scripts/real_layered_set.py)")
    parser.add_argument("--cases", nargs="*", help="only these cases")
    parser.add_argument("--auto", action="store_true", help="decompose with layers auto instead of the truth's count")
    parser.add_argument("--levels", type=int, nargs="+", default=[0, 5], help="edit levels to split (0–5)")
    parser.add_argument("--json", type=Path, help="also write the per-case classes to this file")
    args = parser.parse_args(argv)
    if not all(0 <= level <= 5 for level in args.levels):
        raise SystemExit(f"--levels must lie in 0–5, got {args.levels}")
    names = real_case_names(args.data, args.cases)
    decomposer = CpuDecomposer()
    records = []
    for name in names:
        records.append(explain_case(decomposer, args.data / name, args.auto, args.levels))
        print(f"{name}: " + ", ".join(f"e{k} L1 {v['l1']:.3f} IoU {v['iou']:.3f}"
                                      for k, v in records[-1]["levels"].items()), file=sys.stderr, flush=True)
    count = "layers auto" if args.auto else "the truth's layer count"
    print(f"Loss by pixel class on {args.data} ({len(records)} cases, {count}; LayerD protocol)")
    for level in args.levels:
        if records:
            print_level(records, str(level))
    if records:
        print_depths(records, [str(level) for level in args.levels])
    if args.json:
        args.json.write_text(json.dumps({"data": str(args.data), "cases": records}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
