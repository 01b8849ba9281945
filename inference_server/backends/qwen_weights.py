# SPDX-License-Identifier: GPL-3.0-or-later
"""Weight formats of the qwen backend besides the plain bf16 pipeline: GGUF transformer files, quantization on load
from the bf16 safetensors (streamed one shard and one block at a time), transformer blocks streamed from pinned host
RAM, and the text encoder and transformer taking turns on the GPU.

Quantized formats (torchao):
- ``fp8``: ``Float8DynamicActivationFloat8WeightConfig(PerRow())``, fp8 GEMMs; compute capability ≥ 8.9 only.
- ``int8``: ``Int8WeightOnlyConfig()``, per-row int8 weights, converted to the compute dtype inside each GEMM; any
  card, and the CPU.
- ``nf4``: torchao's ``NF4Tensor`` (QLoRA's 4-bit NormalFloat, blocks of 64 with 8-bit block scales), dequantized
  to the compute dtype before each GEMM; any card, and the CPU. At diffusion's sequence lengths (≈10k tokens) the
  GEMMs are compute-bound, so dequantize-then-GEMM costs little over bf16, unlike 4-bit kernels made for decoding.
Only ``nn.Linear`` layers are quantized; norms, embeddings and the model's small in/out projections stay as loaded.
"""

from __future__ import annotations

import json
import logging
import os
import re
from contextlib import contextmanager
from pathlib import Path

from ..errors import InvalidInput, ModelUnavailable
from . import DOWNLOAD_HINT

logger = logging.getLogger(__name__)

QUANTIZED_FORMATS = ("fp8", "int8", "nf4")
BLOCK_KEY = re.compile(r"^transformer_blocks\.(\d+)\.")
# NF4 block sizes of QLoRA; smaller ones only where a (test-sized) weight is not a multiple of these.
NF4_BLOCK = 64
NF4_SCALER_BLOCK = 256


# ------------------------------------------------------------------------------------------------ quantizing
def _torchao():
    try:
        import torchao  # noqa: F401
    except ImportError as error:
        raise ModelUnavailable(f"quantized formats need torchao ({error}); pip install 'strata[gpu]'") from error


def _nf4_block_sizes(numel: int) -> tuple[int, int] | None:
    for block in (NF4_BLOCK, 32, 16):
        if numel % block:
            continue
        blocks = numel // block
        for scaler in (NF4_SCALER_BLOCK, 128, 64, 32, 16, 8):
            if blocks % scaler == 0:
                return block, scaler
    return None


def quantize_linears(module, fmt: str) -> int:
    """Quantize every ``nn.Linear`` weight under ``module`` in place to ``fmt``; returns how many were quantized.

    Runs where the weights are: quantize on the GPU (fast), then move the block wherever it lives.
    """
    import torch

    if fmt not in QUANTIZED_FORMATS:
        raise InvalidInput(f"weight format must be one of {', '.join(QUANTIZED_FORMATS)}, got {fmt!r}")
    _torchao()
    # Already quantized ones (a block loaded quantized, then handed over again) are left alone.
    linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear) and _is_plain(m.weight)]
    if fmt == "nf4":
        from torchao.quantization.quantize_.workflows.nf4.nf4_tensor import to_nf4

        count = 0
        for linear in linears:
            sizes = _nf4_block_sizes(linear.weight.numel())
            if sizes is None:
                continue
            linear.weight = torch.nn.Parameter(to_nf4(linear.weight.detach(), *sizes), requires_grad=False)
            count += 1
        return count
    from torchao.quantization import quantize_

    if fmt == "fp8":
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow

        config = Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())
    else:
        from torchao.quantization import Int8WeightOnlyConfig

        config = Int8WeightOnlyConfig()
    quantize_(module, config,
              filter_fn=lambda child, fqn: isinstance(child, torch.nn.Linear) and _is_plain(child.weight))
    return len(linears)


def _is_plain(weight) -> bool:
    import torch

    return type(weight.data) is torch.Tensor


def module_bytes(module) -> int:
    """Bytes the module's parameters and buffers hold (quantized tensors count their packed data)."""
    total = 0
    for tensor in list(module.parameters()) + list(module.buffers()):
        names = getattr(tensor, "__tensor_flatten__", None)
        if names is not None:
            inner, _ = tensor.__tensor_flatten__()
            total += sum(getattr(tensor, name).numel() * getattr(tensor, name).element_size() for name in inner)
        else:
            total += tensor.numel() * tensor.element_size()
    return total


