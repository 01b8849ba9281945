# SPDX-License-Identifier: GPL-3.0-or-later
"""Two versions of the CPU decomposer on the same real-set cases, taking turns: same layers? how fast?

    .venv/bin/python scripts/compare_decompose.py --other /tmp/main-checkout --data /work/data/real_heldout \\
        --cases arnav_resume news21_pathogen --repeats 3
    .venv/bin/python scripts/compare_decompose.py --other /tmp/main-checkout --data /work/data/real   # every case

``--other`` is another checkout of the repository (``git worktree add`` or ``git archive REV | tar -x``). Each
repeat decomposes the cases with the other version, then with this one, each in a fresh process (the text detector
loaded and warmed up first, not timed), so that both see the same load on a shared machine. It prints per case the
median wall and CPU seconds (CPU: all threads of the process, steadier than wall under load) of each version, and
whether the two gave the same layers, byte for byte with their names; then the means and the load average.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

THIS_CHECKOUT = Path(__file__).resolve().parents[1]


def worker(data: Path, cases: list[str]) -> None:
    """Decompose each case with the decomposer importable here; one JSON line per case."""
    from PIL import Image

    from inference_server.backends.cpu import CpuDecomposer
    from inference_server.params import DecomposeParams

    decomposer = CpuDecomposer()
    decomposer.decompose(Image.new("RGB", (64, 64)), DecomposeParams(layers=2))  # loads the text detector
    for case in cases:
        folder = data / case
        with Image.open(folder / "composite.png") as image:
            composite = image.convert("RGBA")
        layers = json.loads((folder / "case.json").read_text())["layers"]
        start, start_cpu = time.perf_counter(), time.process_time()
        stack = decomposer.decompose(composite, DecomposeParams(layers=layers, backend="cpu"))
        wall_s, cpu_s = time.perf_counter() - start, time.process_time() - start_cpu
        digest = hashlib.sha1()
        for layer in stack.layers:
            digest.update(layer.rgba.tobytes())
            digest.update(layer.name.encode())
        print(json.dumps({"case": case, "wall_s": wall_s, "cpu_s": cpu_s, "digest": digest.hexdigest()}), flush=True)


def run_version(checkout: Path, data: Path, cases: list[str]) -> dict[str, dict]:
    env = dict(os.environ, PYTHONPATH=str(checkout))
    result = subprocess.run([sys.executable, __file__, "--worker", "--data", str(data), "--cases", *cases],
                            cwd=checkout, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{checkout}: the decomposer failed:\n{result.stderr[-3000:]}")
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {row["case"]: row for row in rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", type=Path, help="the other checkout (the baseline)")
    parser.add_argument("--data", type=Path, help="a real set's folder (default: bench_decompose's)")
    parser.add_argument("--cases", nargs="*", help="only these cases (default: all of the set)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.data, args.cases)
        return 0
    # Imported here, not at the top: the worker must import the decomposer of the checkout it runs in, not this one.
    sys.path.insert(0, str(THIS_CHECKOUT))
    from benchmarks.real_set import DEFAULT_REAL_DATA, real_case_names

    args.data = args.data or DEFAULT_REAL_DATA
    cases = real_case_names(args.data, args.cases)
    if args.other is None:
        parser.error("--other is required")
    versions = {"other": args.other.resolve(), "this": THIS_CHECKOUT}
    runs: dict[str, list[dict[str, dict]]] = {name: [] for name in versions}
    loads = []
    for _ in range(args.repeats):
        for name, checkout in versions.items():
            runs[name].append(run_version(checkout, args.data, cases))
        loads.append(os.getloadavg()[0])

    def median(name: str, case: str, key: str) -> float:
        return statistics.median(run[case][key] for run in runs[name])

    print(f"{args.data}: {len(cases)} cases, {args.repeats} repeat(s); other = {versions['other']}, "
          f"this = {versions['this']}; median seconds, wall / CPU")
    header = f"{'case':<28} {'other wall':>10} {'CPU':>6} | {'this wall':>9} {'CPU':>6} | same layers"
    print(header)
    print("-" * len(header))
    same_count = 0
    for case in cases:
        same = all(run[case]["digest"] == runs["other"][0][case]["digest"] for name in versions for run in runs[name])
        same_count += same
        print(f"{case:<28} {median('other', case, 'wall_s'):10.2f} {median('other', case, 'cpu_s'):6.2f} | "
              f"{median('this', case, 'wall_s'):9.2f} {median('this', case, 'cpu_s'):6.2f} | {'yes' if same else 'NO'}")
    print("-" * len(header))
    means = {name: [statistics.mean(median(name, case, key) for case in cases) for key in ("wall_s", "cpu_s")]
             for name in versions}
    print(f"{'mean':<28} {means['other'][0]:10.2f} {means['other'][1]:6.2f} | {means['this'][0]:9.2f} "
          f"{means['this'][1]:6.2f} | {same_count} of {len(cases)} the same")
    for name in versions:
        over = sum(median(name, case, "cpu_s") > 2.0 for case in cases)
        print(f"{name}: {over} case(s) over 2 CPU-seconds")
    print(f"load average (1 min) after each repeat: {', '.join(f'{load:.1f}' for load in loads)} "
          f"on {os.cpu_count()} cores")
    return 0 if same_count == len(cases) else 1


if __name__ == "__main__":
    raise SystemExit(main())
