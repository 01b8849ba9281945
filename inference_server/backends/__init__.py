# SPDX-License-Identifier: GPL-3.0-or-later
"""Backend registry. Backends import their heavy dependencies (torch, diffusers) lazily, inside the backend."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from ..errors import InvalidInput
from .base import Backend, CancelToken, ProgressCallback, no_progress

logger = logging.getLogger(__name__)

DEFAULT_QWEN_MODEL = "Qwen/Qwen-Image-Layered"
DOWNLOAD_HINT = (
    "download with `huggingface-cli download Qwen/Qwen-Image-Layered` or set STRATA_QWEN_MODEL to a local folder"
)


def qwen_model_id() -> str:
    """Hub id or local folder of the Qwen-Image-Layered weights (env ``STRATA_QWEN_MODEL``)."""
    return os.environ.get("STRATA_QWEN_MODEL", DEFAULT_QWEN_MODEL)


def qwen_weights_problem(model_id: str) -> str | None:
    """Why the weights are not on disk (a local folder or a Hub id in the Hugging Face cache); None when they are."""
    if os.path.isdir(model_id):
        if not os.path.isfile(os.path.join(model_id, "model_index.json")):
            return f"weights not found at {model_id} (no model_index.json there); {DOWNLOAD_HINT}"
        return None
    # A Hub id is exactly "owner/name"; anything else (absolute, relative, deeper) is a folder that is missing.
    if os.path.isabs(model_id) or model_id.startswith((".", "~")) or model_id.count("/") != 1:
        return f"weights not found at {model_id} (no such folder); {DOWNLOAD_HINT}"
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError as error:  # pragma: no cover - huggingface_hub comes with diffusers
        return f"huggingface_hub is not installed ({error}); pip install 'strata[qwen]'"
    if not isinstance(try_to_load_from_cache(model_id, "model_index.json"), str):
        return f"weights not found at {model_id} (not a folder, not in the Hugging Face cache); {DOWNLOAD_HINT}"
    return None


def qwen_unavailable_reason(model_id: str | None = None) -> str | None:
    """Why the qwen backend cannot run here (no torch, no usable CUDA GPU, no weights on disk); None when it can."""
    try:
        import torch
    except ImportError:
        return "torch is not installed in the server env (pip install 'strata[qwen]')"
    if not torch.cuda.is_available():
        if torch.version.cuda is None:
            return f"this torch build ({torch.__version__}) has no CUDA support"
        return "torch sees no CUDA GPU (no NVIDIA driver, or CUDA_VISIBLE_DEVICES hides the GPUs)"
    return qwen_weights_problem(model_id or qwen_model_id())


def qwen_available(model_id: str | None = None) -> bool:
    """True when CUDA is usable and the weights are on disk (a local folder or the Hugging Face cache)."""
    return qwen_unavailable_reason(model_id) is None


@dataclass(frozen=True)
class BackendChoice:
    """The backend to run ("cpu" or "qwen") and, when ``auto`` settled for the CPU, why the GPU model was not used."""

    name: str
    auto_fallback: str | None = None

    def notes(self) -> list[str]:
        """The job notes (manifest, job status) that say why ``auto`` ran the CPU decomposer, if it did."""
        if not self.auto_fallback:
            return []
        return [f"backend auto runs the CPU decomposer, not Qwen-Image-Layered: {self.auto_fallback}"]


def choose_backend(name: str, model_id: str | None = None, gpus: object = None, *, log_fallback: bool = True
                   ) -> BackendChoice:
    """Resolve ``auto``: the GPU model when it can run here, else the CPU decomposer with the reason (also logged,
    unless ``log_fallback`` is false: the CLI prints the job's notes on stderr already, so it would say it twice)."""
    if name == "auto":
        if gpus:  # naming GPUs asks for the GPU backend: no quiet fall-back to the CPU decomposer
            return BackendChoice("qwen")
        reason = qwen_unavailable_reason(model_id)
        if reason is None:
            return BackendChoice("qwen")
        if log_fallback:
            logger.warning("backend auto: running the CPU decomposer, not Qwen-Image-Layered: %s", reason)
        return BackendChoice("cpu", auto_fallback=reason)
    if name not in ("cpu", "qwen"):
        raise InvalidInput(f"backend must be auto, cpu or qwen, got {name!r}")
    return BackendChoice(name)


def resolve_backend_name(name: str, model_id: str | None = None) -> str:
    return choose_backend(name, model_id).name


def create_backend(name: str, **options) -> Backend:
    """Instantiate a backend by name ("auto" resolves first). Options go to the backend's constructor."""
    gpus = options.pop("gpus", None)
    # Device names instead of GPU indices ("cpu" twice runs the multi-GPU code over gloo, as the tests do).
    devices = options.pop("devices", None)
    parallel_mode = options.pop("parallel_mode", "cfg")
    name = choose_backend(name, options.get("model_id"), gpus).name
    if name == "qwen":
        from .qwen import QwenLayeredBackend

        if devices and len(devices) > 1:
            from .qwen_parallel import ParallelQwenBackend

            return ParallelQwenBackend(devices, mode=parallel_mode, **options)
        if gpus:
            from .qwen_parallel import ParallelQwenBackend, all_gpus, cuda_devices, parse_gpus

            devices = cuda_devices(all_gpus() if gpus == "all" else parse_gpus(gpus))
            if len(devices) > 1:
                return ParallelQwenBackend(devices, mode=parallel_mode, **options)
            options["device"] = devices[0]
        return QwenLayeredBackend(**options)
    from .cpu import CpuDecomposer

    return CpuDecomposer()


__all__ = [
    "Backend",
    "CancelToken",
    "ProgressCallback",
    "no_progress",
    "create_backend",
    "resolve_backend_name",
    "choose_backend",
    "BackendChoice",
    "qwen_available",
    "qwen_unavailable_reason",
    "qwen_model_id",
    "qwen_weights_problem",
    "DEFAULT_QWEN_MODEL",
    "DOWNLOAD_HINT",
]