# ------------------------------------------------------------------------------------------ streamed loading
def model_folder(model_id: str, subfolder: str) -> Path:
    """The local folder of ``model_id``'s ``subfolder`` (a local checkout, or the Hub snapshot, downloaded if
    needed)."""
    if os.path.isdir(model_id):
        folder = Path(model_id) / subfolder
    else:
        from huggingface_hub import snapshot_download

        try:
            snapshot = snapshot_download(model_id, allow_patterns=[f"{subfolder}/*", "model_index.json"])
            folder = Path(snapshot) / subfolder
        except Exception as error:  # noqa: BLE001 - offline, missing, refused: one message
            raise ModelUnavailable(f"cannot get {model_id}/{subfolder} ({error}); {DOWNLOAD_HINT}") from error
    if not folder.is_dir():
        raise ModelUnavailable(f"weights not found at {folder}; {DOWNLOAD_HINT}")
    return folder


def safetensors_shards(folder: Path) -> list[Path]:
    """The safetensors files of one component folder, in index order (sharded) or the single file."""
    indexes = sorted(folder.glob("*.safetensors.index.json"))
    if indexes:
        weight_map = json.loads(indexes[0].read_text())["weight_map"]
        names = list(dict.fromkeys(weight_map.values()))
        missing = [name for name in names if not (folder / name).is_file()]
        if missing:
            raise ModelUnavailable(f"{folder} lacks {', '.join(missing)} (an interrupted download?); {DOWNLOAD_HINT}")
        return [folder / name for name in names]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelUnavailable(f"no .safetensors weights in {folder}; {DOWNLOAD_HINT}")
    return files


def _stream_shards(model, folder: Path, device, dtype, group_of, group_done, what: str, rename=None) -> None:
    """Fill ``model`` (built on the meta device) from ``folder``'s safetensors, one shard at a time, each tensor
    straight onto ``device`` in ``dtype``. ``group_of(name)`` names the group a tensor belongs to (a block, a layer)
    or None; ``group_done(group)`` runs as soon as a group's last tensor has landed (to quantize it and move it where
    it lives), so the device holds one unquantized group at a time and host RAM one shard's pages at most.
    ``rename`` maps a file's tensor names to the model's (a checkpoint saved in an older layout)."""
    from accelerate.utils import set_module_tensor_to_device
    from safetensors import safe_open

    expected = set(model.state_dict())
    pending: dict = {}
    for name in expected:
        group = group_of(name)
        if group is not None:
            pending.setdefault(group, set()).add(name)
    loaded: set[str] = set()
    for shard in safetensors_shards(folder):
        try:
            handle_context = safe_open(str(shard), framework="pt", device="cpu")
        except Exception as error:  # noqa: BLE001 - a truncated or foreign file
            raise ModelUnavailable(f"cannot read {shard} ({error}); download it again. {DOWNLOAD_HINT}") from error
        with handle_context as handle:
            for key in handle.keys():
                name = rename(key) if rename else key
                if name not in expected:
                    raise ModelUnavailable(f"{shard} holds {key!r}, which a {what} does not have: {folder} is not "
                                           f"this model's {what}")
                set_module_tensor_to_device(model, name, device, value=handle.get_tensor(key), dtype=dtype)
                loaded.add(name)
                group = group_of(name)
                if group is None:
                    continue
                pending[group].discard(name)
                if not pending[group]:
                    group_done(group)
    missing = expected - loaded
    if missing:
        example = sorted(missing)[0]
        raise ModelUnavailable(f"{folder} lacks {len(missing)} of the {what}'s {len(expected)} tensors "
                               f"(e.g. {example!r}); an interrupted download? {DOWNLOAD_HINT}")


