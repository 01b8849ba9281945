# SPDX-License-Identifier: GPL-3.0-or-later
"""Host RAM of the VRAM tiers, on CPU: the host copies hold a model's bytes exactly (one arena per module, never
PyTorch's power-of-two pinned allocator), quantized weights survive the copy, the text encoder streams from its
safetensors one decoder layer at a time (the whole bf16 model never sits in host RAM), and compiled blocks still
stream their weights in."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("torchao")

from test_qwen_backend import _load_builder  # noqa: E402

from inference_server.backends import qwen_weights  # noqa: E402
from inference_server.backends.qwen_tiers import Machine  # noqa: E402
from inference_server.backends.qwen_weights import ARENA_ALIGN, HostArena, move_to_host  # noqa: E402
from inference_server.errors import ModelUnavailable  # noqa: E402
from inference_server.params import DecomposeParams  # noqa: E402

CARD_8GB = Machine(free_vram_gib=7.4, total_vram_gib=8.0, total_ram_gib=32.0, available_ram_gib=24.0,
                   compute_capability=(8, 6))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    os.environ["HF_HUB_OFFLINE"] = "1"
    return _load_builder().build_tiny_pipeline(tmp_path_factory.mktemp("tiny-qwen-host"))


def test_the_arena_holds_exactly_the_bytes_and_keeps_each_layout():
    # One fp8 block weight is 3072 × 12288 bytes = 37.7 MB: PyTorch's pinned allocator would lock 64 MB for it.
    sources = [torch.randn(37, dtype=torch.bfloat16), torch.randn(5, 3).t(), torch.arange(1000, dtype=torch.int8),
               torch.randn(0)]
    arena = HostArena(sources, pin=False)
    spans = [37 * 2, 15 * 4, 1000, 0]
    assert sum(spans) <= arena.nbytes <= sum(spans) + len(spans) * ARENA_ALIGN
    for source, copy in zip(sources, arena.copies, strict=True):
        assert copy.dtype == source.dtype and copy.shape == source.shape and copy.stride() == source.stride()
        assert torch.equal(copy, source)
        assert copy.untyped_storage().data_ptr() == arena.buffer.untyped_storage().data_ptr()
    sources[0].zero_()
    assert arena.copies[0].abs().sum() > 0  # a copy, not a view of the source


@pytest.mark.parametrize("fmt", ["nf4", "int8"])
def test_quantized_weights_compute_the_same_from_their_host_copies(fmt):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.GELU(), torch.nn.Linear(512, 128))
    qwen_weights.quantize_linears(model, fmt)
    inputs = torch.randn(4, 256)
    with torch.inference_mode():
        expected = model(inputs)
    held = move_to_host(model, pin=False)
    weights = [model[0].weight, model[2].weight]
    assert all(qwen_weights._arena_of(weight) is not None for weight in weights)
    assert type(weights[0]).__name__ in ("NF4Tensor", "Int8Tensor") or fmt == "nf4"
    # Packed sizes: 4-bit (plus block scales) or 8-bit (plus row scales) of 2 × 131,072 weights, and the biases.
    assert held < 2 * 131072 * (0.6 if fmt == "nf4" else 1.1) + 8 * ARENA_ALIGN + 640 * 4
    with torch.inference_mode():
        assert torch.equal(model(inputs), expected)
    # Moving again copies nothing: the weights are in an arena already.
    assert move_to_host(model, pin=False) == 0


def test_the_text_encoder_streams_layer_by_layer_and_matches_a_whole_load(tiny_dir, monkeypatch):
    from transformers import Qwen2_5_VLForConditionalGeneration

    # What is loaded but not yet in a host arena, each time a part moves there: never more than one part's worth
    # beside the token embedding and final norm (which move last).
    unmoved: list[int] = []
    real_move = qwen_weights.move_to_host

    def spy(module, pin):
        model = spy.model
        if model is not None:
            unmoved.append(sum(p.numel() for p in model.parameters()
                               if p.device.type != "meta" and qwen_weights._arena_of(p) is None))
        return real_move(module, pin)

    spy.model = None
    real_stream = qwen_weights._stream_shards

    def remember(model, *args, **kwargs):
        spy.model = model
        return real_stream(model, *args, **kwargs)

    monkeypatch.setattr(qwen_weights, "move_to_host", spy)
    monkeypatch.setattr(qwen_weights, "_stream_shards", remember)
    streamed = qwen_weights.load_text_encoder_quantized(str(tiny_dir), "int8", "cpu", torch.float32)
    whole = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(tiny_dir / "text_encoder"), dtype=torch.float32)
    qwen_weights.quantize_text_encoder(whole, "int8", "cpu")

    layers = streamed.model.language_model.layers
    assert len(unmoved) == len(layers) + 3  # each layer, the vision tower, the caption head, then the rest
    language = streamed.model.language_model
    rest = language.embed_tokens.weight.numel() + language.norm.weight.numel()
    largest_part = max(sum(p.numel() for p in part.parameters())
                       for part in [*layers, streamed.model.visual, streamed.lm_head])
    assert max(unmoved) <= rest + largest_part
    assert all(qwen_weights._arena_of(p) is not None for p in streamed.parameters())
    assert type(layers[0].mlp.down_proj.weight).__name__ == "Int8Tensor"
    tokens = torch.tensor([[5, 17, 42, 99, 3]])
    with torch.inference_mode():
        assert torch.equal(streamed(input_ids=tokens).logits, whole(input_ids=tokens).logits)


def test_a_text_encoder_folder_of_another_model_names_the_tensor(tiny_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "other"
    (folder / "text_encoder").mkdir(parents=True)
    for path in (tiny_dir / "text_encoder").iterdir():
        if path.suffix != ".safetensors":
            (folder / "text_encoder" / path.name).write_bytes(path.read_bytes())
    tensors = load_file(str(tiny_dir / "text_encoder" / "model.safetensors"))
    tensors["encoder.block.0.layer.0.SelfAttention.q.weight"] = torch.zeros(4, 4)
    save_file(tensors, str(folder / "text_encoder" / "model.safetensors"))
    with pytest.raises(ModelUnavailable, match="encoder.block.0.layer.0.SelfAttention.q.weight.*not this model's "
                                               "text encoder"):
        qwen_weights.load_text_encoder_quantized(str(folder), "int8", "cpu", torch.float32)


def test_compiled_blocks_still_stream_their_weights_in(tiny_dir):
    from inference_server.backends.qwen import QwenLayeredBackend

    rgba = np.zeros((48, 64, 4), np.uint8)
    rgba[..., 0] = np.linspace(40, 200, 64, dtype=np.uint8)[None, :]
    rgba[10:30, 20:50, :3] = 30
    rgba[..., 3] = 255
    image = Image.fromarray(rgba, "RGBA")
    params = DecomposeParams(layers=1, num_inference_steps=2, true_cfg_scale=1.0, prompt="a box", seed=3,
                             preset="stock").validate()
    backend = QwenLayeredBackend(model_id=str(tiny_dir), device="cpu", vram="8", machine=CARD_8GB)
    eager = backend.decompose(image, params)
    placement = backend._placement
    assert placement.describe()["streamed_blocks"] == 1
    assert placement.streamer.host_bytes() > 0 and "host_copies_gib" in placement.describe()
    # The product compiles on CUDA only; the "eager" backend runs the same dynamo capture on CPU.
    qwen_weights.compile_tier_blocks(backend.pipe.transformer, placement, backend="eager")
    compiled = backend.decompose(image, params)
    for before, after in zip(eager.layers, compiled.layers, strict=True):
        assert np.abs(before.rgba.astype(int) - after.rgba.astype(int)).max() <= 1
    streamed_block = backend.pipe.transformer.transformer_blocks[1]
    for owner, name, host in placement.streamer.host_params[1]:
        assert getattr(owner, name) is host
    assert streamed_block.attn.to_q.weight.device.type == "cpu"


def test_without_triton_a_tier_runs_uncompiled_instead_of_failing(monkeypatch, caplog):
    import importlib.util
    import types

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "triton" else real_find_spec(name, *args))
    block = torch.nn.Linear(4, 4)
    transformer = types.SimpleNamespace(transformer_blocks=[block])
    placement = qwen_weights.TieredPlacement(None, None, 1)
    assert qwen_weights.compile_tier_blocks(transformer, placement, "inductor") is False
    assert "Triton is not installed" in caplog.text
    assert getattr(block, "_compiled_call_impl", None) is None
    # Backends that need no Triton still compile.
    assert qwen_weights.compile_tier_blocks(transformer, placement, "eager") is True
