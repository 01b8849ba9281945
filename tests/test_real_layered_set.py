# SPDX-License-Identifier: GPL-3.0-or-later
"""The real-set pipeline end to end on a layered file of our own: a git snapshot holding an OpenRaster file, the
manifest, scripts/real_layered_set.py building the case, scripts/bench_decompose.py --set real scoring it."""

from __future__ import annotations

import importlib.util
import io
import json
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.loss_split import L1_CLASSES
from inference_server.layers import composite_over

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
REPOSITORY = "someone/poster-sources"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _png(rgba: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


def _ora(paper: np.ndarray, badge: np.ndarray, badge_xy: tuple[int, int], merged: np.ndarray) -> bytes:
    height, width = paper.shape[:2]
    stack = (f'<image w="{width}" h="{height}"><stack>'  # front first, as OpenRaster lists layers
             f'<layer name="Badge" src="data/badge.png" x="{badge_xy[0]}" y="{badge_xy[1]}" opacity="1.0"/>'
             '<layer name="Paper" src="data/paper.png" x="0" y="0"/>'
             '<layer name="Hidden" src="data/paper.png" visibility="hidden"/></stack></image>')
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("mimetype", "image/openraster")
        archive.writestr("stack.xml", stack)
        archive.writestr("data/paper.png", _png(paper))
        archive.writestr("data/badge.png", _png(badge))
        archive.writestr("mergedimage.png", _png(merged))
    return buffer.getvalue()


@pytest.fixture
def snapshot(tmp_path):
    """A repository snapshot with a faithful layered file and one whose stored composite disagrees with its layers."""
    paper = np.zeros((120, 200, 4), np.uint8)
    paper[...] = (240, 230, 210, 255)
    badge = np.zeros((40, 60, 4), np.uint8)
    badge[...] = (200, 30, 30, 255)
    badge[:5] = 0  # transparent rows
    placed = np.zeros_like(paper)
    placed[50:90, 70:130] = badge
    merged = composite_over([paper, placed])
    work = tmp_path / "mirror" / REPOSITORY.replace("/", "+") / "repo"
    work.mkdir(parents=True)
    (work / "poster.ora").write_bytes(_ora(paper, badge, (70, 50), merged))
    (work / "stale.ora").write_bytes(_ora(paper, badge, (70, 50), paper))
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-qm", "sources"], check=True)
    commit = subprocess.run(git[:3] + ["rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    entries = [{"case": name, "kind": "poster", "repository": REPOSITORY, "path": f"{name}.ora", "commit": commit,
                "licence": "none stated in the repository", "notes": ""} for name in ("poster", "stale")]
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"description": "test", "files": entries}))
    return tmp_path, manifest, [paper, placed], merged


def test_a_layered_file_becomes_a_case_and_a_disagreeing_one_is_skipped_with_the_reason(snapshot):
    root, manifest, truth, merged = snapshot
    builder = _script("real_layered_set")
    out = root / "real"
    assert builder.main(["--manifest", str(manifest), "--mirror", str(root / "mirror"), "--out", str(out)]) == 0
    index = json.loads((out / "index.json").read_text())
    assert list(index["cases"]) == ["poster"]
    assert "do not reproduce the file's composite" in index["skipped"]["stale"]
    layers = [np.asarray(Image.open(out / "poster" / f"layer_{k:02d}.png")) for k in range(2)]
    assert not (out / "poster" / "layer_02.png").exists(), "the hidden layer is left out"
    for built, expected in zip(layers, truth, strict=False):
        assert np.array_equal(built[..., 3], expected[..., 3])
        visible = expected[..., 3] > 0
        assert np.array_equal(built[visible, :3], expected[visible, :3])
    assert np.array_equal(np.asarray(Image.open(out / "poster" / "composite.png")), merged)
    record = json.loads((out / "poster" / "case.json").read_text())
    assert record["source"]["repository"] == REPOSITORY and record["source"]["path"] == "poster.ora"
    assert record["check_vs_file_composite"]["mae_255"] == 0.0


def _built_set(snapshot) -> tuple[Path, Path]:
    """(the snapshot's root, the real set built from it)."""
    root, manifest, _, _ = snapshot
    out = root / "real"
    _script("real_layered_set").main(["--manifest", str(manifest), "--mirror", str(root / "mirror"),
                                      "--out", str(out)])
    return root, out


