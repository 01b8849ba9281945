#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Build the installable Blender extension zip from blender_addon/ and validate it.

    .venv-blender/bin/python scripts/build_extension.py [--output-dir dist]

The zip carries the server too: ``server/strata-<version>-py3-none-any.whl``, built here from this checkout, which
the add-on's **Install Server** installs into a venv of its own (no terminal, no clone needed).

Uses the extension CLI that ships with Blender (``bl_pkg/cli/blender_ext.py``), found in the bpy wheel of the
Python running this script, or given with ``--blender-ext`` (e.g. from a Blender install's
``scripts/addons_core/bl_pkg/cli/``). Prints the zip's path on the last line.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIR = ROOT / "blender_addon"


def find_blender_ext() -> Path:
    """The extension CLI inside the installed bpy module (``bpy/<version>/scripts/addons_core/bl_pkg/cli``)."""
    spec = importlib.util.find_spec("bpy")  # locates the package without importing (and starting) Blender
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("build_extension: no bpy module in this Python; run it with .venv-blender/bin/python or "
                         "pass --blender-ext PATH/TO/bl_pkg/cli/blender_ext.py")
    for location in spec.submodule_search_locations:
        matches = sorted(glob.glob(os.path.join(location, "*", "scripts", "addons_core", "bl_pkg", "cli",
                                                "blender_ext.py")))
        if matches:
            return Path(matches[-1])
    raise SystemExit("build_extension: bpy is installed but its bl_pkg/cli/blender_ext.py was not found")


def run(cli: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, str(cli), *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"build_extension: `blender_ext {args[0]}` failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def _can_build_wheels() -> bool:
    """setuptools ≥ 70.1 has bdist_wheel built in; older ones need the wheel package."""
    try:
        import setuptools
    except ImportError:
        return False
    version = tuple(int(part) for part in re.findall(r"\d+", setuptools.__version__)[:2])
    return version >= (70, 1) or importlib.util.find_spec("wheel") is not None


def build_server_wheel(out_dir: Path, project_dir: Path = ROOT) -> Path:
    """The server package as a pure-Python wheel, built from a copy of the project (the checkout stays clean)."""
    with tempfile.TemporaryDirectory(prefix="strata-wheel-") as tmp:
        project = Path(tmp) / "project"
        project.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(project_dir / name, project / name)
        shutil.copytree(project_dir / "inference_server", project / "inference_server",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        # Without build isolation when setuptools can build wheels here (fast, offline); else pip fetches it.
        isolation = ["--no-build-isolation"] if _can_build_wheels() else []
        result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
                                 *isolation, "-w", str(out_dir), str(project)], capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"build_extension: building the server wheel failed:\n{result.stdout}{result.stderr}")
    wheels = sorted(out_dir.glob("strata-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"build_extension: expected one server wheel in {out_dir}, found {wheels}")
    return wheels[0]


def build(output_dir: Path, cli: Path, source_dir: Path = SOURCE_DIR, with_server: bool = True) -> Path:
    manifest = tomllib.loads((source_dir / "blender_manifest.toml").read_text(encoding="utf-8"))
    output_dir.mkdir(parents=True, exist_ok=True)
    zip_path = output_dir / f"{manifest['id']}-{manifest['version']}.zip"
    # 1. Validate the source folder (manifest fields, permissions, tags)
    print(run(cli, "validate", str(source_dir)).strip())
    with tempfile.TemporaryDirectory(prefix="strata-extension-") as tmp:
        staged = Path(tmp) / manifest["id"]
        shutil.copytree(source_dir, staged)
        # 2. The server wheel goes in server/, where Install Server looks for it
        if with_server:
            server_dir = staged / "server"
            shutil.rmtree(server_dir, ignore_errors=True)
            server_dir.mkdir()
            print(f"server wheel: {build_server_wheel(server_dir).name}")
        # 3. Build the zip (paths_exclude_pattern in the manifest keeps caches, dotfiles and tests out)
        print(run(cli, "build", "--source-dir", str(staged), "--output-filepath", str(zip_path)).strip())
    # 4. Validate the built zip itself, as Blender does before installing it
    print(run(cli, "validate", str(zip_path)).strip())
    return zip_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=ROOT / "dist", help="where the zip goes (default dist/)")
    parser.add_argument("--blender-ext", type=Path, help="path of bl_pkg/cli/blender_ext.py (default: from bpy)")
    parser.add_argument("--source-dir", type=Path, default=SOURCE_DIR,
                        help="the add-on folder (default blender_addon/)")
    parser.add_argument("--no-server", action="store_true",
                        help="leave the server wheel out (the add-on then needs a server installed by hand)")
    args = parser.parse_args(argv)
    cli = args.blender_ext or find_blender_ext()
    zip_path = build(args.output_dir, cli, args.source_dir, with_server=not args.no_server)
    print(zip_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
