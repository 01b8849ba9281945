# SPDX-License-Identifier: GPL-3.0-or-later
"""Build the "real" benchmark set: layered files that people made and committed to public repositories.

    .venv/bin/python scripts/real_layered_set.py                      # every case in the manifest
    .venv/bin/python scripts/real_layered_set.py --cases ab_poster    # some cases
    .venv/bin/python scripts/real_layered_set.py --list-mirror /work/.mirror/owner+name/repo   # candidate files
    .venv/bin/python scripts/real_layered_set.py --held-out           # the held-out set (below)
    .venv/bin/python scripts/real_layered_set.py --fresh              # the fresh set (below)
    .venv/bin/python scripts/real_layered_set.py --fourth             # the fourth set (below)

The manifest (``scripts/real_layered_set.json``) names, per case, the repository, the path and the commit of the
file and the licence as found in the repository. The files themselves are not committed: this script reads them
from local snapshots of those repositories (``--mirror``, one bare git directory per repository at
``<mirror>/<owner>+<name>/repo``) and writes one folder per case to ``--out`` (default /work/data/real):

    <case>/composite.png     the flattened image (RGBA), exactly the "over" composite of the layers below
    <case>/layer_00.png …    ground-truth layers, back to front, straight-alpha RGBA at the composite's size
    <case>/case.json         source, licence, sizes, layer names, the check against the file's own composite
    index.json               the cases built and the files skipped, with the reason; "complete": false while building

How a PSD becomes ground-truth layers:
1. Units: the visible top-level layers and groups (a single top-level group is opened up; clipping layers stay
   with their base). A unit is rendered by psd-tools with only its own layers switched on, so the layer's own
   opacity, masks, effects and group contents count.
2. Segments: each unit must stack with plain "over" onto what is below it: over(render of units below, unit)
   has to equal the render of all units so far. A unit that does not (blend modes other than normal, a
   pass-through group that darkens what is below, ...) is merged with the segment below it, as far down as
   needed.
3. Counts: empty segments go; segments covering less than --min-area of the canvas join the one below;
   then the smallest segment joins a neighbour until at most --max-layers are left. Fewer than 2, or no two
   layers overlapping (LayerD's grouping would leave one layer, which the input itself matches): skipped.
4. Check: the over-composite of the segments is compared with the composite the file itself stores (what
   Photoshop showed). A file whose layers do not reproduce it (MAE > --max-mae on 0–255, or more than
   --max-bad-fraction of pixels off by more than 24 levels) is skipped with the numbers as the reason.
5. Downscale to at most --max-side px on the long side (area filter on premultiplied colour).

The held-out set (``--held-out``, default out /work/data/real_heldout): the manifest's files marked
``"set": "heldout"`` (never part of the main set), and the files the check of step 4 skipped only narrowly (MAE
≤ 3/255 and ≤ 6 % of pixels off: an effect psd-tools renders a little differently), all built with those looser
limits. Their layers are still the designer's layers, and the input is their own composite, so they score as the
main set does; they are kept apart so that the decomposer is never tuned on them: they tell how a change does on
files it has not seen (``scripts/bench_decompose.py --set real --data /work/data/real_heldout``).

The fresh set (``--fresh``, default out /work/data/real_fresh): the manifest's files marked ``"set": "fresh"``,
from repositories that neither the main nor the held-out set uses, built with the main set's strict limits. Once
the decomposer has been tuned on the held-out set too, this is the set nobody tunes on: changes are judged on it
at merge time (``scripts/bench_decompose.py --set real --data /work/data/real_fresh``).

The fourth set (``--fourth``, default out /work/data/real_fourth): the manifest's files marked ``"set": "fourth"``,
from repositories that none of the main, held-out and fresh sets uses, built like the fresh set with the main
set's strict limits. The other three sets have all been looked at (scores read, changes weighed on them), so this
is now the set nobody tunes on: nobody reads its per-case scores while working on the decomposer; it judges a
decomposer change once, at merge time (``scripts/bench_decompose.py --set real --data /work/data/real_fourth``).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.metrics import group_indices  # noqa: E402
from inference_server.layers import composite_over, layer_file_name  # noqa: E402

logger = logging.getLogger("real_layered_set")

MANIFEST = Path(__file__).with_name("real_layered_set.json")
DEFAULT_MIRROR = Path("/work/.mirror")
DEFAULT_OUT = Path("/work/data/real")
HELD_OUT = Path("/work/data/real_heldout")
FRESH = Path("/work/data/real_fresh")
FOURTH = Path("/work/data/real_fourth")
HELD_OUT_MAX_MAE = 3.0
HELD_OUT_MAX_BAD_FRACTION = 0.06
NARROW_SKIP = "layers do not reproduce the file's composite"
LAYERED_SUFFIXES = (".psd", ".psb", ".ora")
GIT_LFS_PREFIX = b"version https://git-lfs"
RETRY_REASON = "unexpected error: ImportError"


class SkipCase(Exception):
    """The file cannot become a faithful case; the message says why."""


# ---------------------------------------------------------------------------------------------------------------
# Reading the file out of a repository snapshot


def mirror_git_dir(mirror: Path, repository: str) -> Path:
    """The snapshot's git directory: ``repo`` itself (bare) or ``repo/.git`` (with a work tree)."""
    base = mirror / repository.replace("/", "+") / "repo"
    return base / ".git" if (base / ".git").is_dir() else base


