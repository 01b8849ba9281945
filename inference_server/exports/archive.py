# SPDX-License-Identifier: GPL-3.0-or-later
"""Decomposition folder → zip: the layer PNGs (and depth maps), manifest.json and the flattened preview, under one
top folder, with the layers that were decomposed again (recursive decomposition) nested inside.

File names inside are the folder's own (``layer_00.png``…), so the manifest's ``file`` entries stay valid after
unzipping. A layer decomposed again is listed in the manifest's ``children`` (``{"<layer index>": [child, ...]}``,
job ids on the server, folder paths from ``strata decompose --layer``); the zip carries each child folder as
``children/<name>/`` (recursively: a child's children nest inside it) and its manifest's ``children`` entries become
those relative paths, so the tree is whole and self-contained once unzipped. A child whose folder is gone or
unfinished is left out, and out of the zipped manifest. PNGs are stored, not deflated (they are compressed already);
JSON is deflated.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

from ..errors import InvalidInput
from ..job_manager import JOB_ID_PATTERN
from ..layers import MANIFEST_NAME, PREVIEW_NAME, write_bytes_atomic
from .export_layout import ORIGINAL_NAME, check_job_folder, safe_file_stem

CHILDREN_FOLDER = "children"


def archive_bytes(folder: str | os.PathLike, top_folder: str | None = None) -> bytes:
    folder = Path(folder)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        _add_folder(archive, folder, safe_file_stem(top_folder or folder.name), check_job_folder(folder),
                    seen={folder.resolve()})
    return buffer.getvalue()


def write_archive(folder: str | os.PathLike, path: str | os.PathLike) -> None:
    write_bytes_atomic(path, archive_bytes(folder))


def _add_folder(archive: zipfile.ZipFile, folder: Path, prefix: str, manifest: dict, seen: set[Path]) -> None:
    names = [entry["file"] for entry in manifest["layers"]]
    names += [name for name in (PREVIEW_NAME, ORIGINAL_NAME) if (folder / name).is_file()]
    # Depth maps (jobs run with depth) travel with their layers; only plain file names the folder really has.
    depth_files = (manifest.get("depth") or {}).get("files") or []
    names += [name for name in depth_files if isinstance(name, str) and name == os.path.basename(name)
              and (folder / name).is_file()]
    for name in names:
        archive.write(folder / name, f"{prefix}/{name}", compress_type=zipfile.ZIP_STORED)
    children: dict[str, list[str]] = {}
    for layer, entries in (manifest.get("children") or {}).items():
        for entry in entries if isinstance(entries, list) else []:
            child = _child_folder(folder, entry)
            if child is None or child.resolve() in seen:  # gone, or a loop in hand-edited manifests
                continue
            try:
                child_manifest = check_job_folder(child)
            except InvalidInput:
                continue
            seen.add(child.resolve())
            relative = f"{CHILDREN_FOLDER}/{safe_file_stem(child.name)}"
            _add_folder(archive, child, f"{prefix}/{relative}", child_manifest, seen)
            children.setdefault(layer, []).append(relative)
    if "children" in manifest:
        manifest = {**manifest, "children": children}
    archive.writestr(f"{prefix}/{MANIFEST_NAME}", json.dumps(manifest, indent=2).encode("utf-8"),
                     compress_type=zipfile.ZIP_DEFLATED)


def _child_folder(folder: Path, entry: object) -> Path | None:
    """Where a ``children`` entry lives: a server job id is a sibling job folder, a path is relative to ``folder``
    (absolute from ``strata decompose --layer``, relative in an unzipped archive)."""
    if not isinstance(entry, str) or not entry:
        return None
    path = folder.parent / entry if JOB_ID_PATTERN.match(entry) else folder / entry
    return path if path.is_dir() else None
