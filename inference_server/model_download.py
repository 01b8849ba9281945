# SPDX-License-Identifier: GPL-3.0-or-later
"""Download the Qwen-Image-Layered weights a tier needs into a local folder, resumably, with per-file progress.

    python -m inference_server.model_download --local-dir DIR [--model Qwen/Qwen-Image-Layered] [--gguf REPO/FILE.gguf]

Runs in the server's env (it has huggingface_hub); the Blender add-on's **Download Model** starts it and reads its
stdout, one JSON object per line: ``plan`` (tier, files, sizes), ``file`` (bytes of the file in flight), ``done``
(the folder, loadable with ``from_pretrained``) or ``error`` (a sentence that says what to do), exit code 1.

The Hub parts are huggingface_hub's own: ``HfApi.model_info`` lists the files with their sizes and hashes,
``hf_hub_url`` / ``get_hf_file_metadata`` follow the Hub's redirects and headers, ``http_get`` streams the bytes
(``HF_ENDPOINT`` and ``HF_TOKEN`` apply as everywhere). What huggingface_hub does not do any more is resume: its
``hf_hub_download`` writes to a per-process temporary file and drops it on failure. Here each file grows in
``DIR/.partial/<name>.<etag>.part`` and the next run asks for the rest with a Range request, so a killed download
(Blender quit, laptop lid closed) continues where it stopped. A file moves into place only whole and, when the Hub
gives its sha256, checked.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import io
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .backends import DEFAULT_QWEN_MODEL

MARKER_NAME = ".strata-download.json"
PARTIAL_DIR = ".partial"
PROGRESS_INTERVAL_S = 0.25
# huggingface_hub reads the stream in 10 MiB pieces and writes each whole: that much is lost on a kill and progress
# moves in 10 MiB steps. 1 MiB keeps both small; env STRATA_DOWNLOAD_CHUNK_BYTES changes it.
CHUNK_BYTES = 1 << 20
# Weights a diffusers pipeline does not load from the folder (other formats of the same tensors, docs).
IGNORE_PATTERNS = ("*.md", ".gitattributes", "*.bin", "*.pt", "*.ckpt", "*.onnx", "*.msgpack", "*.h5", "*.gguf")
GGUF_IGNORE = ("transformer/*.safetensors", "transformer/*.safetensors.index.json")


class DownloadError(RuntimeError):
    """Something the user can fix; the message says what."""


def download_plan(model_id: str, gguf: str | None = None) -> dict[str, Any]:
    """Which files the chosen tier needs: {'tier', 'description', 'repo', 'ignore', 'gguf': (repo, file) | None}.

    The full bf16 pipeline, or the pipeline without its transformer weights plus one GGUF file for the transformer.
    """
    gpu_tier = _gpu_tier()
    if gguf:
        repo, _, filename = gguf.rpartition("/")
        if repo.count("/") != 1 or not filename.endswith(".gguf"):
            raise DownloadError(f"--gguf must be OWNER/REPO/FILE.gguf on the Hub, got {gguf!r}")
        return {"tier": "gguf", "description": f"GGUF transformer {filename} + the rest of {model_id}" + gpu_tier,
                "repo": model_id, "ignore": list(IGNORE_PATTERNS + GGUF_IGNORE), "gguf": (repo, filename)}
    return {"tier": "bf16", "description": f"full bf16 pipeline {model_id}" + gpu_tier, "repo": model_id,
            "ignore": list(IGNORE_PATTERNS), "gguf": None}


def _gpu_tier() -> str:
    """'; on this GPU: <the tier chooser's summary>' when a CUDA GPU is here, else a note. Every tier but GGUF
    loads the bf16 weights (quantizing them on load), so the download is the same; this says what will run."""
    from .backends.qwen_tiers import choose_tier, probe_machine

    try:
        import torch

        if not torch.cuda.is_available():
            return "; no CUDA GPU here, the VRAM tier is chosen where the server runs"
        return "; on this GPU: " + choose_tier("auto", probe_machine()).summary
    except Exception as exc:  # a tier that does not fit is worth saying, never worth failing the download for
        return f"; VRAM tier: {exc}"


def _emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


class _CountingFile(io.BufferedWriter):
    """The part file, opened for appending, as ``http_get`` sees it: reports the bytes written so far."""

    def __init__(self, path: Path, start: int, report: Callable[[int], None]) -> None:
        super().__init__(io.FileIO(path, "ab"))
        self.written = start
        self._report = report

    def write(self, data, /) -> int:
        count = super().write(data)
        self.written += count
        self._report(self.written)
        return count

    def truncate(self, size: int | None = None, /) -> int:
        result = super().truncate(size)
        self.written = self.tell()
        return result


def _files_of(repo: str, ignore: list[str], only: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """(commit, [{'name', 'size', 'sha256'}]) of a Hub repo, per huggingface_hub's model_info."""
    from huggingface_hub import HfApi

    info = HfApi().model_info(repo, files_metadata=True)
    files: list[dict[str, Any]] = []
    for sibling in info.siblings or []:
        name = sibling.rfilename
        if only is not None and name != only:
            continue
        if only is None and any(fnmatch.fnmatch(name, pattern) for pattern in ignore):
            continue
        lfs = getattr(sibling, "lfs", None)
        sha256 = getattr(lfs, "sha256", None) if lfs is not None else None
        files.append({"name": name, "size": sibling.size, "sha256": sha256})
    if only is not None and not files:
        raise DownloadError(f"{repo} has no file {only!r}; check the GGUF file name")
    if info.sha is None:  # the files below would be fetched from a moving branch, not one commit
        raise DownloadError(f"the Hub did not say which commit {repo} is at; try again later")
    return info.sha, files