def load_transformer_quantized(model_id: str, fmt: str, device, dtype, keep_on_host=None):
    """``QwenImageTransformer2DModel`` from bf16 safetensors, quantized to ``fmt`` block by block as it loads.

    The model is built on the meta device; each shard is opened (memory-mapped) in turn and each tensor is placed on
    ``device`` in ``dtype``; a block is quantized there as soon as its last tensor lands, so host RAM holds one
    shard's pages at most and the GPU never holds more than one unquantized block. ``keep_on_host(index)`` says
    which blocks then move to (pinned) host memory to be streamed later. ``fmt`` "bf16" loads without quantizing.
    """
    import torch
    from accelerate import init_empty_weights
    from diffusers import QwenImageTransformer2DModel

    folder = model_folder(model_id, "transformer")
    config = QwenImageTransformer2DModel.load_config(str(folder))
    with init_empty_weights():
        transformer = QwenImageTransformer2DModel.from_config(config)
    host_blocks: list[int] = []
    pin = torch.device(device).type == "cuda"

    def block_done(index: int) -> None:
        block = transformer.transformer_blocks[index]
        if fmt != "bf16":
            quantize_linears(block, fmt)
        if keep_on_host is not None and keep_on_host(index):
            move_to_host(block, pin=pin)
            host_blocks.append(index)

    def block_of(name: str):
        match = BLOCK_KEY.match(name)
        return int(match.group(1)) if match else None

    _stream_shards(transformer, folder, device, dtype, block_of, block_done, "transformer")
    transformer.eval()
    logger.info("transformer loaded as %s; %d blocks on the host", fmt, len(host_blocks))
    return transformer


# Qwen2.5-VL checkpoints saved before transformers 5 (the Hub's text_encoder/ folders) name the language model
# "model.*" and the vision tower "visual.*" (transformers' own conversion mapping for Qwen2-VL).
_TEXT_ENCODER_RENAMES = ((re.compile(r"^visual\."), "model.visual."),
                         (re.compile(r"^model\.(?!language_model\.|visual\.)"), "model.language_model."))
_TEXT_ENCODER_LAYER = re.compile(r"^model\.language_model\.layers\.(\d+)\.")


def _text_encoder_name(key: str) -> str:
    for pattern, replacement in _TEXT_ENCODER_RENAMES:
        if pattern.match(key):
            return pattern.sub(replacement, key, count=1)
    return key


def _text_encoder_part(name: str):
    match = _TEXT_ENCODER_LAYER.match(name)
    if match:
        return int(match.group(1))
    if name.startswith("model.visual."):
        return "visual"
    if name.startswith("lm_head."):
        return "lm_head"
    return None


def load_text_encoder_quantized(model_id: str, fmt: str, device, dtype, on_host: bool = True):
    """The Qwen2.5-VL text encoder, its linear layers quantized to ``fmt`` as it loads.

    Streamed like the transformer: each decoder layer (and the vision tower, and the caption head) lands on
    ``device`` in bf16, is quantized there and, when ``on_host`` (the models take turns on the GPU), moves at once to
    a pinned host arena; so neither host RAM nor the GPU ever holds the whole bf16 model.
    """
    import torch
    from accelerate import init_empty_weights
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    folder = model_folder(model_id, "text_encoder")
    config = Qwen2_5_VLConfig.from_pretrained(str(folder))
    with init_empty_weights():
        text_encoder = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
    if (folder / "generation_config.json").is_file():
        text_encoder.generation_config = GenerationConfig.from_pretrained(str(folder))
    pin = torch.device(device).type == "cuda"
    parts: dict[int | str, object] = dict(enumerate(text_encoder.model.language_model.layers))
    parts.update(visual=text_encoder.model.visual, lm_head=text_encoder.lm_head)

    def part_done(part) -> None:
        module = parts[part]
        if fmt != "bf16":
            # The caption head (152,064 × 3,584) stays 8-bit: NF4 dequantizes through int64 indices, 4 GiB for it.
            quantize_linears(module, "int8" if part == "lm_head" else fmt)
        if on_host:
            move_to_host(module, pin=pin)

    _stream_shards(text_encoder, folder, device, dtype, _text_encoder_part, part_done, "text encoder",
                   rename=_text_encoder_name)
    if on_host:
        move_to_host(text_encoder, pin=pin)  # what is left: the token embedding, the final norm
    text_encoder.eval()
    return text_encoder


