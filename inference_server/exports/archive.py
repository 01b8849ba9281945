"""Decomposition folder → zip: the layer PNGs, manifest.json and the flattened preview, under one top folder.

File names inside are the folder's own (``layer_00.png``…), so the manifest's ``file`` entries stay valid after
unzipping. PNGs are stored, not deflated (they are compressed already); JSON is deflated.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

from ..layers import MANIFEST_NAME, PREVIEW_NAME, write_bytes_atomic
from .layout import ORIGINAL_NAME, check_job_folder, safe_file_stem


def archive_bytes(folder: str | os.PathLike, top_folder: str | None = None) -> bytes:
    folder = Path(folder)
    manifest = check_job_folder(folder)
    top = safe_file_stem(top_folder or folder.name)
    names = [entry["file"] for entry in manifest["layers"]]
    names += [name for name in (PREVIEW_NAME, ORIGINAL_NAME) if (folder / name).is_file()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.write(folder / name, f"{top}/{name}", compress_type=zipfile.ZIP_STORED)
        archive.write(folder / MANIFEST_NAME, f"{top}/{MANIFEST_NAME}", compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def write_archive(folder: str | os.PathLike, path: str | os.PathLike) -> None:
    write_bytes_atomic(path, archive_bytes(folder))
