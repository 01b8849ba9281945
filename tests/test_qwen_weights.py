# SPDX-License-Identifier: GPL-3.0-or-later
"""The qwen backend's other weight formats on the tiny random-weight pipeline, on CPU: a GGUF transformer file
through diffusers' GGUF loader, quantization on load (torchao int8 weight-only and NF4), streamed blocks, and the
errors a user gets for a GGUF of another model, a truncated GGUF and a truncated safetensors shard."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("gguf")
pytest.importorskip("torchao")

from test_qwen_backend import _load_builder  # noqa: E402

from inference_server.backends.qwen_tiers import Machine  # noqa: E402
from inference_server.errors import ModelUnavailable  # noqa: E402
from inference_server.params import DecomposeParams  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
# A 16 GB Ampere card in a 32 GB machine: NF4 transformer, int8 text encoder, one model on the "GPU" at a time.
AMPERE_16GB = Machine(free_vram_gib=15.1, total_vram_gib=16.0, total_ram_gib=32.0, available_ram_gib=24.0,
                      compute_capability=(8, 6))
# An 8 GB card: blocks that do not fit stream from host RAM.
CARD_8GB = Machine(free_vram_gib=7.4, total_vram_gib=8.0, total_ram_gib=32.0, available_ram_gib=24.0,
                   compute_capability=(8, 6))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    os.environ["HF_HUB_OFFLINE"] = "1"
    folder = tmp_path_factory.mktemp("tiny-qwen")
    # The script's own CLI, as a user would run it.
    subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "make_tiny_qwen_layered.py"), str(folder), "--gguf"],
                   check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    return folder


@pytest.fixture(scope="module")
def gguf_path(tiny_dir) -> Path:
    return tiny_dir / "transformer-Q8_0.gguf"


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    rgba = np.zeros((64, 96, 4), np.uint8)
    rgba[..., 0] = np.linspace(40, 200, 96, dtype=np.uint8)[None, :]
    rgba[..., 2] = 160
    rgba[20:50, 30:70, :3] = (30, 30, 30)
    rgba[..., 3] = 255
    return Image.fromarray(rgba, "RGBA")


def quick(**overrides) -> DecomposeParams:
    values = dict(layers=2, num_inference_steps=2, true_cfg_scale=1.0, prompt="a dark box in front of a sky", seed=7,
                  preset="stock")
    values.update(overrides)
    return DecomposeParams(**values).validate()


def premultiplied(stack) -> np.ndarray:
    layers = np.stack([layer.rgba for layer in stack.layers]).astype(np.float64)
    layers[..., :3] *= layers[..., 3:4] / 255.0
    return layers


@pytest.fixture(scope="module")
def bf16_stack(tiny_dir, photo):
    from inference_server.backends.qwen import QwenLayeredBackend

    return QwenLayeredBackend(model_id=str(tiny_dir), device="cpu").decompose(photo, quick())


def test_gguf_transformer_decomposes_through_the_qwen_backend(tiny_dir, gguf_path, photo, bf16_stack):
    import gguf
    from diffusers.quantizers.gguf.utils import GGUFParameter

    from inference_server.backends.qwen import QwenLayeredBackend

    backend = QwenLayeredBackend(model_id=str(tiny_dir), device="cpu", transformer_path=str(gguf_path))
    stack = backend.decompose(photo, quick())
    # At the model's working size, as the bf16 folder's: the refine stage brings both to the input's size.
    assert len(stack.layers) == 2 and stack.layers[0].rgba.shape == bf16_stack.layers[0].rgba.shape
    # Loaded by diffusers' GGUF support: Q8_0 weights stay quantized in the model and dequantize per GEMM.
    weights = [p for p in backend.pipe.transformer.parameters() if isinstance(p, GGUFParameter)]
    assert weights and any(p.quant_type == gguf.GGMLQuantizationType.Q8_0 for p in weights)
    info = backend.describe()
    assert info["transformer"] == str(gguf_path) and info["tier"]["transformer_format"] == "gguf"
    assert any("transformer from" in note and "gguf" in note for note in stack.notes)
    # Q8_0 rounding only: the layers a viewer sees stay within a few grey levels of the bf16 folder's.
    assert np.abs(premultiplied(stack) - premultiplied(bf16_stack)).mean() < 2.0


def test_quantized_on_load_nf4_transformer_and_int8_text_encoder(tiny_dir, photo, bf16_stack):
    from torchao.quantization.quantize_.workflows.int8.int8_tensor import Int8Tensor
    from torchao.quantization.quantize_.workflows.nf4.nf4_tensor import NF4Tensor

    from inference_server.backends.qwen import QwenLayeredBackend

    backend = QwenLayeredBackend(model_id=str(tiny_dir), device="cpu", vram="16", machine=AMPERE_16GB)
    events = []
    stack = backend.decompose(photo, quick(prompt=""), progress=lambda *event: events.append(event))
    pipe = backend.pipe
    block = pipe.transformer.transformer_blocks[0]
    assert isinstance(block.attn.to_q.weight, NF4Tensor) and isinstance(block.img_mlp.net[2].weight, NF4Tensor)
    layer = pipe.text_encoder.model.language_model.layers[0]
    assert isinstance(layer.mlp.down_proj.weight, Int8Tensor)
    assert "caption" in {event[0] for event in events}  # the quantized VL model captions too
    info = backend.describe()["tier"]
    assert info["tier"] == "16" and info["transformer_format"] == "nf4" and info["text_encoder_format"] == "int8"
    assert stack.params["vram_tier"] == "16"
    assert any(note.startswith("VRAM tier: 16 GB tier: 4-bit transformer (nf4)") for note in stack.notes)
    for layer_image in stack.layers:
        assert np.isfinite(layer_image.rgba).all()


def test_int8_weight_only_transformer_stays_close_to_bf16(tiny_dir, photo, bf16_stack):
    from inference_server.backends.qwen import QwenLayeredBackend

    # A 24 GB Ampere card: int8 weight-only (no fp8 GEMMs there).
    machine = Machine(free_vram_gib=22.5, total_vram_gib=24.0, total_ram_gib=64.0, available_ram_gib=40.0,
                      compute_capability=(8, 6))
    backend = QwenLayeredBackend(model_id=str(tiny_dir), device="cpu", vram="24", machine=machine)
    stack = backend.decompose(photo, quick())
    assert backend.describe()["tier"]["transformer_format"] == "int8"
    assert np.abs(premultiplied(stack) - premultiplied(bf16_stack)).mean() < 2.0


def test_streamed_blocks_live_in_host_memory_between_passes(tiny_dir, photo):
    from inference_server.backends.qwen import QwenLayeredBackend

    backend = QwenLayeredBackend(model_id=str(tiny_dir), device="cpu", vram="8", machine=CARD_8GB)
    stack = backend.decompose(photo, quick(layers=1))
    assert len(stack.layers) == 1
    placement = backend.describe()["tier"]
    assert placement["streamed_blocks"] == 1 and placement["resident_blocks"] == 1
    streamer = backend._placement.streamer
    # After the job each streamed block holds its host copies again (the device copies were dropped).
    for owner, name, host in streamer.host_params[1]:
        assert getattr(owner, name) is host
    # Out of memory in a tier points at the next smaller one.
    import torch

    from inference_server.errors import OutOfMemory

    backend.tier_plan.tier = "12"
    with pytest.raises(OutOfMemory, match="in the 12 GB tier; restart the server with --vram 8"):
        with backend._oom_as_error("exact", "denoising"):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    backend.tier_plan.tier = "8"
    # The tier fixes formats and placement: a job asking for another preset does not reload the model.
    pipe, events = backend.pipe, []
    backend.decompose(photo, quick(layers=1, preset="exact"), progress=lambda *event: events.append(event))
    assert backend.pipe is pipe and "load" not in {event[0] for event in events}


def test_a_gguf_of_another_model_is_refused_with_what_it_is(tiny_dir, photo, tmp_path):
    import torch

    from inference_server.backends.qwen import QwenLayeredBackend

    llama = _load_builder().write_transformer_gguf(
        {"token_embd.weight": torch.randn(64, 32), "blk.0.attn_q.weight": torch.randn(32, 32),
         "output_norm.weight": torch.ones(32)}, tmp_path / "llama.gguf", arch="llama")
    backend = QwenLayeredBackend(model_id=str(tiny_dir), device="cpu", transformer_path=str(llama))
    with pytest.raises(ModelUnavailable) as error:
        backend.decompose(photo, quick())
    message = str(error.value)
    assert "is not a Qwen-Image-Layered transformer GGUF (architecture 'llama')" in message
    assert "'token_embd.weight'" in message or "'blk.0.attn_q.weight'" in message
    assert backend.describe()["model_loaded"] is False


def test_a_plain_qwen_image_gguf_lacks_the_layered_time_embedding(tiny_dir, photo, tmp_path):
    from diffusers import QwenImageTransformer2DModel

    from inference_server.backends.qwen import QwenLayeredBackend

    state = QwenImageTransformer2DModel.from_pretrained(tiny_dir, subfolder="transformer").state_dict()
    state.pop("time_text_embed.addition_t_embedding.weight")
    path = _load_builder().write_transformer_gguf(state, tmp_path / "qwen-image.gguf")
    backend = QwenLayeredBackend(model_id=str(tiny_dir), device="cpu", transformer_path=str(path))
    with pytest.raises(ModelUnavailable, match="addition_t_embedding.*plain Qwen-Image GGUF lacks"):
        backend.decompose(photo, quick())


def test_a_truncated_gguf_says_so(tiny_dir, gguf_path, photo, tmp_path):
    from inference_server.backends.qwen import QwenLayeredBackend

    data = gguf_path.read_bytes()
    for cut in (len(data) // 2, 200):  # cut inside the tensor data, and inside the header
        truncated = tmp_path / f"cut-{cut}.gguf"
        truncated.write_bytes(data[:cut])
        backend = QwenLayeredBackend(model_id=str(tiny_dir), device="cpu", transformer_path=str(truncated))
        with pytest.raises(ModelUnavailable, match="truncated"):
            backend.decompose(photo, quick())


def test_a_truncated_safetensors_shard_says_which_file(tiny_dir, photo, tmp_path):
    from inference_server.backends.qwen import QwenLayeredBackend

    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_dir, broken)
    shard = broken / "transformer" / "diffusion_pytorch_model.safetensors"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    backend = QwenLayeredBackend(model_id=str(broken), device="cpu", vram="16", machine=AMPERE_16GB)
    with pytest.raises(ModelUnavailable, match="diffusion_pytorch_model.safetensors"):
        backend.decompose(photo, quick())


def test_cli_decompose_with_a_gguf_transformer_and_its_errors(tiny_dir, gguf_path, tmp_path):
    image = tmp_path / "in.png"
    Image.new("RGB", (96, 64), (200, 40, 40)).save(image)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"}
    base = [sys.executable, "-m", "inference_server", "decompose", str(image), "-n", "1", "--steps", "2",
            "--backend", "qwen", "--model", str(tiny_dir), "--prompt", "a red card", "--quiet"]
    done = subprocess.run(base + ["-o", str(tmp_path / "out"), "--transformer", str(gguf_path)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    manifest = (tmp_path / "out" / "manifest.json").read_text()
    assert "GGUF transformer" in manifest and str(gguf_path) in manifest
    missing = subprocess.run(base + ["-o", str(tmp_path / "out2"), "--transformer", str(tmp_path / "nope.gguf")],
                             capture_output=True, text=True, env=env, timeout=300)
    assert missing.returncode == 2 and "nope.gguf: no such file" in missing.stderr
    unknown = subprocess.run(base + ["-o", str(tmp_path / "out3"), "--vram", "10"],
                             capture_output=True, text=True, env=env, timeout=300)
    assert unknown.returncode == 2 and "--vram" in unknown.stderr and "'10'" in unknown.stderr


def test_server_health_names_the_tier_and_the_gguf_file(tiny_dir, gguf_path, start_server):
    import time

    server = start_server(extra_env={"HF_HUB_OFFLINE": "1"},
                          args=("--backend", "qwen", "--model", str(tiny_dir), "--transformer", str(gguf_path)))
    deadline = time.monotonic() + 120
    health = server.get("/v1/health").json()
    while not health.get("tier") and not health.get("backend_error") and time.monotonic() < deadline:
        time.sleep(0.5)
        health = server.get("/v1/health").json()
    assert health["backend"] == "qwen" and health["backend_error"] is None
    assert health["transformer"] == str(gguf_path.resolve())
    assert health["tier"]["transformer_format"] == "gguf"
    assert health["tier"]["summary"].startswith("80 GB tier: GGUF transformer, bf16 text encoder")
