"""Backend registry. Backends import their heavy dependencies (torch, diffusers) lazily, inside the backend."""

from __future__ import annotations

import os

from ..errors import InvalidInput
from .base import Backend, CancelToken, ProgressCallback, no_progress

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


def qwen_available(model_id: str | None = None) -> bool:
    """True when CUDA is usable and the weights are on disk (a local folder or the Hugging Face cache)."""
    try:
        import torch
    except ImportError:
        return False
    if not torch.cuda.is_available():
        return False
    return qwen_weights_problem(model_id or qwen_model_id()) is None


def resolve_backend_name(name: str, model_id: str | None = None) -> str:
    if name == "auto":
        return "qwen" if qwen_available(model_id) else "cpu"
    if name not in ("cpu", "qwen"):
        raise InvalidInput(f"backend must be auto, cpu or qwen, got {name!r}")
    return name


def create_backend(name: str, **options) -> Backend:
    """Instantiate a backend by name ("auto" resolves first). Options go to the backend's constructor."""
    gpus = options.pop("gpus", None)
    # Device names instead of GPU indices ("cpu" twice runs the multi-GPU code over gloo, as the tests do).
    devices = options.pop("devices", None)
    parallel_mode = options.pop("parallel_mode", "cfg")
    # Naming GPUs asks for the GPU backend: no quiet fall-back to the CPU decomposer.
    name = "qwen" if gpus and name == "auto" else resolve_backend_name(name, options.get("model_id"))
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
    "qwen_available",
    "qwen_model_id",
    "qwen_weights_problem",
    "DEFAULT_QWEN_MODEL",
    "DOWNLOAD_HINT",
]
