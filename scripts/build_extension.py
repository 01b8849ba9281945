#!/usr/bin/env python3
"""Build the installable Blender extension zip from blender_addon/ and validate it.

    .venv-blender/bin/python scripts/build_extension.py [--output-dir dist]

Uses the extension CLI that ships with Blender (``bl_pkg/cli/blender_ext.py``), found in the bpy wheel of the
Python running this script, or given with ``--blender-ext`` (e.g. from a Blender install's
``scripts/addons_core/bl_pkg/cli/``). Prints the zip's path on the last line.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import subprocess
import sys
import tomllib
from pathlib import Path

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


def build(output_dir: Path, cli: Path, source_dir: Path = SOURCE_DIR) -> Path:
    manifest = tomllib.loads((source_dir / "blender_manifest.toml").read_text(encoding="utf-8"))
    output_dir.mkdir(parents=True, exist_ok=True)
    zip_path = output_dir / f"{manifest['id']}-{manifest['version']}.zip"
    # 1. Validate the source folder (manifest fields, permissions, tags)
    print(run(cli, "validate", str(source_dir)).strip())
    # 2. Build the zip (paths_exclude_pattern in the manifest keeps caches, dotfiles and tests out)
    print(run(cli, "build", "--source-dir", str(source_dir), "--output-filepath", str(zip_path)).strip())
    # 3. Validate the built zip itself, as Blender does before installing it
    print(run(cli, "validate", str(zip_path)).strip())
    return zip_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=ROOT / "dist", help="where the zip goes (default dist/)")
    parser.add_argument("--blender-ext", type=Path, help="path of bl_pkg/cli/blender_ext.py (default: from bpy)")
    parser.add_argument("--source-dir", type=Path, default=SOURCE_DIR,
                        help="the add-on folder (default blender_addon/)")
    args = parser.parse_args(argv)
    cli = args.blender_ext or find_blender_ext()
    zip_path = build(args.output_dir, cli, args.source_dir)
    print(zip_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
