# SPDX-License-Identifier: GPL-3.0-or-later
"""Install the Strata server into a venv of its own, from the add-on's preferences, without a terminal.

Layout under the extension's user folder (``bpy.utils.extension_path_user(__package__)``)::

    envs/env-<stamp>/     one complete venv per install
    server-env.json       {"python": ..., "env": "env-<stamp>", ...}: the env in use, replaced atomically
    install.log           the whole log of the last install

An install builds a fresh venv next to the one in use, installs torch and the server wheel that ships in the
extension zip (``server/strata-*.whl``, put there by ``scripts/build_extension.py``), checks that it imports and
runs, and only then rewrites ``server-env.json`` (one ``os.replace``). A failure or a cancel deletes the new venv,
so the previous server stays in use; running it again repairs or upgrades. Venvs are not relocatable (scripts hold
absolute paths), which is why the swap is a pointer and not a folder rename.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .background_task import BackgroundTask, TaskError

SUPPORTED_PYTHONS = ((3, 10), (3, 11), (3, 12))
# The torch the server is tested with; the same pin goes to both pip calls so the second never "upgrades" it.
TORCH_REQUIREMENT = "torch==2.13.0"
# PyPI's Linux torch wheels are the CUDA builds; these indexes hold the CPU build and Windows' CUDA builds.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH_CUDA_INDEX = "https://download.pytorch.org/whl/cu128"
# Installed sizes: the CPU decomposer alone about 0.6 GB, with the CPU torch build and the qwen extra about 1.9 GB;
# CUDA wheels add about 4.5 GB. Downloads pass through pip's temporary folder too, hence the margin.
NEED_FREE_BYTES = {"none": 1 * 2**30, "cpu": 3 * 2**30, "cuda": 9 * 2**30}
# What each choice installs: the torch build ('' = no torch) and the server's extras.
VARIANTS = {"cuda": ("cuda", "qwen"), "cpu": ("cpu", "qwen"), "none": ("", "")}
POINTER_NAME = "server-env.json"
ENVS_DIR = "envs"
LOG_NAME = "install.log"
_NETWORK_ERRORS = ("NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
                   "Name or service not known", "Network is unreachable", "Connection refused", "ConnectTimeout",
                   "ReadTimeoutError", "ProxyError", "SSLError", "No matching distribution found",
                   "Could not find a version that satisfies")


def server_wheels(addon_dir: str | os.PathLike) -> list[Path]:
    """The server wheel(s) shipped inside the extension, newest version last."""
    return sorted(Path(p) for p in glob.glob(os.path.join(str(addon_dir), "server", "strata-*.whl")))


def python_version(python: str, timeout_s: float = 20.0) -> tuple[int, int]:
    """(major, minor) of ``python``, checking that it can make venvs with pip; TaskError says what is missing."""
    code = ("import sys, venv\n"
            "try:\n    import ensurepip\nexcept ImportError:\n    print('NOENSUREPIP')\n"
            "print('%d.%d' % sys.version_info[:2])")
    try:
        result = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise TaskError(f"cannot run the Python {python!r} ({e})") from None
    if result.returncode != 0:
        raise TaskError(f"the Python {python!r} does not work: {(result.stderr or result.stdout).strip()[-300:]}")
    lines = result.stdout.split()
    major, minor = (int(v) for v in lines[-1].split("."))
    if "NOENSUREPIP" in lines:
        raise TaskError(f"the Python {python} ({major}.{minor}) cannot create venvs with pip (its ensurepip module is "
                        f"missing); on Debian/Ubuntu: sudo apt install python{major}.{minor}-venv")
    return major, minor


def candidate_pythons(blender_python: str | None = None) -> list[str]:
    """Pythons to try, best first: Blender's own (3.11 in Blender 4.2-5.0), then 3.12, 3.11, 3.10 on PATH."""
    found = []
    if blender_python:
        found.append(blender_python)
    for name in ("python3.12", "python3.11", "python3.10", "python3"):
        path = shutil.which(name)
        if path:
            found.append(path)
    seen, unique = set(), []
    for path in found:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def find_python(chosen: str = "", blender_python: str | None = None) -> tuple[str, tuple[int, int]]:
    """The Python to build the venv with: ``chosen`` when given (it must be 3.10-3.12), else the first candidate
    that is. TaskError lists what was tried."""
    wanted = ", ".join(f"{a}.{b}" for a, b in SUPPORTED_PYTHONS)
    if chosen:
        version = python_version(chosen)
        if version not in SUPPORTED_PYTHONS:
            raise TaskError(f"the chosen Python {chosen} is {version[0]}.{version[1]}; the server needs Python "
                            f"{wanted} (torch has no wheels for others): pick another one in the preferences")
        return chosen, version
    tried = []
    for path in candidate_pythons(blender_python):
        try:
            version = python_version(path)
        except TaskError as e:
            tried.append(f"{path}: {e}")
            continue
        if version in SUPPORTED_PYTHONS:
            return path, version
        tried.append(f"{path}: Python {version[0]}.{version[1]}")
    raise TaskError(f"no usable Python found (the server needs {wanted} with venv and ensurepip). Tried: "
                    + ("; ".join(tried) or "nothing on PATH")
                    + ". Install one (e.g. python3.11 and python3.11-venv) and pick it as Install Python")


