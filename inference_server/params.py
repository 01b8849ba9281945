# SPDX-License-Identifier: GPL-3.0-or-later
"""Decomposition parameters: one validated dataclass shared by the CLI, the HTTP API and the backends."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidInput

MIN_LAYERS = 1
MAX_LAYERS = 16
AUTO_LAYERS = "auto"  # ``layers`` value that lets the backend choose the count (MIN_LAYERS–MAX_LAYERS)
RESOLUTIONS = (640, 1024)
BACKENDS = ("auto", "cpu", "qwen")
PRESETS = ("stock", "exact", "fast", "lowvram")
OFFLOAD_MODES = ("none", "model", "sequential", "group")


@dataclass
class DecomposeParams:
    """What a user can ask of a decomposition. Defaults follow the Qwen-Image-Layered model card."""

    layers: int | str = 4  # or "auto": as many as the image has (see refine.decompose_refined)
    backend: str = "auto"
    num_inference_steps: int = 50
    resolution: int = 640
    true_cfg_scale: float = 4.0
    # The model card passes a single space: true CFG only runs when a negative prompt is given.
    negative_prompt: str = " "
    # Empty prompt: the pipeline captions the image with its VL text encoder.
    prompt: str = ""
    cfg_normalize: bool = True
    use_en_prompt: bool = True
    seed: int | None = None
    preset: str = "exact"
    offload: str = "none"
    # Also estimate depth per layer (``inference_server.depth``): depth_XX.png beside each layer.
    depth: bool = False
    # Recursive decomposition: where the input came from (filled by the server, kept in the manifest).
    parent_job: str | None = None
    parent_layer: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> DecomposeParams:
        if self.layers == AUTO_LAYERS:
            pass
        elif isinstance(self.layers, bool) or not isinstance(self.layers, int):
            raise InvalidInput(f"layers must be an integer or \"auto\", got {self.layers!r}")
        elif not MIN_LAYERS <= self.layers <= MAX_LAYERS:
            raise InvalidInput(f"layers must be between {MIN_LAYERS} and {MAX_LAYERS}, got {self.layers}")
        if self.backend not in BACKENDS:
            raise InvalidInput(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if isinstance(self.num_inference_steps, bool) or not isinstance(self.num_inference_steps, int):
            raise InvalidInput(f"num_inference_steps must be an integer, got {self.num_inference_steps!r}")
        if not 1 <= self.num_inference_steps <= 200:
            raise InvalidInput(f"num_inference_steps must be between 1 and 200, got {self.num_inference_steps}")
        if self.resolution not in RESOLUTIONS:
            raise InvalidInput(f"resolution must be 640 or 1024 (the model's two buckets), got {self.resolution!r}")
        if not isinstance(self.true_cfg_scale, (int, float)) or isinstance(self.true_cfg_scale, bool):
            raise InvalidInput(f"true_cfg_scale must be a number, got {self.true_cfg_scale!r}")
        if not 0.0 <= float(self.true_cfg_scale) <= 20.0:
            raise InvalidInput(f"true_cfg_scale must be between 0 and 20, got {self.true_cfg_scale}")
        for name in ("prompt", "negative_prompt"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise InvalidInput(f"{name} must be a string, got {type(value).__name__}")
            if len(value) > 2000:
                raise InvalidInput(f"{name} is {len(value)} characters; keep it under 2000")
        if self.seed is not None:
            if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
                raise InvalidInput(f"seed must be an integer in [0, 2^63), got {self.seed!r}")
        if self.preset not in PRESETS:
            raise InvalidInput(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        if self.offload not in OFFLOAD_MODES:
            raise InvalidInput(f"offload must be one of {', '.join(OFFLOAD_MODES)}, got {self.offload!r}")
        for name in ("cfg_normalize", "use_en_prompt", "depth"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidInput(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.parent_job is not None and not isinstance(self.parent_job, str):
            raise InvalidInput(f"parent_job must be a job id string, got {self.parent_job!r}")
        if self.parent_layer is not None and (isinstance(self.parent_layer, bool)
                                              or not isinstance(self.parent_layer, int)):
            raise InvalidInput(f"parent_layer must be an integer layer index, got {self.parent_layer!r}")
        return self

    @property
    def auto_layers(self) -> bool:
        """Whether the backend is to choose the layer count."""
        return self.layers == AUTO_LAYERS

    def layer_count(self, auto_count: int) -> int:
        """The count to work towards: the one asked for, or ``auto_count`` (the backend's choice) for "auto"."""
        return int(auto_count) if self.auto_layers else int(self.layers)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DecomposeParams:
        """Build from user input (JSON or form fields), rejecting names we do not know."""
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidInput(
                f"unknown parameter(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**values).validate()

    def with_layers(self, layers: int | str) -> DecomposeParams:
        """A copy asking for ``layers`` instead."""
        return dataclasses.replace(self, layers=layers).validate()

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if not data["extra"]:
            data.pop("extra")
        return data


# Read by the qwen backend only: a job that ran on the CPU decomposer does not claim them (status and manifest).
QWEN_ONLY_PARAMS = ("num_inference_steps", "resolution", "true_cfg_scale", "negative_prompt", "prompt",
                    "cfg_normalize", "use_en_prompt", "preset", "offload")


def params_that_ran(params: dict[str, Any], backend: str | None) -> dict[str, Any]:
    """``params`` as they apply to ``backend`` ("auto" resolved): the backend that ran, without the settings it
    ignores. Unchanged while the backend is not known yet."""
    if not backend or backend == "auto":
        return dict(params)
    values = dict(params, backend=backend)
    if backend == "cpu":
        for name in QWEN_ONLY_PARAMS:
            values.pop(name, None)
    return values
