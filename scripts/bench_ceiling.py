# SPDX-License-Identifier: GPL-3.0-or-later
"""How far the CPU decomposer is from what the flat image allows: ceilings on a real layered set.

    .venv/bin/python scripts/bench_ceiling.py [--data /work/data/real_heldout] [--cpu-json F] [--json OUT]

For each case of a real set (``scripts/real_layered_set.py``) it scores, with the LayerD protocol of
``scripts/bench_decompose.py --set real``: the CPU decomposer (the truth's layer count; or the per-case scores of
an earlier ``bench_decompose.py --json`` run with ``--cpu-json``), the one-layer baseline, and the ceilings of
``benchmarks.ceilings``, stacks made from the truth that keep only what some decomposer could know: the visible
pixels of every layer, then the ground completed under them, then every layer completed within its bounding box,
then the truth's shown layers whole. When it decomposes the set itself (no ``--cpu-json``) it also scores the CPU
decomposer's own layers regrouped and ordered as the designer's, and only reordered
(``benchmarks.ceilings.regrouped_by_truth``): how much of the loss is the grouping and the order of its pieces; and
counts the truth layers that are the main part of no layer of ours, and our layers that are further pieces of one
truth layer (``benchmarks.ceilings.pieces``). Printed: each method's means (L1 e0, IoU e0, L1 e5, IoU e5) and how
many cases it scores below one layer on IoU e5 (issue #12 asks for none), side by side; then the cases where even
the box-completed ceiling is below one layer.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_decompose import run_method  # noqa: E402

from benchmarks.ceilings import CEILINGS, ceiling_stacks, pieces, regrouped_by_truth  # noqa: E402
from benchmarks.metrics import score_layers  # noqa: E402
from benchmarks.real_set import DEFAULT_REAL_DATA, load_real_case, real_case_names  # noqa: E402
from inference_server.backends.cpu import CpuDecomposer  # noqa: E402

SCORES = ("l1_e0", "iou_e0", "l1_e5", "iou_e5")
REGROUPED, REORDERED = "cpu regrouped", "cpu reordered"


def scores(predicted: list[np.ndarray], truth: list[np.ndarray]) -> dict[str, float]:
    levels = score_layers(predicted, truth)
    if levels is None:
        raise SystemExit("a real case needs a ground truth of two layers or more")
    return {"l1_e0": levels[0].rgb_l1, "iou_e0": levels[0].alpha_iou, "l1_e5": levels[-1].rgb_l1,
            "iou_e5": levels[-1].alpha_iou, "layers": len(predicted)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_REAL_DATA, help="a real set's folder")
    parser.add_argument("--cases", nargs="*", help="only these cases")
    parser.add_argument("--cpu-json", type=Path,
                        help="take the CPU decomposer's scores from this bench_decompose.py --json file")
    parser.add_argument("--json", type=Path, help="also write the per-case scores to this file")
    args = parser.parse_args(argv)

    names = real_case_names(args.data, args.cases)
    earlier = None
    if args.cpu_json:
        earlier = {case["case"]: case["cpu"] for case in json.loads(args.cpu_json.read_text())["cases"]}
        missing = sorted(set(names) - set(earlier))
        if missing:
            raise SystemExit(f"{args.cpu_json} has no scores for {', '.join(missing)}: run bench_decompose.py "
                             f"--set real --data {args.data} --json on this set first")
    decomposer = CpuDecomposer()
    methods = ("cpu",) + (() if earlier else (REGROUPED, REORDERED)) + ("one layer",) + CEILINGS
    rows = []
    for name in names:
        composite, truth, _ = load_real_case(args.data / name)
        row: dict = {"case": name, "gt_layers": len(truth)}
        if earlier:
            row["cpu"] = {key: earlier[name][key] for key in SCORES + ("layers",)}
        else:
            predicted, _ = run_method("cpu", decomposer, composite, len(truth))
            row["cpu"] = scores(predicted, truth)
            row[REGROUPED] = scores(regrouped_by_truth(predicted, truth), truth)
            row[REORDERED] = scores(regrouped_by_truth(predicted, truth, merge=False), truth)
            row["pieces"] = asdict(pieces(predicted, truth))
        row["one layer"] = scores([composite], truth)
        for ceiling, stack in ceiling_stacks(truth, composite).items():
            row[ceiling] = scores(stack, truth)
        rows.append(row)
        print(f"{name}: " + ", ".join(f"{m} IoU e5 {row[m]['iou_e5']:.3f}" for m in methods), file=sys.stderr,
              flush=True)

    print(f"\nCeilings on {args.data} ({len(rows)} cases; LayerD protocol, L1 ↓ IoU ↑, e0/e5: after 0/5 merge "
          f"edits; below: cases under the one-layer baseline on IoU e5; layers: mean count)")
    header = f"{'method':<20} {'L1 e0':>7} {'IoU e0':>7} {'L1 e5':>7} {'IoU e5':>7} {'below':>6} {'layers':>7}"
    print(header)
    print("-" * len(header))
    for method in methods:
        means = [float(np.mean([row[method][key] for row in rows])) for key in SCORES]
        below = sum(row[method]["iou_e5"] < row["one layer"]["iou_e5"] for row in rows)
        layers = float(np.mean([row[method]["layers"] for row in rows]))
        print(f"{method:<20} " + " ".join(f"{value:7.4f}" for value in means) + f" {below:6d} {layers:7.2f}")
    stuck = [f"{row['case']} ({row['visible + boxes']['iou_e5']:.3f} < {row['one layer']['iou_e5']:.3f})"
             for row in rows if row["visible + boxes"]["iou_e5"] < row["one layer"]["iou_e5"]]
    print(f"below one layer even with every layer's visible pixels known and completed within its box: "
          f"{len(stuck)} of {len(rows)}{': ' + ', '.join(stuck) if stuck else ''}")
    if not earlier and rows:
        count = {key: sum(row["pieces"][key] for row in rows) for key in rows[0]["pieces"]}
        unowned = count["truth_unowned"]
        print(f"truth layers that show: {count['truth_shown']}; the main part of no layer of ours: {unowned} "
              f"({unowned / max(count['truth_shown'], 1):.0%}, {unowned / len(rows):.2f} a case; mostly in our bottom "
              f"layer: {count['unowned_in_our_bottom']}); layers of ours that are a further piece of a truth layer "
              f"another of ours has: {count['extra_pieces']} ({count['extra_pieces'] / len(rows):.2f} a case)")
    if args.json:
        args.json.write_text(json.dumps({"data": str(args.data), "cases": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