def _fetch(repo: str, commit: str, entry: dict[str, Any], dest: Path, partial_dir: Path,
           on_bytes: Callable[[int], None]) -> None:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    url = hf_hub_url(repo, entry["name"], revision=commit)
    metadata = get_hf_file_metadata(url)
    size = metadata.size if metadata.size is not None else entry.get("size")
    etag = (metadata.etag or entry.get("sha256") or "noetag").strip('"')
    part = partial_dir / (entry["name"].replace("/", "__") + f".{etag[:16]}.part")
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:  # not this file's bytes: start over
        part.unlink()
        have = 0
    with _CountingFile(part, have, on_bytes) as handle:
        if size is None or have < size:
            http_get(metadata.location, handle, resume_size=have, headers=build_hf_headers(),
                     expected_size=size, displayed_filename=entry["name"])
        handle.flush()
        os.fsync(handle.fileno())
    if entry.get("sha256"):
        digest = hashlib.sha256()
        with open(part, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != entry["sha256"]:
            part.unlink()
            raise DownloadError(f"{entry['name']} arrived corrupt (sha256 differs from the Hub's); it was deleted, "
                                f"press Download Model again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, dest)


def download(model_id: str, local_dir: str | os.PathLike, gguf: str | None = None, plan_only: bool = False) -> Path:
    try:
        from huggingface_hub import constants
    except ImportError:
        raise DownloadError("this server env has no huggingface_hub (it was installed without Qwen-Image-Layered): "
                            "set Torch to CUDA (or CPU) in the add-on preferences and press Install Server again, "
                            "or pip install 'strata[qwen]'") from None

    constants.DOWNLOAD_CHUNK_SIZE = int(os.environ.get("STRATA_DOWNLOAD_CHUNK_BYTES", CHUNK_BYTES))
    local_dir = Path(local_dir)
    plan = download_plan(model_id, gguf)
    commit, files = _files_of(plan["repo"], plan["ignore"])
    jobs = [(plan["repo"], commit, entry, local_dir / entry["name"]) for entry in files]
    if plan.get("gguf"):
        gguf_repo, gguf_name = plan["gguf"]
        gguf_commit, gguf_files = _files_of(gguf_repo, [], only=gguf_name)
        jobs += [(gguf_repo, gguf_commit, entry, local_dir / "gguf" / Path(entry["name"]).name)
                 for entry in gguf_files]
    partial_dir = local_dir / PARTIAL_DIR
    have_bytes = {}
    for _, _, entry, dest in jobs:
        done = dest.is_file() and entry["size"] is not None and dest.stat().st_size == entry["size"]
        partial = sum(p.stat().st_size for p in partial_dir.glob(entry["name"].replace("/", "__") + ".*.part"))
        have_bytes[entry["name"]] = entry["size"] if done else partial
    total = sum(entry["size"] or 0 for _, _, entry, _ in jobs)
    _emit("plan", tier=plan["tier"], description=plan["description"], repo=plan["repo"], commit=commit,
          files=[{"name": entry["name"], "size": entry["size"]} for _, _, entry, _ in jobs], total_bytes=total,
          have_bytes=sum(have_bytes.values()))
    if plan_only:
        return local_dir
    # Free space first: what is still missing, plus a little for the filesystem.
    missing = total - sum(have_bytes.values())
    local_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(local_dir).free
    if missing > 0 and free < missing + 64 * 2**20:
        raise DownloadError(f"not enough free disk space in {local_dir}: {missing / 2**30:.2f} GB still to download, "
                            f"{free / 2**30:.2f} GB free; free some space (or choose a smaller tier) and retry")
    for index, (repo, repo_commit, entry, dest) in enumerate(jobs):
        if have_bytes[entry["name"]] == entry["size"] and dest.is_file():
            _emit("file", name=entry["name"], index=index, count=len(jobs), bytes=entry["size"], size=entry["size"],
                  skipped=True)
            continue
        last = [0.0]

        def on_bytes(written: int, entry=entry, index=index, last=last) -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_INTERVAL_S:
                last[0] = now
                _emit("file", name=entry["name"], index=index, count=len(jobs), bytes=written, size=entry["size"])

        _fetch(repo, repo_commit, entry, dest, partial_dir, on_bytes)
        _emit("file", name=entry["name"], index=index, count=len(jobs), bytes=entry["size"], size=entry["size"],
              finished=True)
    shutil.rmtree(partial_dir, ignore_errors=True)
    marker = {"repo": plan["repo"], "commit": commit, "tier": plan["tier"], "description": plan["description"],
              "files": [str(dest.relative_to(local_dir)) for _, _, _, dest in jobs], "finished_at": time.time()}
    if plan.get("gguf"):
        marker["gguf"] = str(jobs[-1][3])
    tmp = local_dir / (MARKER_NAME + ".tmp")
    tmp.write_text(json.dumps(marker, indent=2), encoding="utf-8")
    os.replace(tmp, local_dir / MARKER_NAME)
    return local_dir


def _explain(exc: BaseException) -> str:
    name = type(exc).__name__
    if isinstance(exc, DownloadError):
        return str(exc)
    from huggingface_hub import constants  # present: DownloadError covers its absence

    if isinstance(exc, OSError) and getattr(exc, "errno", None) == 28:
        return "the disk filled up during the download; free some space and press Download Model again (it resumes)"
    if name in ("RepositoryNotFoundError", "GatedRepoError"):
        return (f"the Hub refused the model ({exc.__class__.__name__}); check the model id, or log in with a token "
                f"that may read it (HF_TOKEN)")
    if name in ("ConnectError", "ConnectTimeout", "ReadTimeout", "RemoteProtocolError", "ReadError",
                "LocalEntryNotFoundError", "OfflineModeIsEnabled") or isinstance(exc, ConnectionError):
        return (f"cannot reach the Hub at {constants.ENDPOINT} ({exc}); check the internet connection and press "
                f"Download Model again: finished files are kept and the file in flight resumes")
    return f"download failed: {name}: {exc}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference_server.model_download",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.environ.get("STRATA_QWEN_MODEL", DEFAULT_QWEN_MODEL),
                        help=f"Hub id of the pipeline (default $STRATA_QWEN_MODEL or {DEFAULT_QWEN_MODEL})")
    parser.add_argument("--local-dir", required=True, type=Path, help="folder to download into")
    parser.add_argument("--gguf", help="OWNER/REPO/FILE.gguf: one GGUF file for the transformer (optional)")
    parser.add_argument("--plan-only", action="store_true", help="print the plan (tier, files, sizes) and stop")
    args = parser.parse_args(argv)
    try:
        path = download(args.model, args.local_dir, args.gguf or None, plan_only=args.plan_only)
    except KeyboardInterrupt:
        _emit("error", detail="interrupted; press Download Model again to resume")
        return 130
    except Exception as exc:  # every failure becomes one line the add-on can show
        _emit("error", detail=_explain(exc))
        return 1
    _emit("done", path=str(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