def quantize_text_encoder(text_encoder, fmt: str, device) -> None:
    """Quantize the text encoder's decoder layers, vision tower and caption head to ``fmt``, one part at a time on
    ``device``; each part ends where it started."""
    if fmt == "bf16":
        return
    parts = [(layer, fmt) for layer in text_encoder.model.language_model.layers]
    # The caption head (152,064 × 3,584) stays 8-bit: NF4 dequantizes through int64 indices, 4 GiB for this one.
    parts += [(text_encoder.model.visual, fmt), (text_encoder.lm_head, "int8")]
    for part, part_fmt in parts:
        home = next(part.parameters()).device
        part.to(device)
        quantize_linears(part, part_fmt)
        part.to(home)


# --------------------------------------------------------------------------------------------------- GGUF
def gguf_problem(path: str | os.PathLike, expected_names: set[str]) -> str | None:
    """Why ``path`` is not a loadable GGUF of this transformer (truncated, not GGUF, another model); None if fine."""
    path = Path(path)
    if not path.is_file():
        return f"{path} does not exist"
    try:
        import gguf
    except ImportError as error:
        return f"reading GGUF files needs the gguf package ({error}); pip install 'strata[gguf]'"
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as error:  # noqa: BLE001 - the reader raises ValueError, IndexError, struct errors ...
        size = path.stat().st_size
        return (f"{path} is not a readable GGUF file ({type(error).__name__}: {error}); {size:,} bytes: a truncated "
                "download? Download it again")
    size = path.stat().st_size
    for tensor in reader.tensors:
        end = int(tensor.data_offset) + int(tensor.n_bytes)
        if end > size:
            return (f"{path} is truncated: tensor {tensor.name!r} ends at byte {end:,}, the file has {size:,}; "
                    "download it again")
    names = {tensor.name for tensor in reader.tensors}
    arch_field = reader.fields.get("general.architecture")
    arch = None
    if arch_field is not None:
        try:
            arch = bytes(arch_field.parts[arch_field.data[0]]).decode("utf-8", "replace")
        except (IndexError, TypeError):
            arch = None
    missing = expected_names - names
    unknown = names - expected_names
    if missing or unknown:
        detail = []
        if missing:
            detail.append(f"{len(missing)} of the {len(expected_names)} tensors a Qwen-Image-Layered transformer "
                          f"needs are missing (e.g. {sorted(missing)[0]!r})")
        if unknown:
            detail.append(f"{len(unknown)} tensors are not this model's (e.g. {sorted(unknown)[0]!r})")
        return (f"{path} is not a Qwen-Image-Layered transformer GGUF"
                + (f" (architecture {arch!r})" if arch else "") + ": " + "; ".join(detail)
                + ". Use a GGUF made from Qwen/Qwen-Image-Layered's transformer (a plain Qwen-Image GGUF lacks the "
                  "layered model's extra time embedding)")
    return None


def load_transformer_gguf(path: str | os.PathLike, model_id: str, compute_dtype):
    """The transformer from a GGUF file through diffusers' single-file loader, its config from ``model_id``."""
    import torch
    from accelerate import init_empty_weights
    from diffusers import GGUFQuantizationConfig, QwenImageTransformer2DModel

    folder = model_folder(model_id, "transformer")
    config = QwenImageTransformer2DModel.load_config(str(folder))
    with init_empty_weights():
        expected = set(QwenImageTransformer2DModel.from_config(config).state_dict())
    problem = gguf_problem(path, expected)
    if problem:
        raise ModelUnavailable(problem)
    # Shapes: a GGUF of another size (say a tiny test model against the real config) fails in the loader.
    try:
        with _quiet_torch_warnings():
            transformer = QwenImageTransformer2DModel.from_single_file(
                str(path), quantization_config=GGUFQuantizationConfig(compute_dtype=compute_dtype),
                config=str(folder.parent), subfolder="transformer", torch_dtype=compute_dtype)
    except (ValueError, RuntimeError) as error:
        raise ModelUnavailable(f"{path} does not fit the transformer config of {model_id}: {error}") from error
    transformer.eval()
    return transformer.to(torch.device("cpu"))


@contextmanager
def _quiet_torch_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


# ---------------------------------------------------------------------------------------------- placement
# Host copies live in arenas: one plain (malloc'd) buffer per module, its tensors laid out back to back, then
# page-locked with cudaHostRegister. ``pin_memory()`` / ``torch.empty(pin_memory=True)`` go through PyTorch's caching
# host allocator, which rounds every allocation up to a power of two (a 37.7 MB fp8 weight pins 64 MB), and measured
# 1.6-1.7 times the model's bytes in host RAM; an arena holds the bytes exactly.
ARENA_ALIGN = 512