def test_bench_scores_the_real_set_against_the_one_layer_baseline(snapshot, capsys):
    root, out = _built_set(snapshot)
    scores = root / "scores.json"
    assert _script("bench_decompose").main(["--set", "real", "--data", str(out), "--json", str(scores)]) == 0
    printed = capsys.readouterr().out
    assert "1 cases" in printed and "poster" in printed
    (case,) = json.loads(scores.read_text())["cases"]
    assert case["gt_layers"] == 2
    assert case["one layer"]["layers"] == 1
    # The badge over plain paper is the easy case: the decomposer finds both layers.
    assert case["cpu"]["layers"] == 2 and case["cpu"]["iou_e0"] > 0.9


def test_a_misspelt_case_name_stops_the_bench_instead_of_scoring_nothing(snapshot):
    root, out = _built_set(snapshot)
    with pytest.raises(SystemExit, match="no case postre in"):
        _script("bench_decompose").main(["--set", "real", "--data", str(out), "--cases", "postre",
                                         "--json", str(root / "scores.json")])
    assert not (root / "scores.json").exists()


def test_a_set_still_being_built_is_not_scored_as_if_it_were_whole(snapshot):
    # The builder rewrites index.json after each case (a stopped build resumes): a bench started meanwhile would
    # score a part of the set and print it as the set's mean.
    root, out = _built_set(snapshot)
    index_path = out / "index.json"
    index = json.loads(index_path.read_text())
    assert index["complete"] is True
    index_path.write_text(json.dumps(index | {"complete": False}))
    with pytest.raises(SystemExit, match="still being built"):
        _script("bench_decompose").main(["--set", "real", "--data", str(out), "--json", str(root / "scores.json")])
    assert not (root / "scores.json").exists()


def test_explain_splits_the_real_set_s_loss_into_classes_that_add_up(snapshot, capsys):
    root, out = _built_set(snapshot)
    classes = root / "classes.json"
    assert _script("explain_decompose").main(["--data", str(out), "--json", str(classes)]) == 0
    printed = capsys.readouterr().out
    assert "edit level 0" in printed and "edit level 5" in printed and "hidden ground" in printed
    assert "stack depth" in printed
    (case,) = json.loads(classes.read_text())["cases"]
    assert case["gt_groups"] <= case["gt_layers"] and case["groups"] <= case["layers"]
    assert case["ground"] == "flat", "the paper is one colour"
    level = case["levels"]["0"]
    assert sum(level[name] for name in L1_CLASSES) == pytest.approx(level["l1"], abs=1e-9)


def test_the_manifest_names_every_file_and_keeps_the_held_out_fresh_and_fourth_files_apart():
    entries = json.loads((SCRIPTS / "real_layered_set.json").read_text())["files"]
    names = [entry["case"] for entry in entries]
    assert len(names) == len(set(names)), "case names are folder names: each once"
    for entry in entries:
        assert entry["repository"].count("/") == 1 and entry["path"], entry["case"]
        assert len(entry["commit"]) == 40 and int(entry["commit"], 16) >= 0, entry["case"]
        assert entry["licence"], entry["case"]
        # The outside set of issue #12 draws on these projects' test files: none of ours comes from them.
        assert not any(word in entry["repository"].lower()
                       for word in ("psd-tools", "ag-psd", "psd.rb", "psd.js", "aspose")), entry["case"]
    assert {entry.get("set") for entry in entries} == {None, "heldout", "fresh", "fourth"}
    repositories = {mark: {entry["repository"] for entry in entries if entry.get("set") == mark}
                    for mark in (None, "heldout", "fresh", "fourth")}
    assert sum(entry.get("set") == "heldout" for entry in entries) >= 40
    assert sum(entry.get("set") == "fresh" for entry in entries) >= 40
    assert sum(entry.get("set") == "fourth" for entry in entries) >= 40
    # A held-out file comes from a repository the main (tuned-on) set does not use; a fresh file from one that
    # neither the main nor the held-out set (tuned on since) uses; a fourth-set file from one that none of the
    # other three sets (all looked at by now) uses.
    assert not repositories["heldout"] & repositories[None]
    assert not repositories["fresh"] & (repositories[None] | repositories["heldout"])
    assert not repositories["fourth"] & (repositories[None] | repositories["heldout"] | repositories["fresh"])
    # Repository names differ only in case at most once on GitHub: compare them case-blind too.
    lowered = {mark: {name.lower() for name in names} for mark, names in repositories.items()}
    assert not lowered["fourth"] & (lowered[None] | lowered["heldout"] | lowered["fresh"])
    # At most 3 files from one repository in the fourth set, so that no one project dominates it.
    per_repository = Counter(entry["repository"] for entry in entries if entry.get("set") == "fourth")
    assert max(per_repository.values()) <= 3, per_repository.most_common(1)