def nvidia_gpu(timeout_s: float = 10.0) -> str:
    """The first NVIDIA GPU's name per ``nvidia-smi``, or '' when there is none (or no driver)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return ""
    try:
        result = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                                timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    names = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    return names[0] if result.returncode == 0 and names else ""


def reachable(url: str, timeout_s: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout_s):
            return True
    except Exception:  # any failure (DNS, refused, TLS, HTTP error) means: do not send pip there
        return False


def torch_index_args(variant: str, platform: str = sys.platform, probe=reachable) -> tuple[list[str], str]:
    """pip arguments that select the right torch build → (args, a sentence for the log).

    CPU: PyTorch's CPU index when it answers (PyPI's Linux wheels would pull GBs of CUDA libraries), else the
    package index as configured. CUDA: PyPI's Linux wheels are CUDA builds; on Windows PyTorch's CUDA index.
    """
    if variant == "cpu" and platform.startswith("linux"):
        if probe(TORCH_CPU_INDEX + "/"):
            return ["--index-url", TORCH_CPU_INDEX], f"CPU build of torch from {TORCH_CPU_INDEX}"
        return [], f"{TORCH_CPU_INDEX} does not answer: torch comes from the configured package index"
    if variant == "cuda" and platform.startswith("win"):
        return ["--extra-index-url", TORCH_CUDA_INDEX], f"CUDA build of torch from {TORCH_CUDA_INDEX}"
    return [], f"{variant.upper()} build of torch from the package index"


def check_free_space(folder: str | os.PathLike, need_bytes: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < need_bytes:
        raise TaskError(f"not enough free disk space in {folder}: the server env needs about "
                        f"{need_bytes / 2**30:.1f} GB, {free / 2**30:.1f} GB are free; free some space and retry")


def explain_pip_failure(lines: list[str], what: str) -> str:
    text = "\n".join(lines)
    if "No space left on device" in text:
        return f"pip ran out of disk space while installing {what}; free some space and retry"
    if any(marker in text for marker in _NETWORK_ERRORS):
        hint = next((line.strip() for line in reversed(lines) if line.startswith("ERROR")), "")
        return (f"could not download {what}: the package index is not reachable or does not have it ({hint}). Check "
                f"the internet connection, or set an index in Pip Options (e.g. --index-url URL, --find-links DIR)")
    last = [line for line in lines if line.strip()][-3:]
    return f"pip failed while installing {what}: " + " | ".join(last)


def clean_env() -> dict[str, str]:
    """The environment for the server env's processes: self-contained, so no PYTHONPATH/PYTHONHOME from the shell
    or Blender (another checkout on the path would make pip think the server is installed, and the server import
    code that is not the env's)."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME",
                                                                          "PYTHONSTARTUP", "VIRTUAL_ENV")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONUNBUFFERED="1", PYTHONNOUSERSITE="1")
    return env