class HostArena:
    """Host copies of tensors (CUDA or CPU, torchao subclasses included) in one buffer, pinned when ``pin``.

    ``copies`` are the new host tensors in order; they stay valid (pageable) even after the arena is dropped, which
    only unpins the buffer."""

    def __init__(self, tensors, pin: bool) -> None:
        import torch

        leaves: list = []
        rebuilds = [_flatten_leaves(tensor, leaves) for tensor in tensors]
        offsets, total = [], 0
        for leaf in leaves:
            offsets.append(total)
            total += -(-_storage_span(leaf) // ARENA_ALIGN) * ARENA_ALIGN
        self.nbytes = total
        # Untouched pages of a large malloc are not resident: host RAM grows as the copies land, not before.
        raw = torch.empty(total + 4096, dtype=torch.uint8)
        skip = (-raw.data_ptr()) % 4096
        self.buffer = raw[skip:skip + total] if total else raw[:0]
        # Pinned before the copies land, so copies from the GPU run at DMA speed.
        self.pinned = bool(pin and total) and _register(self.buffer.data_ptr(), total)
        if self.pinned:
            import weakref

            weakref.finalize(self, _unregister, self.buffer.data_ptr())
        host_leaves = []
        for leaf, offset in zip(leaves, offsets, strict=True):
            span = _storage_span(leaf)
            host = self.buffer[offset:offset + span].view(leaf.dtype).as_strided(leaf.shape, leaf.stride())
            host.copy_(leaf)
            host_leaves.append(host)
        iterator = iter(host_leaves)
        self.copies = [rebuild(iterator) for rebuild in rebuilds]


def _storage_span(tensor) -> int:
    """Bytes from the tensor's first element to past its last (its strides kept)."""
    if tensor.numel() == 0:
        return 0
    last = sum((size - 1) * stride for size, stride in zip(tensor.shape, tensor.stride(), strict=True))
    return (last + 1) * tensor.element_size()


def _flatten_leaves(tensor, leaves: list):
    """Append ``tensor``'s plain tensors to ``leaves``; returns a function that rebuilds it from the host copies."""
    import torch

    flatten = getattr(tensor, "__tensor_flatten__", None)
    if flatten is not None:
        names, context = flatten()
        parts = [(name, _flatten_leaves(getattr(tensor, name), leaves)) for name in names]
        kind, size, stride = type(tensor), tensor.size(), tensor.stride()
        return lambda host: kind.__tensor_unflatten__({name: part(host) for name, part in parts}, context, size,
                                                      stride)
    if type(tensor) is not torch.Tensor:
        # A Parameter subclass over plain data (diffusers' GGUFParameter): copy the data; _as_parameter rewraps it.
        tensor = tensor.as_subclass(torch.Tensor)
    leaves.append(tensor.detach())
    return lambda host: next(host)


def _register(pointer: int, nbytes: int) -> bool:
    import torch

    try:
        # Flag 1, cudaHostRegisterPortable: pinned for every CUDA context (a second GPU's too).
        code = int(torch.cuda.cudart().cudaHostRegister(pointer, nbytes, 1))
    except (RuntimeError, AttributeError) as error:
        logger.warning("cannot pin %.2f GiB of host memory (%s); copies to the GPU will be slower", nbytes / 1024**3,
                       error)
        return False
    if code != 0:
        # Out of lockable memory (ulimit -l, a container's limit): keep going with pageable memory.
        logger.warning("cudaHostRegister of %.2f GiB failed (error %d); copies to the GPU will be slower",
                       nbytes / 1024**3, code)
        return False
    return True


def _unregister(pointer: int) -> None:
    import torch

    try:
        torch.cuda.cudart().cudaHostUnregister(pointer)
    except Exception:  # noqa: BLE001 - at interpreter exit CUDA may be gone already
        pass


def move_to_host(module, pin: bool) -> int:
    """Move ``module``'s parameters into one host arena (pinned when ``pin``) and its buffers to the CPU, straight
    from wherever they are (a GPU block goes to host RAM without a pageable copy in between); returns its bytes."""
    entries = [(owner, name, param) for owner in module.modules()
               for name, param in owner.named_parameters(recurse=False) if _arena_of(param) is None]
    arena = _into_arena(entries, pin)
    for owner in module.modules():
        for name, buffer in list(owner.named_buffers(recurse=False)):
            if buffer is not None:
                owner._buffers[name] = buffer.to("cpu")
    return arena.nbytes


def _into_arena(entries: list, pin: bool) -> HostArena:
    """Replace each ``(owner, name, param)`` by its copy in one new arena."""
    arena = HostArena([param for _, _, param in entries], pin=pin)
    for (owner, name, param), host in zip(entries, arena.copies, strict=True):
        moved = _as_parameter(host, param)
        # The parameter keeps its arena (and so the pinning) alive; dropping the model unpins and frees it.
        moved._strata_arena = arena
        setattr(owner, name, moved)
    return arena


def _arena_of(param) -> HostArena | None:
    arena = getattr(param, "_strata_arena", None)
    return arena if isinstance(arena, HostArena) else None


class PinnedHome:
    """Modules whose weights live in pinned host RAM and visit the device: ``onload()`` copies them there
    (non-blocking, from pinned memory), ``offload()`` just points the modules back at the host copies, which never
    change, so leaving the card costs no copy. Buffers (small: rotary tables) stay on the device. Weights already in
    a host arena (``move_to_host``) are used as they are; the others get one arena per module."""

    def __init__(self, modules, device) -> None:
        import torch

        self.device = torch.device(device)
        self.entries: list = []
        arenas: list[HostArena | None] = []
        pin = self.device.type == "cuda"
        for module in modules:
            for owner in module.modules():
                for name, buffer in list(owner.named_buffers(recurse=False)):
                    if buffer is not None:
                        owner._buffers[name] = buffer.to(self.device)
            params = [(owner, name, param) for owner in module.modules()
                      for name, param in owner.named_parameters(recurse=False)]
            fresh = [entry for entry in params if _arena_of(entry[2]) is None]
            if fresh:
                _into_arena(fresh, pin)
            arenas += [_arena_of(getattr(owner, name)) for owner, name, _ in params]
            self.entries += [(owner, name, getattr(owner, name)) for owner, name, _ in params]
        self.arenas = list({id(arena): arena for arena in arenas if arena is not None}.values())
        self.on_device = False

    def onload(self) -> None:
        for owner, name, host in self.entries:
            setattr(owner, name, _parameter_on(host, self.device))
        self.on_device = True

    def offload(self) -> None:
        for owner, name, host in self.entries:
            setattr(owner, name, host)
        self.on_device = False

    def host_bytes(self) -> int:
        return sum(arena.nbytes for arena in self.arenas)

    def pinned_bytes(self) -> int:
        return sum(arena.nbytes for arena in self.arenas if arena.pinned)


class BlockStreamer:
    """Transformer blocks kept in pinned host RAM, copied to the GPU just before their forward and dropped after.

    Copies go on the compute stream, non-blocking from pinned memory: the CPU never waits, the GPU copies a block
    then computes it.
    """

    def __init__(self, blocks, indices, device) -> None:
        self.streamed = list(indices)
        self.homes = {index: PinnedHome([blocks[index]], device) for index in self.streamed}
        self.handles = []
        for index, home in self.homes.items():
            self.handles.append(blocks[index].register_forward_pre_hook(lambda module, args, home=home: home.onload()))
            self.handles.append(blocks[index].register_forward_hook(
                lambda module, args, output, home=home: (home.offload(), output)[1]))

    @property
    def host_params(self) -> dict[int, list]:
        return {index: home.entries for index, home in self.homes.items()}

    def host_bytes(self) -> int:
        return sum(home.host_bytes() for home in self.homes.values())

    def pinned_bytes(self) -> int:
        return sum(home.pinned_bytes() for home in self.homes.values())


def _as_parameter(tensor, like):
    """A Parameter holding ``tensor``; GGUF weights keep their quantization type (diffusers' GGUFParameter)."""
    import torch

    if isinstance(tensor, torch.nn.Parameter):
        return tensor
    quant_type = getattr(like, "quant_type", None)
    if quant_type is not None:
        from diffusers.quantizers.gguf.utils import GGUFParameter

        return GGUFParameter(tensor, quant_type=quant_type)
    return torch.nn.Parameter(tensor, requires_grad=False)


def _parameter_on(host, device):
    return _as_parameter(host.to(device, non_blocking=True), host)


def resident_modules(transformer, streamed: set[int]):
    """The transformer's parts that live on the GPU: everything but the streamed blocks."""
    for name, child in transformer.named_children():
        if name == "transformer_blocks":
            yield from (block for index, block in enumerate(child) if index not in streamed)
        else:
            yield child


class ModelSwap:
    """The transformer's resident part and the text encoder take turns on the GPU. Both keep a pinned host copy, so
    ``text_encoder_turn()`` drops the transformer's device weights (no copy back), copies the text encoder in, and
    afterwards drops it and copies the transformer back: host-to-device copies only."""

    def __init__(self, pipe, device, streamed: set[int] | None = None) -> None:
        import torch

        self.pipe = pipe
        self.device = torch.device(device)
        self.streamed = streamed or set()
        self.turn_seconds = 0.0
        self.transformer_home = PinnedHome(list(self._resident_modules()), self.device)
        self.text_encoder_home = PinnedHome([pipe.text_encoder], self.device)

    def _resident_modules(self):
        return resident_modules(self.pipe.transformer, self.streamed)

    def host_bytes(self) -> int:
        return self.transformer_home.host_bytes() + self.text_encoder_home.host_bytes()

    def pinned_bytes(self) -> int:
        return self.transformer_home.pinned_bytes() + self.text_encoder_home.pinned_bytes()

    @contextmanager
    def text_encoder_turn(self):
        """Seconds spent moving models land in ``self.turn_seconds`` (reported as the job's "model_turns")."""
        import time

        started = time.perf_counter()
        self.transformer_home.offload()
        _empty_cache()
        self.text_encoder_home.onload()
        _synchronize(self.device)
        self.turn_seconds = time.perf_counter() - started
        try:
            yield
        finally:
            started = time.perf_counter()
            self.text_encoder_home.offload()
            _empty_cache()
            self.transformer_home.onload()
            _synchronize(self.device)
            self.turn_seconds += time.perf_counter() - started


def _synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _empty_cache() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------- a tier's pipeline
class TieredPlacement:
    """Where a tier's pipeline lives: which blocks stream, whether the models take turns; reported in describe()."""

    def __init__(self, swap: ModelSwap | None, streamer: BlockStreamer | None, resident_blocks: int) -> None:
        self.swap = swap
        self.streamer = streamer
        self.resident_blocks = resident_blocks

    def describe(self) -> dict:
        info: dict[str, float] = {"resident_blocks": self.resident_blocks,
                                  "streamed_blocks": len(self.streamer.streamed) if self.streamer else 0}
        parts = [part for part in (self.streamer, self.swap) if part is not None]
        # Host copies: the streamed blocks, and both models' copies when they take turns; pinned: the part of them
        # that cudaHostRegister locked (all of it on CUDA unless the OS refused).
        info["host_copies_gib"] = round(sum(part.host_bytes() for part in parts) / 1024**3, 2)
        info["pinned_host_gib"] = round(sum(part.pinned_bytes() for part in parts) / 1024**3, 2)
        return info


def load_tiered_pipeline(model_id: str, plan, device, dtype, transformer_path: str | None = None,
                         free_vram_gib: float | None = None, **components):
    """A ``QwenImageLayeredPipeline`` built for ``plan`` (a ``TierPlan``), placed on ``device``; returns
    ``(pipe, TieredPlacement)``. ``components`` are passed to ``from_pretrained`` (e.g. a processor)."""
    import torch
    from diffusers import QwenImageLayeredPipeline

    from .qwen_tiers import TRANSFORMER_GIB

    device = torch.device(device)
    # 1. Transformer: a GGUF file, or the bf16 safetensors quantized as they load.
    if transformer_path:
        transformer = load_transformer_gguf(transformer_path, model_id, dtype)
        transformer_gib = os.path.getsize(transformer_path) / 1024**3
    else:
        transformer = None
        transformer_gib = TRANSFORMER_GIB[plan.transformer_format]
    blocks = (transformer.config.num_layers if transformer is not None else
              json.loads((model_folder(model_id, "transformer") / "config.json").read_text()).get("num_layers", 60))
    streamed = streamed_blocks(plan, blocks, transformer_gib, free_vram_gib)
    if transformer is None:
        transformer = load_transformer_quantized(model_id, plan.transformer_format, device, dtype,
                                                 keep_on_host=lambda index: index in streamed)
    # 2. Text encoder: quantized on load; it lives in host RAM when the models take turns.
    text_encoder = load_text_encoder_quantized(model_id, plan.text_encoder_format, device, dtype,
                                               on_host=plan.swap_models)
    pipe = QwenImageLayeredPipeline.from_pretrained(model_id, transformer=transformer, text_encoder=text_encoder,
                                                    dtype=dtype, **components)
    return pipe, place_tiered(pipe, plan, device, streamed)


def place_tiered(pipe, plan, device, streamed: set[int]) -> TieredPlacement:
    """Move ``pipe``'s parts where ``plan`` wants them (the benchmark calls this on a pipeline it built)."""
    import torch

    device = torch.device(device)
    transformer = pipe.transformer
    # Inference only; the host copies are rebuilt as requires_grad=False parameters, and compiled blocks guard on it.
    transformer.requires_grad_(False)
    pipe.text_encoder.requires_grad_(False)
    streamer = BlockStreamer(transformer.transformer_blocks, sorted(streamed), device) if streamed else None
    pipe.vae.to(device)
    swap = None
    if plan.swap_models:
        swap = ModelSwap(pipe, device, streamed)
        _empty_cache()
        swap.transformer_home.onload()
    else:
        pipe.text_encoder.to(device)
        for module in resident_modules(transformer, streamed):
            module.to(device)
    return TieredPlacement(swap, streamer, len(transformer.transformer_blocks) - len(streamed))


def compile_tier_blocks(transformer, placement: TieredPlacement, backend: str = "inductor") -> bool:
    """Regional compile of the transformer's blocks under a tier; returns whether it compiles. Resident blocks
    compile whole; a streamed block compiles its ``forward`` only, so the hooks that bring its weights in and drop
    them run outside the graph. All blocks share one compiled graph (the weights are its inputs). For NF4 this fuses
    the 4-bit dequantization into one kernel per weight (eager dequantization cost the 16 GB tier about half its
    step time); for fp8 the dynamic activation scaling fuses into the GEMMs. Inductor needs Triton on CUDA (not in
    PyTorch's Windows wheels): without it the tier runs eager, as it did before, rather than failing its first job."""
    import importlib.util

    import torch

    if backend == "inductor" and importlib.util.find_spec("triton") is None:
        logger.warning("Triton is not installed: the tier's quantized blocks run uncompiled (slower steps)")
        return False
    streamed = set(placement.streamer.streamed) if placement.streamer else set()
    for index, block in enumerate(transformer.transformer_blocks):
        if index in streamed:
            block.forward = torch.compile(block.forward, fullgraph=True, backend=backend)
        else:
            block.compile(fullgraph=True, backend=backend)
    return True


def streamed_blocks(plan, blocks: int, transformer_gib: float, free_vram_gib: float | None = None) -> set[int]:
    """Which block indices stream from host RAM under ``plan`` (the last ones; none unless the tier streams)."""
    from .qwen_tiers import TRANSFORMER_BLOCKS, resident_block_count

    if not plan.stream_blocks:
        return set()
    resident = resident_block_count(free_vram_gib if free_vram_gib is not None else plan.free_vram_gib,
                                    transformer_gib)
    # Sized on the real model's share per block, so a test-sized model streams as many blocks as the real one.
    resident = min(blocks, round(resident * blocks / TRANSFORMER_BLOCKS))
    return set(range(resident, blocks))


def prepare_given_pipeline(pipe, plan, device) -> TieredPlacement:
    """Quantize a ready pipeline (the GPU benchmark's random-weight one) as ``plan`` says, block by block on
    ``device``, then place it: the same formats and placement as loading from files."""
    import torch

    from .qwen_tiers import TRANSFORMER_GIB

    device = torch.device(device)
    blocks = pipe.transformer.transformer_blocks
    streamed = streamed_blocks(plan, len(blocks), TRANSFORMER_GIB[plan.transformer_format])
    if plan.transformer_format in QUANTIZED_FORMATS:
        for block in blocks:
            home = next(block.parameters()).device
            block.to(device)
            quantize_linears(block, plan.transformer_format)
            block.to(home)
    quantize_text_encoder(pipe.text_encoder, plan.text_encoder_format, device)
    return place_tiered(pipe, plan, device, streamed)