def read_blob(mirror: Path, repository: str, commit: str, path: str) -> bytes:
    git_dir = mirror_git_dir(mirror, repository)
    if not git_dir.is_dir():
        raise SkipCase(f"no snapshot of {repository} at {git_dir} (fetch github:{repository} first)")
    result = subprocess.run(["git", f"--git-dir={git_dir}", "show", f"{commit}:{path}"], capture_output=True,
                            check=False)
    if result.returncode != 0:
        raise SkipCase(f"git show {commit[:10]}:{path} failed: {result.stderr.decode(errors='replace').strip()}")
    data = result.stdout
    if data.startswith(GIT_LFS_PREFIX):
        raise SkipCase("the file is a Git LFS pointer, its content is not in the snapshot")
    if not data:
        raise SkipCase("the file is empty in the snapshot (too large to be stored)")
    return data


def list_mirror(git_dir: Path) -> list[tuple[str, int]]:
    """(path, size in bytes) of the layered files in a snapshot's newest commit."""
    listing = subprocess.run(["git", f"--git-dir={git_dir}", "ls-tree", "-r", "-l", "HEAD"], capture_output=True,
                             text=True, check=True).stdout
    found = []
    for line in listing.splitlines():
        meta, path = line.split("\t", 1)
        size = meta.split()[3]
        if path.lower().endswith(LAYERED_SUFFIXES):
            found.append((path, int(size) if size.isdigit() else -1))
    return found


# ---------------------------------------------------------------------------------------------------------------
# Premultiplied float layers (H×W×4, colour premultiplied, all in [0, 1])


def premultiplied(rgba_u8: np.ndarray) -> np.ndarray:
    value = rgba_u8.astype(np.float64) / 255.0
    value[..., :3] *= value[..., 3:4]
    return value