def test_each_set_builds_only_its_own_files(snapshot):
    root, manifest, _, _ = snapshot
    value = json.loads(manifest.read_text())
    value["files"].append(dict(value["files"][0], case="fresh_poster", set="fresh"))
    value["files"].append(dict(value["files"][0], case="held_out_poster", set="heldout"))
    value["files"].append(dict(value["files"][0], case="fourth_poster", set="fourth"))
    manifest.write_text(json.dumps(value))
    builder = _script("real_layered_set")
    common = ["--manifest", str(manifest), "--mirror", str(root / "mirror")]
    assert builder.main([*common, "--out", str(root / "real")]) == 0
    assert builder.main([*common, "--fresh", "--out", str(root / "fresh")]) == 0
    assert builder.main([*common, "--fourth", "--out", str(root / "fourth")]) == 0
    main_index = json.loads((root / "real" / "index.json").read_text())
    fresh_index = json.loads((root / "fresh" / "index.json").read_text())
    fourth_index = json.loads((root / "fourth" / "index.json").read_text())
    assert sorted(main_index["cases"]) == ["poster"] and sorted(main_index["skipped"]) == ["stale"]
    assert sorted(fresh_index["cases"]) == ["fresh_poster"] and not fresh_index["skipped"]
    assert sorted(fourth_index["cases"]) == ["fourth_poster"] and not fourth_index["skipped"]
    with pytest.raises(SystemExit):  # one set at a time
        builder.main([*common, "--fresh", "--held-out"])
    with pytest.raises(SystemExit):
        builder.main([*common, "--fourth", "--fresh"])


def test_ceiling_bench_sets_us_beside_what_the_image_allows_and_reuses_a_bench_run(snapshot, capsys):
    root, out = _built_set(snapshot)
    scores, ceilings = root / "scores.json", root / "ceilings.json"
    _script("bench_decompose").main(["--set", "real", "--data", str(out), "--json", str(scores)])
    capsys.readouterr()
    assert _script("bench_ceiling").main(["--data", str(out), "--cpu-json", str(scores),
                                          "--json", str(ceilings)]) == 0
    printed = capsys.readouterr().out
    for method in ("cpu", "one layer", "visible pixels", "visible + ground", "visible + boxes", "shown layers whole"):
        assert f"\n{method} " in printed, method
    assert "cpu regrouped" not in printed, "regrouping needs the layers, which an earlier run did not keep"
    (case,) = json.loads(ceilings.read_text())["cases"]
    assert case["cpu"] == {key: value for key, value in json.loads(scores.read_text())["cases"][0]["cpu"].items()
                           if key in case["cpu"]}, "the CPU row is the earlier run's, not a new decomposition"
    # The badge lies on paper that shows around it: what shows is the whole truth, every ceiling scores 1.
    assert all(case[method]["iou_e0"] == 1.0 for method in ("visible + ground", "shown layers whole"))
    assert "even with every layer's visible pixels known and completed within its box: 0 of 1" in printed


def test_ceiling_bench_refuses_a_bench_run_of_another_set(snapshot, tmp_path):
    root, out = _built_set(snapshot)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"cases": [{"case": "menu", "cpu": {}}]}))
    with pytest.raises(SystemExit, match="has no scores for poster"):
        _script("bench_ceiling").main(["--data", str(out), "--cpu-json", str(other)])


def test_ceiling_bench_decomposes_the_set_itself_without_an_earlier_run(snapshot, capsys):
    root, out = _built_set(snapshot)
    assert _script("bench_ceiling").main(["--data", str(out), "--json", str(root / "ceilings.json")]) == 0
    (case,) = json.loads((root / "ceilings.json").read_text())["cases"]
    assert case["cpu"]["layers"] == 2 and case["cpu"]["iou_e0"] > 0.9
    assert case["cpu regrouped"]["layers"] == 2, "its two layers are the truth's two: nothing to regroup"
    assert case["pieces"] == {"truth_shown": 2, "truth_unowned": 0, "unowned_in_our_bottom": 0, "extra_pieces": 0}
    printed = capsys.readouterr().out
    assert "\ncpu regrouped " in printed and "\ncpu reordered " in printed
    assert "the main part of no layer of ours: 0 (0%" in printed