def read_pointer(root: str | os.PathLike) -> dict:
    """The env in use ({'python': ..., 'env': ...}), or {} when none is installed (or its python is gone)."""
    try:
        pointer = json.loads((Path(root) / POINTER_NAME).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(pointer, dict) or not os.path.isfile(str(pointer.get("python", ""))):
        return {}
    return pointer


def installed_python(root: str | os.PathLike) -> str:
    return read_pointer(root).get("python", "")


def _write_pointer(root: Path, pointer: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{POINTER_NAME}.", dir=root)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(pointer, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, root / POINTER_NAME)


def venv_python(env_dir: Path) -> Path:
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def remove_unused_envs(root: str | os.PathLike, keep: Iterable[str] = ()) -> list[str]:
    """Delete every env but the one in use and those holding a python in ``keep`` (a server still running)."""
    root = Path(root)
    current = read_pointer(root).get("env")
    keep_real = {os.path.realpath(p) for p in keep if p}
    removed = []
    for env_dir in sorted((root / ENVS_DIR).glob("*")):
        if env_dir.name == current or os.path.realpath(venv_python(env_dir)) in keep_real:
            continue
        shutil.rmtree(env_dir, ignore_errors=True)
        removed.append(env_dir.name)
    return removed


@dataclass
class InstallOptions:
    root: Path  # the extension's user folder
    wheel: Path  # the server wheel shipped in the extension
    python: str = ""  # '' = find one
    blender_python: str | None = None  # sys.executable in Blender
    # auto: cuda with an NVIDIA GPU, else cpu | cuda | cpu (torch's CPU build + Qwen) | none (the CPU
    # decomposer only: no torch, no Qwen; the smallest env)
    torch_variant: str = "auto"
    pip_options: str = ""  # extra pip arguments, shell-quoted (an index URL, --find-links, a proxy)
    need_free_bytes: int | None = None  # default from NEED_FREE_BYTES
    # → pythons of running servers: their envs are not deleted (asked again after the swap)
    keep_pythons: Callable[[], set[str]] = field(default=lambda: set())


class ServerInstall(BackgroundTask):
    """``ServerInstall(InstallOptions(...)).start()``; ``snapshot().result`` holds the new python on success."""

    name = "install"

    def __init__(self, options: InstallOptions) -> None:
        options.root = Path(options.root)
        super().__init__(log_path=options.root / LOG_NAME)
        self.options = options
        self.env_dir: Path | None = None

    def run(self) -> dict:
        options = self.options
        root = options.root
        # 1. What to install with: a Python, the wheel, the torch build
        self.set_stage("finding Python", 0.01)
        if not options.wheel or not Path(options.wheel).is_file():
            raise TaskError(f"the server package is missing from the extension ({options.wheel}); reinstall the "
                            f"extension from a zip built by scripts/build_extension.py")
        python, version = find_python(options.python, options.blender_python)
        self.log(f"using Python {version[0]}.{version[1]} at {python}")
        variant = options.torch_variant
        if variant == "auto":
            gpu = nvidia_gpu()
            variant = "cuda" if gpu else "cpu"
            self.log(f"NVIDIA GPU: {gpu}: torch's CUDA build" if gpu else
                     "no NVIDIA GPU (nvidia-smi): torch's CPU build (Torch: None installs the CPU decomposer alone)")
        if variant not in VARIANTS:
            raise TaskError(f"unknown torch build {variant!r}; choose auto, cuda, cpu or none")
        torch_build, extras = VARIANTS[variant]
        # 2. Room on disk, leftovers of an interrupted install
        self.set_stage("checking disk space", 0.02)
        (root / ENVS_DIR).mkdir(parents=True, exist_ok=True)
        removed = remove_unused_envs(root, options.keep_pythons())
        if removed:
            self.log(f"removed unused envs: {', '.join(removed)}")
        check_free_space(root, options.need_free_bytes or NEED_FREE_BYTES[variant])
        # 3. A new venv beside the one in use
        self.set_stage("creating the venv", 0.03)
        self.env_dir = root / ENVS_DIR / f"env-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        code, lines = self.run_process([python, "-m", "venv", str(self.env_dir)], env=clean_env())
        if code != 0:
            raise TaskError(f"could not create a venv with {python}: {' | '.join(lines[-3:])}")
        env_python = str(venv_python(self.env_dir))
        user_args = shlex.split(options.pip_options)
        pip = [env_python, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]
        # 4. torch first, with the index that has the right build
        pinned = []
        if torch_build:
            index_args, why = torch_index_args(torch_build)
            self.log(why)
            self._pip(pip + index_args + user_args + [TORCH_REQUIREMENT], "torch", 0.05, 0.55)
            pinned = [TORCH_REQUIREMENT]
        # 5. The server and the rest of its dependencies, torch held at the same pin
        wheel = str(options.wheel) + (f"[{extras}]" if extras else "")
        self._pip(pip + user_args + [wheel] + pinned, "the Strata server", 0.55 if torch_build else 0.05, 0.93)
        # 6. Does it run?
        self.set_stage("checking the new server", 0.94)
        check = ("import inference_server, inference_server.app, inference_server.backends.cpu; "
                 + ("import torch, diffusers; " if torch_build else "")
                 + "print('strata', inference_server.__version__)")
        code, lines = self.run_process([env_python, "-c", check], env=clean_env(), cwd=str(self.env_dir))
        if code != 0:
            raise TaskError("the new server env does not import: " + " | ".join(lines[-3:]))
        # 7. Swap: from here on the add-on starts this env's server
        self.set_stage("switching to the new server", 0.98)
        pointer = {"python": env_python, "env": self.env_dir.name, "torch": variant, "python_version":
                   f"{version[0]}.{version[1]}", "installed_at": time.time(),
                   "server": next((line for line in reversed(lines) if line.startswith("strata ")), "strata")}
        self.check_canceled()
        _write_pointer(root, pointer)
        self.env_dir = None  # in use now: no cleanup of it from here on
        removed = remove_unused_envs(root, options.keep_pythons())
        if removed:
            self.log(f"removed the previous env(s): {', '.join(removed)}")
        return pointer

    def _pip(self, argv: list[str], what: str, start: float, end: float) -> None:
        self.set_stage(f"installing {what}", start)
        seen = [0]

        def on_line(line: str) -> None:
            # pip prints one "Collecting"/"Downloading"/"Installing" line per package: enough for a moving bar
            # that never claims to be done before pip is.
            if re.match(r"^\s*(Collecting|Downloading|Using cached|Requirement already satisfied|Installing)", line):
                seen[0] += 1
                done = 1.0 - 1.0 / (1.0 + seen[0] / 12.0)
                self.set_progress(start + (end - start) * done, stage=f"installing {what}: {line.strip()[:80]}")

        code, lines = self.run_process(argv, on_line, env=clean_env())
        if code != 0:
            raise TaskError(explain_pip_failure(lines, what))
        self.set_progress(end)

    def cleanup(self, failed: bool) -> None:
        if self.env_dir is not None:
            shutil.rmtree(self.env_dir, ignore_errors=True)
            self.log(f"removed the unfinished env {self.env_dir.name}; the previous server stays in use")
            self.env_dir = None


__all__ = ["InstallOptions", "clean_env", "ServerInstall", "find_python", "installed_python", "nvidia_gpu",
           "read_pointer",
           "remove_unused_envs", "server_wheels", "torch_index_args", "check_free_space"]
