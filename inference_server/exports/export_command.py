# SPDX-License-Identifier: GPL-3.0-or-later
"""``strata export JOB_DIR [--pptx OUT] [--psd OUT] [--zip OUT] [--with-original]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import StrataError


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help="export a decomposition folder as PowerPoint, Photoshop or a zip of PNGs",
        description="Export a finished decomposition folder (a server job folder under DATA_DIR/jobs/<id>/ or the "
                    "output of `strata decompose -o`) as a layered PowerPoint slide, a layered PSD and/or a zip "
                    "of the layer PNGs with manifest.json and preview.png.",
    )
    parser.add_argument("job_dir", metavar="JOB_DIR", type=Path, help="decomposition folder (has manifest.json)")
    parser.add_argument("--pptx", type=Path, metavar="OUT.pptx", help="write a PowerPoint file, one picture per layer")
    parser.add_argument("--psd", type=Path, metavar="OUT.psd", help="write a Photoshop file, one pixel layer per layer")
    parser.add_argument("--zip", type=Path, metavar="OUT.zip", help="write layer PNGs + manifest.json + preview.png")
    parser.add_argument("--with-original", action="store_true",
                        help="PowerPoint only: put the original image on a first slide before the layered one")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Write every requested file; returns the exit status (0 ok, 2 bad input)."""
    if not (args.pptx or args.psd or args.zip):
        print("strata export: error: nothing to do; pass at least one of --pptx OUT.pptx, --psd OUT.psd, "
              "--zip OUT.zip", file=sys.stderr)
        return 2
    if args.with_original and not args.pptx:
        print("strata export: error: --with-original applies to --pptx only", file=sys.stderr)
        return 2
    # Imported here: python-pptx and psd-tools are only needed when exporting.
    from .archive import write_archive
    from .export_layout import load_job_layout
    from .pptx import write_pptx
    from .psd import write_psd

    try:  # both load_job_layout and write_archive check the folder (check_job_folder) before writing anything
        if args.pptx or args.psd:
            layout = load_job_layout(args.job_dir)
            if args.pptx:
                write_pptx(layout, args.pptx, with_original=args.with_original)
                print(f"wrote {args.pptx} ({len(layout.layers)} layers)")
            if args.psd:
                write_psd(layout, args.psd)
                print(f"wrote {args.psd} ({len(layout.layers)} layers)")
        if args.zip:
            write_archive(args.job_dir, args.zip)
            print(f"wrote {args.zip}")
    except StrataError as error:
        print(f"strata export: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"strata export: error: cannot write output: {error}", file=sys.stderr)
        return 2
    return 0
