# SPDX-License-Identifier: GPL-3.0-or-later
"""VRAM tiers of the qwen backend: which weight formats and placement fit the GPU (and host RAM) an artist owns.

``choose_tier(requested, machine)`` is plain Python over a ``Machine`` (free VRAM, total and available RAM, compute
capability), so it is tested on given numbers; ``probe_machine()`` reads the real ones. The decision is made before
anything is loaded, and a machine where nothing fits gets a sentence that says what is needed.

==== ======================================================================= ======== ========
tier transformer / text encoder / placement                                  free     RAM
                                                                             VRAM GiB avail GiB
==== ======================================================================= ======== ========
80   bf16 / bf16, both resident (the ``exact`` preset and friends)             58       6
24   8-bit (fp8 rowwise on compute capability ≥ 8.9, else int8 weight-only)    21       27
     / 4-bit text encoder; the two take turns on the GPU
16   4-bit (NF4) / 8-bit text encoder; the two take turns on the GPU            14.7     22
12   4-bit (NF4), blocks that do not fit stream from pinned host RAM /         9.5      18
     4-bit text encoder; turns
8    as 12, about three quarters of the blocks streamed                        6.5      18
==== ======================================================================= ======== ========

Sizes (real model, GiB): transformer bf16 38.1, fp8/int8 19.1, NF4 9.9; Qwen2.5-VL-7B text encoder bf16 15.4, int8
8.3, NF4 5.2 (its 1 GiB token embedding stays bf16, its caption head int8). "Free VRAM" is what the largest
component needs on the card plus working memory (``WORKING_GIB``, 4.5: activations at 1024 px × 4 layers, the VAE,
dequantization buffers; the streaming tiers keep that room by streaming more blocks). "RAM": taking turns, both
models keep a pinned copy in host RAM (the transformer's copy makes leaving the card free of copies), held to the
byte in registered arenas (``qwen_weights.HostArena``), plus about 2.5 GiB for the process (CUDA, libraries,
compiled code). Measured on an H200 (``scripts/bench_gpu.py --tiers``, peak VmHWM, which includes the pinned pages):
24 GB tier 26.6 GiB with 24.1 GiB of copies, compiled; 12 and 8 GB tiers 16.7 GiB with 14.9 GiB of copies, eager.
The 16 GB tier's 22 keeps room over its 18.1 GiB of copies + 2.5 (measured: 20.6 GiB, compiled).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field

from ..errors import InvalidInput, ModelUnavailable

logger = logging.getLogger(__name__)

GIB = 1024**3
VRAM_CHOICES = ("auto", "80", "24", "16", "12", "8")
# Compute capability from which fp8 GEMMs run (Ada: RTX 40xx / L40; Hopper: H100/H200).
FP8_MIN_COMPUTE_CAPABILITY = (8, 9)

# Real-model component sizes (GiB) used to size the tiers and the streamed transformer's resident part.
TRANSFORMER_BLOCKS = 60
TRANSFORMER_GIB = {"bf16": 38.1, "fp8": 19.1, "int8": 19.1, "nf4": 9.9}
TEXT_ENCODER_GIB = {"bf16": 15.4, "int8": 8.3, "nf4": 5.2}
# Working memory of a 1024 px × 4 layers job: activations, dequantization buffers, the VAE's one-layer-at-a-time
# decode. Measured on an H200 (16 GB tier, NF4): peak 1.7 GiB over the placed models at 640 × 4, 4.2 at 1024 × 4;
# with 2.0 here the 12 and 8 GB tiers ran out of memory at 1024 × 4.
WORKING_GIB = 4.5


class TierDoesNotFit(ModelUnavailable):
    """The chosen (or every) tier needs more free VRAM or RAM than the machine has; nothing was loaded."""


@dataclass(frozen=True)
class Machine:
    """What the tier depends on. VRAM in GiB free on the card the server uses; RAM in GiB."""

    free_vram_gib: float
    total_vram_gib: float
    total_ram_gib: float
    available_ram_gib: float
    compute_capability: tuple[int, int]
    gpu_name: str = "GPU"


@dataclass(frozen=True)
class TierSpec:
    name: str
    transformer_bits: int  # 16, 8 or 4
    text_encoder_bits: int
    min_free_vram_gib: float
    min_available_ram_gib: float
    # The text encoder and the transformer take turns on the GPU (the text encoder captions and encodes first).
    swap_models: bool
    # Transformer blocks that do not fit stay in pinned host RAM and stream to the GPU for each pass.
    stream_blocks: bool


TIERS: dict[str, TierSpec] = {
    "80": TierSpec("80", 16, 16, 58.0, 6.0, swap_models=False, stream_blocks=False),
    "24": TierSpec("24", 8, 4, 21.0, 27.0, swap_models=True, stream_blocks=False),
    "16": TierSpec("16", 4, 8, 14.7, 22.0, swap_models=True, stream_blocks=False),
    "12": TierSpec("12", 4, 4, 9.5, 18.0, swap_models=True, stream_blocks=True),
    "8": TierSpec("8", 4, 4, 6.5, 18.0, swap_models=True, stream_blocks=True),
}
SMALLEST_TIER = "8"


@dataclass
class TierPlan:
    """The chosen tier, the formats it implies on this card, and why; shown in /v1/health, manifests, the add-on."""

    tier: str
    transformer_format: str  # bf16 | fp8 | int8 | nf4 | gguf
    text_encoder_format: str  # bf16 | int8 | nf4
    swap_models: bool
    stream_blocks: bool
    requested: str
    free_vram_gib: float
    available_ram_gib: float
    compute_capability: tuple[int, int]
    reason: str
    notes: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        """One line for people: "16 GB tier: 4-bit transformer (nf4), 8-bit text encoder (int8); 15.1 GiB free"."""
        parts = [_format_label(self.transformer_format, "transformer"),
                 _format_label(self.text_encoder_format, "text encoder")]
        if self.swap_models:
            parts.append("text encoder on the GPU only while captioning/encoding")
        if self.stream_blocks:
            parts.append("blocks that do not fit stream from host RAM")
        return f"{self.tier} GB tier: {', '.join(parts)}; {self.free_vram_gib:.1f} GiB free"

    def to_dict(self) -> dict:
        info = asdict(self)
        info["compute_capability"] = ".".join(str(part) for part in self.compute_capability)
        info["summary"] = self.summary
        return info


def _format_label(fmt: str, component: str) -> str:
    bits = {"bf16": "bf16", "fp8": "8-bit", "int8": "8-bit", "nf4": "4-bit", "gguf": "GGUF"}[fmt]
    return f"{bits} {component}" + ("" if fmt in ("bf16", "gguf") else f" ({fmt})")


def transformer_format_for(bits: int, compute_capability: tuple[int, int]) -> str:
    """8-bit is fp8 (weights and activations, fast GEMMs) only where the card computes in fp8; int8 weight-only
    (dequantized to bf16 before each GEMM) elsewhere, e.g. RTX 30xx and A-series cards."""
    if bits == 16:
        return "bf16"
    if bits == 8:
        return "fp8" if tuple(compute_capability) >= FP8_MIN_COMPUTE_CAPABILITY else "int8"
    return "nf4"


def text_encoder_format_for(bits: int) -> str:
    # Weight-only on every card: captioning is memory-bound, so fp8 compute would buy nothing there.
    return {16: "bf16", 8: "int8", 4: "nf4"}[bits]


def check_vram_choice(requested: str) -> str:
    requested = str(requested).strip().lower().removesuffix("gb").strip()
    if requested not in VRAM_CHOICES:
        raise InvalidInput(f"vram must be one of {', '.join(VRAM_CHOICES)} (GB of the GPU), got {requested!r}")
    return requested


def _fits(spec: TierSpec, machine: Machine) -> str | None:
    """Why ``spec`` does not fit ``machine``; None when it does."""
    if machine.free_vram_gib < spec.min_free_vram_gib:
        return (f"the {spec.name} GB tier needs {spec.min_free_vram_gib:g} GiB of free VRAM; "
                f"{machine.gpu_name} has {machine.free_vram_gib:.1f} GiB free")
    if machine.available_ram_gib < spec.min_available_ram_gib:
        return (f"the {spec.name} GB tier needs {spec.min_available_ram_gib:g} GiB of available RAM; "
                f"this machine has {machine.available_ram_gib:.1f} GiB available of {machine.total_ram_gib:.1f} GiB")
    return None


def choose_tier(requested: str, machine: Machine, transformer_file_format: str | None = None) -> TierPlan:
    """The tier for ``requested`` ("auto" or a tier name) on ``machine``; raises before anything is loaded.

    transformer_file_format: "gguf" when the transformer comes from a GGUF file (its own quantization); the tier
    then decides the text encoder and placement only.
    """
    requested = check_vram_choice(requested)
    if requested == "auto":
        misses: list[str] = []
        for spec in TIERS.values():
            problem = _fits(spec, machine)
            if problem is None:
                reason = (f"auto: {machine.free_vram_gib:.1f} GiB free VRAM, {machine.available_ram_gib:.1f} GiB "
                          f"available RAM, compute capability {machine.compute_capability[0]}."
                          f"{machine.compute_capability[1]}")
                if misses:
                    reason += f"; larger tiers do not fit ({misses[0]})"
                return _plan(spec, machine, requested, reason, transformer_file_format)
            misses.append(problem)
        smallest = TIERS[SMALLEST_TIER]
        if machine.free_vram_gib < smallest.min_free_vram_gib:
            message = (f"{machine.gpu_name} has {machine.free_vram_gib:.1f} GiB free; the smallest tier "
                       f"({smallest.name} GB) needs {smallest.min_free_vram_gib:g} GiB free VRAM")
        else:
            message = (f"this machine has {machine.available_ram_gib:.1f} GiB of RAM available; the smallest tier "
                       f"({smallest.name} GB) needs {smallest.min_available_ram_gib:g} GiB")
        raise TierDoesNotFit(message + "; close other programs using the GPU, or use --backend cpu")
    spec = TIERS[requested]
    problem = _fits(spec, machine)
    if problem is not None:
        smaller = [name for name, other in TIERS.items() if _fits(other, machine) is None]
        hint = f"use --vram {smaller[0]} (or auto)" if smaller else "no tier fits this machine; use --backend cpu"
        raise TierDoesNotFit(f"{problem}; {hint}")
    return _plan(spec, machine, requested, f"asked for --vram {requested}", transformer_file_format)


def plan_for(tier: str, machine: Machine, file_format: str | None, reason: str) -> TierPlan:
    """The plan of ``tier`` without checking that it fits (the CPU, where there is no VRAM to fit)."""
    tier = check_vram_choice(tier)
    if tier == "auto":
        raise InvalidInput("plan_for needs a tier name, not 'auto'")
    return _plan(TIERS[tier], machine, tier, reason, file_format)


def _plan(spec: TierSpec, machine: Machine, requested: str, reason: str, file_format: str | None) -> TierPlan:
    transformer = file_format or transformer_format_for(spec.transformer_bits, machine.compute_capability)
    notes = []
    if spec.transformer_bits == 8 and transformer == "int8":
        notes.append(f"compute capability {machine.compute_capability[0]}.{machine.compute_capability[1]} has no "
                     "fp8 GEMMs (needs 8.9+): int8 weight-only transformer")
    return TierPlan(
        tier=spec.name,
        transformer_format=transformer,
        text_encoder_format=text_encoder_format_for(spec.text_encoder_bits),
        swap_models=spec.swap_models,
        stream_blocks=spec.stream_blocks,
        requested=requested,
        free_vram_gib=round(machine.free_vram_gib, 2),
        available_ram_gib=round(machine.available_ram_gib, 2),
        compute_capability=(machine.compute_capability[0], machine.compute_capability[1]),
        reason=reason,
        notes=notes,
    )


def resident_block_count(free_vram_gib: float, transformer_gib: float, blocks: int = TRANSFORMER_BLOCKS) -> int:
    """How many transformer blocks stay on the GPU when the rest stream (one streamed block's room is kept)."""
    per_block = transformer_gib / blocks
    room = free_vram_gib - WORKING_GIB - per_block
    return max(0, min(blocks, int(room // per_block)))


# ------------------------------------------------------------------------------------------------- probing
def host_ram_gib() -> tuple[float, float]:
    """(total, available) RAM in GiB from /proc/meminfo (Linux); (0, 0) where it cannot be read."""
    values: dict[str, float] = {}
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                if key in ("MemTotal", "MemAvailable"):
                    values[key] = int(rest.split()[0]) * 1024 / GIB
    except OSError:
        pass
    if "MemTotal" not in values:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
            return total, total
        except (ValueError, OSError, AttributeError):
            return 0.0, 0.0
    return values["MemTotal"], values.get("MemAvailable", values["MemTotal"])


def probe_machine(device: str = "cuda") -> Machine:
    """The real numbers of the CUDA device the backend uses (``torch.cuda.mem_get_info``), and host RAM."""
    import torch

    index = torch.device(device).index
    index = torch.cuda.current_device() if index is None else index
    free_bytes, total_bytes = torch.cuda.mem_get_info(index)
    properties = torch.cuda.get_device_properties(index)
    total_ram, available_ram = host_ram_gib()
    return Machine(
        free_vram_gib=free_bytes / GIB,
        total_vram_gib=total_bytes / GIB,
        total_ram_gib=total_ram,
        available_ram_gib=available_ram,
        compute_capability=(properties.major, properties.minor),
        gpu_name=f"this GPU ({properties.name})",
    )