def over(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    return upper + lower * (1.0 - upper[..., 3:4])


def over_all(layers: list[np.ndarray]) -> np.ndarray:
    result = np.zeros_like(layers[0])
    for layer in layers:
        result = over(result, layer)
    return result


def to_straight_u8(premul: np.ndarray) -> np.ndarray:
    alpha = premul[..., 3:4]
    colour = np.where(alpha > 0, premul[..., :3] / np.where(alpha > 0, alpha, 1.0), 0.0)
    return np.clip(np.rint(np.concatenate([colour, alpha], axis=2) * 255.0), 0, 255).astype(np.uint8)


def difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(MAE on 0–255 over premultiplied RGB and alpha, fraction of pixels off by more than 24 levels)."""
    diff = np.abs(a - b) * 255.0
    return float(diff.mean()), float((diff.max(axis=2) > 24).mean())


# ---------------------------------------------------------------------------------------------------------------
# PSD → segments


@dataclass
class Segment:
    names: list[str]
    premul: np.ndarray

    @property
    def area(self) -> float:
        return float(self.premul[..., 3].mean())


def _top_units(psd) -> tuple[list[list], list[str]]:
    """Units (lists of layers rendered together) back to front, and notes on how they were chosen."""
    notes = []
    container = psd
    while True:
        visible = [layer for layer in container if layer.is_visible()]
        if len(visible) == 1 and visible[0].is_group():
            notes.append(f"opened the only visible group {visible[0].name!r}")
            container = visible[0]
            continue
        break
    units: list[list] = []
    for layer in visible:
        if getattr(layer, "clipping", False) and units:
            units[-1].append(layer)  # a clipping layer belongs to its base
        else:
            units.append([layer])
    return units, notes


def _render(psd, chosen: list) -> np.ndarray:
    """psd-tools render of the canvas with only ``chosen`` layers (with their contents and ancestors) on."""
    chosen_ids = {id(layer) for layer in chosen}
    ancestor_ids = set()
    for layer in chosen:
        parent = layer.parent
        while parent is not None and parent is not psd:
            ancestor_ids.add(id(parent))
            parent = parent.parent

    def wanted(layer) -> bool:
        if not layer.is_visible():
            return False
        if id(layer) in ancestor_ids:
            return True
        node = layer
        while node is not None and node is not psd:
            if id(node) in chosen_ids:
                return True
            node = node.parent
        return False

    image = psd.composite(viewport=psd.viewbox, force=True, color=0.0, alpha=0.0, layer_filter=wanted,
                          ignore_preview=True)
    if image is None:
        return np.zeros((psd.height, psd.width, 4))
    return premultiplied(np.asarray(image.convert("RGBA"), dtype=np.uint8))


def _plain(unit: list) -> bool:
    """True when every layer of the unit blends with "normal" (groups: pass-through or normal), so that its
    render over transparency stacks with plain "over"."""
    from psd_tools.constants import BlendMode

    plain_modes = {BlendMode.NORMAL, BlendMode.PASS_THROUGH}
    for top in unit:
        layers = [top] + (list(top.descendants()) if top.is_group() else [])
        if any(layer.is_visible() and layer.blend_mode not in plain_modes for layer in layers):
            return False
    return True


def psd_segments(psd, stack_tolerance_mae: float) -> tuple[list[Segment], list[str]]:
    units, notes = _top_units(psd)
    if len(units) < 2:
        raise SkipCase(f"{len(units)} visible top-level layer(s)")
    segments: list[tuple[int, int]] = []  # unit index ranges [start, end)
    rendered: list[np.ndarray] = []
    for index in range(len(units)):
        segment = _render(psd, units[index])
        start = index
        if not _plain(units[index]) and segments:
            # Blend modes: check that the unit stacks with "over"; if not, take segments below into it.
            everything = _render(psd, [layer for unit in units[:index + 1] for layer in unit])
            while segments:
                below = over_all(rendered) if rendered else np.zeros_like(everything)
                mae, bad = difference(over(below, segment), everything)
                if mae <= stack_tolerance_mae and bad <= 0.002:
                    break
                start, _ = segments.pop()
                rendered.pop()
                segment = _render(psd, [layer for unit in units[start:index + 1] for layer in unit])
            if start < index:
                notes.append(f"merged {[units[k][0].name for k in range(start, index + 1)]} "
                             "(blend modes: not a plain 'over' stack)")
        segments.append((start, index + 1))
        rendered.append(segment)
    result = []
    for (start, end), premul in zip(segments, rendered, strict=False):
        names = [layer.name for unit in units[start:end] for layer in unit]
        result.append(Segment(names, premul))
    return result, notes


def file_composite(psd) -> np.ndarray | None:
    """The composite image the file stores, premultiplied, or None when it stores none."""
    try:
        image = psd.topil()
    except Exception as error:  # psd-tools raises a variety of errors on odd image data
        logger.info("no stored composite: %s", error)
        return None
    if image is None:
        return None
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA")
    return premultiplied(np.asarray(image.convert("RGBA"), dtype=np.uint8))


# ---------------------------------------------------------------------------------------------------------------
# ORA (OpenRaster: a zip with stack.xml, PNG layers and mergedimage.png)


def ora_segments(data: bytes) -> tuple[list[Segment], np.ndarray | None, list[str]]:
    import zipfile
    from xml.etree import ElementTree

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        stack = ElementTree.fromstring(archive.read("stack.xml"))
        width, height = int(stack.get("w")), int(stack.get("h"))
        top = stack.find("stack")
        segments = []
        notes = []
        for element in list(top)[::-1]:  # stack.xml lists front first
            if element.tag != "layer":
                raise SkipCase("nested stacks in the ORA file are not supported")
            if element.get("visibility", "visible") != "visible":
                continue
            if element.get("composite-op", "svg:src-over") != "svg:src-over":
                raise SkipCase(f"layer {element.get('name')!r} uses {element.get('composite-op')}")
            with Image.open(io.BytesIO(archive.read(element.get("src")))) as png:
                layer = np.zeros((height, width, 4), np.uint8)
                canvas = Image.fromarray(layer, "RGBA")
                canvas.paste(png.convert("RGBA"), (int(element.get("x", 0)), int(element.get("y", 0))))
            premul = premultiplied(np.asarray(canvas, dtype=np.uint8))
            premul *= float(element.get("opacity", 1.0))
            segments.append(Segment([element.get("name", "")], premul))
        stored = None
        if "mergedimage.png" in archive.namelist():
            with Image.open(io.BytesIO(archive.read("mergedimage.png"))) as merged:
                stored = premultiplied(np.asarray(merged.convert("RGBA"), dtype=np.uint8))
    return segments, stored, notes


# ---------------------------------------------------------------------------------------------------------------
# Counts, size, output


def merge_into_lower(segments: list[Segment], index: int) -> None:
    """Merge segment ``index`` with its lower neighbour (the upper one for the bottom segment)."""
    lower = index - 1 if index > 0 else 0
    upper = lower + 1
    merged = Segment(segments[lower].names + segments[upper].names,
                     over(segments[lower].premul, segments[upper].premul))
    segments[lower:upper + 1] = [merged]


def limit_counts(segments: list[Segment], min_area: float, max_layers: int) -> list[str]:
    notes = []
    empty = [s for s in segments if s.area == 0]
    if empty:
        notes.append(f"dropped {len(empty)} empty layer(s)")
        segments[:] = [s for s in segments if s.area > 0]
    while len(segments) > 2:
        small = [i for i, s in enumerate(segments) if s.area < min_area]
        if not small:
            break
        notes.append(f"merged small {segments[small[0]].names} down")
        merge_into_lower(segments, small[0])
    while len(segments) > max_layers:
        index = int(np.argmin([s.area for s in segments]))
        notes.append(f"over the cap: merged {segments[index].names} down")
        merge_into_lower(segments, index)
    return notes


def downscale(premul: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (premul.shape[1], premul.shape[0]) == size:
        return premul
    channels = [np.asarray(Image.fromarray(premul[..., c].astype(np.float32), "F").resize(size, Image.Resampling.BOX))
                for c in range(4)]
    return np.clip(np.stack(channels, axis=2).astype(np.float64), 0.0, 1.0)


def write_png_atomic(path: Path, rgba: np.ndarray) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".png", delete=False) as handle:
        Image.fromarray(rgba, "RGBA").save(handle, format="PNG")
    os.replace(handle.name, path)


def write_json_atomic(path: Path, value) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".json", delete=False) as handle:
        json.dump(value, handle, indent=2, ensure_ascii=False)
    os.replace(handle.name, path)


def build_case(entry: dict, args) -> dict:
    data = read_blob(args.mirror, entry["repository"], entry["commit"], entry["path"])
    suffix = Path(entry["path"]).suffix.lower()
    if suffix in (".psd", ".psb"):
        from psd_tools import PSDImage

        try:
            psd = PSDImage.open(io.BytesIO(data))
        except Exception as error:
            raise SkipCase(f"psd-tools cannot read it: {type(error).__name__}: {error}") from error
        if psd.color_mode.name not in ("RGB", "GRAYSCALE", "CMYK"):
            raise SkipCase(f"colour mode {psd.color_mode.name} (only RGB, greyscale and CMYK files are used)")
        if psd.width * psd.height > args.max_canvas_px:
            raise SkipCase(f"canvas {psd.width}×{psd.height} is over {args.max_canvas_px} px")
        stored = file_composite(psd)
        segments, notes = psd_segments(psd, args.stack_tolerance)
        if psd.color_mode.name == "CMYK":
            # Layers and the stored composite go through the same plain CMYK → RGB conversion (Pillow's).
            notes.append("CMYK file: converted to RGB with Pillow's plain conversion")
    elif suffix == ".ora":
        segments, stored, notes = ora_segments(data)
    else:
        raise SkipCase(f"unsupported file type {suffix}")
    if len(segments) < 2:
        raise SkipCase("fewer than 2 layers")
    flat = over_all([s.premul for s in segments])
    if stored is None:
        raise SkipCase("the file stores no composite to check the layers against")
    if stored.shape != flat.shape:
        raise SkipCase(f"stored composite {stored.shape[1]}×{stored.shape[0]} differs from the canvas")
    if float(stored[..., 3].max()) == 0.0 or np.ptp(stored[..., :3]) == 0 and np.ptp(flat[..., :3]) > 0:
        raise SkipCase("the stored composite is blank (saved without 'maximize compatibility')")
    mae, bad = difference(flat, stored)
    if mae > args.max_mae or bad > args.max_bad_fraction:
        raise SkipCase(f"{NARROW_SKIP}: MAE {mae:.2f}/255, "
                       f"{bad:.2%} of pixels off by >24")
    notes += limit_counts(segments, args.min_area, args.max_layers)
    if len(segments) < 2:
        raise SkipCase("fewer than 2 layers after merging small ones")
    height, width = flat.shape[:2]
    scale = min(1.0, args.max_side / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    layers = [to_straight_u8(downscale(s.premul, size)) for s in segments]
    if len(group_indices(layers)) < 2:
        # LayerD's grouping would make the truth one layer: the input itself scores perfectly, nothing is measured.
        raise SkipCase("no two layers overlap: LayerD's grouping leaves one layer")
    composite = composite_over(layers)

    folder = args.out / entry["case"]
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("layer_*.png"):
        old.unlink()
    for index, layer in enumerate(layers):
        write_png_atomic(folder / layer_file_name(index), layer)
    write_png_atomic(folder / "composite.png", composite)
    record = {
        "case": entry["case"], "kind": entry.get("kind", ""),
        "source": {key: entry[key] for key in ("repository", "path", "commit", "licence")},
        "notes": entry.get("notes", ""),
        "original_size_px": [width, height], "size_px": list(size), "layers": len(layers),
        "layer_names": [s.names for s in segments],
        "layer_coverage": [round(float(layer[..., 3].mean() / 255.0), 4) for layer in layers],
        "check_vs_file_composite": {"mae_255": round(mae, 3), "fraction_off_by_24": round(bad, 5)},
        "conversion_notes": notes,
    }
    write_json_atomic(folder / "case.json", record)
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=MANIFEST)
    parser.add_argument("--mirror", type=Path, default=DEFAULT_MIRROR)
    parser.add_argument("--out", type=Path,
                        help=f"default {DEFAULT_OUT} ({HELD_OUT} with --held-out, {FRESH} with --fresh, "
                             f"{FOURTH} with --fourth)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--held-out", action="store_true",
                       help="build the held-out set: files the main set's composite check skipped only narrowly")
    which.add_argument("--fresh", action="store_true",
                       help="build the fresh set: the manifest's files marked \"set\": \"fresh\" (strict limits)")
    which.add_argument("--fourth", action="store_true",
                       help="build the fourth set: the manifest's files marked \"set\": \"fourth\" (strict limits)")
    parser.add_argument("--cases", nargs="*", help="build only these cases")
    parser.add_argument("--max-side", type=int, default=1024)
    parser.add_argument("--max-layers", type=int, default=16)
    parser.add_argument("--min-area", type=float, default=0.001, help="mean alpha below which a layer is merged")
    parser.add_argument("--max-mae", type=float, default=2.0)
    parser.add_argument("--max-bad-fraction", type=float, default=0.01)
    parser.add_argument("--stack-tolerance", type=float, default=0.5, help="MAE (0–255) for a plain 'over' stack")
    parser.add_argument("--max-canvas-px", type=int, default=30_000_000)
    parser.add_argument("--only-new", action="store_true",
                        help="skip cases index.json already lists (built or skipped)")
    parser.add_argument("--list-mirror", type=Path, help="list the layered files of one snapshot and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.list_mirror:
        for path, size in list_mirror(args.list_mirror):
            print(f"{size:>10}  {path}")
        return 0

    entries = json.loads(args.manifest.read_text())["files"]
    # Which manifest entries a set takes: its own "set" mark (none for the main set), and for the held-out set
    # also the main set's narrowly skipped files.
    set_mark = "heldout" if args.held_out else "fresh" if args.fresh else "fourth" if args.fourth else None
    narrowly_skipped: set[str] = set()
    if args.held_out:
        strict_index = DEFAULT_OUT / "index.json"
        if not strict_index.exists():
            parser.error(f"--held-out picks its files from the main set's {strict_index}: build that first")
        skipped = json.loads(strict_index.read_text())["skipped"]
        narrowly_skipped = {case for case, reason in skipped.items() if reason.startswith(NARROW_SKIP)}
        args.max_mae, args.max_bad_fraction = HELD_OUT_MAX_MAE, HELD_OUT_MAX_BAD_FRACTION
    entries = [e for e in entries if e.get("set") == set_mark or e["case"] in narrowly_skipped]
    args.out = args.out or {None: DEFAULT_OUT, "heldout": HELD_OUT, "fresh": FRESH, "fourth": FOURTH}[set_mark]
    if args.cases:
        entries = [e for e in entries if e["case"] in set(args.cases)]
    args.out.mkdir(parents=True, exist_ok=True)
    index_path = args.out / "index.json"
    incremental = args.cases or args.only_new
    index = json.loads(index_path.read_text()) if index_path.exists() and incremental else {"cases": {}, "skipped": {}}
    # The index is rewritten after each case so that a stopped build resumes (--only-new); until the last case it
    # says the set is still being built, and the benchmarks refuse to score a part of it.
    index["complete"] = False
    if args.only_new:
        # Cases that failed for a missing package (psd-tools' optional renderers) are tried again.
        entries = [e for e in entries if e["case"] not in index["cases"]
                   and index["skipped"].get(e["case"], RETRY_REASON).startswith(RETRY_REASON)]
    for entry in entries:
        try:
            record = build_case(entry, args)
        except SkipCase as reason:
            logger.info("skip %-28s %s", entry["case"], reason)
            index["skipped"][entry["case"]] = str(reason)
            index["cases"].pop(entry["case"], None)
            continue
        except Exception as error:  # one broken file must not stop the set
            logger.exception("skip %s: unexpected error", entry["case"])
            index["skipped"][entry["case"]] = f"unexpected error: {type(error).__name__}: {error}"
            index["cases"].pop(entry["case"], None)
            continue
        index["skipped"].pop(entry["case"], None)
        index["cases"][entry["case"]] = {"layers": record["layers"], "size_px": record["size_px"],
                                         "kind": record["kind"], "licence": record["source"]["licence"]}
        logger.info("built %-28s %2d layers %s (check MAE %.2f)", entry["case"], record["layers"],
                    "×".join(map(str, record["size_px"])), record["check_vs_file_composite"]["mae_255"])
        write_json_atomic(index_path, index)
    index["complete"] = True
    write_json_atomic(index_path, index)
    logger.info("%d cases, %d skipped", len(index["cases"]), len(index["skipped"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
