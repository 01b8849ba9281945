# SPDX-License-Identifier: GPL-3.0-or-later
"""The Qwen-Image-Layered backend on a tiny random-weight copy of the real pipeline, on CPU.

The folder comes from ``scripts/make_tiny_qwen_layered.py`` (same classes and layered flags as the real model) and
is loaded through the backend's own ``from_pretrained`` path with the Hub offline, so everything but the weights'
size is the real thing: captioning with the VL model, prompt encoding, the pipeline's denoising loop and its RGBA
VAE decoder.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from inference_server.backends.base import CancelToken  # noqa: E402
from inference_server.errors import InvalidInput, JobCanceled, ModelUnavailable, OutOfMemory  # noqa: E402
from inference_server.layers import LayerStack  # noqa: E402
from inference_server.params import DecomposeParams  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent


def _load_builder():
    spec = importlib.util.spec_from_file_location("make_tiny_qwen_layered",
                                                  REPO_ROOT / "scripts" / "make_tiny_qwen_layered.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory) -> Path:
    return _load_builder().build_tiny_pipeline(tmp_path_factory.mktemp("tiny-qwen-layered"))


@pytest.fixture(scope="module")
def backend(tiny_qwen_dir):
    from inference_server.backends.qwen import QwenLayeredBackend

    os.environ["HF_HUB_OFFLINE"] = "1"
    return QwenLayeredBackend(model_id=str(tiny_qwen_dir), device="cpu")


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """A 400×300 RGBA picture: a gradient sky, a dark box, a half-transparent corner."""
    height, width = 300, 400
    rgba = np.zeros((height, width, 4), np.uint8)
    rgba[..., 0] = np.linspace(40, 200, width, dtype=np.uint8)[None, :]
    rgba[..., 2] = np.linspace(220, 90, height, dtype=np.uint8)[:, None]
    rgba[..., 3] = 255
    rgba[100:220, 150:300, :3] = (30, 30, 30)
    rgba[:40, :60, 3] = 128
    return Image.fromarray(rgba, "RGBA")


def quick(**overrides) -> DecomposeParams:
    """Cheapest settings that still run every stage: 1 layer, 2 steps, no CFG, a given prompt."""
    values = dict(layers=1, num_inference_steps=2, true_cfg_scale=1.0, prompt="a dark box in front of a sky",
                  seed=7, preset="stock")
    values.update(overrides)
    return DecomposeParams(**values).validate()


def layers_array(stack: LayerStack) -> np.ndarray:
    return np.stack([layer.rgba for layer in stack.layers]).astype(np.int16)


def premultiplied(layers: np.ndarray) -> np.ndarray:
    """Colour × alpha, alpha: what a viewer sees. Straight colour under alpha ≈ 0 is noise-amplified, so exactness
    checks compare this instead."""
    out = layers.astype(np.float64)
    out[..., :3] *= out[..., 3:4] / 255.0
    return out


def test_full_decomposition_with_cfg_reports_every_step(backend, photo, tmp_path):
    events = []
    params = DecomposeParams(layers=2, num_inference_steps=2, prompt="a dark box in front of a sky", seed=11,
                             preset="stock").validate()
    stack = backend.decompose(photo, params, progress=lambda *event: events.append(event))

    assert len(stack.layers) == 2
    for layer in stack.layers:
        # the model's working size (about 640² px, the input's aspect); the refine stage brings them to 400×300
        assert layer.rgba.shape == (544, 736, 4)
    assert [layer.name for layer in stack.layers] == ["Background", "Layer 1"]
    denoise = [event for event in events if event[0] == "denoise"]
    assert denoise == [("denoise", 0, 2), ("denoise", 1, 2), ("denoise", 2, 2)]
    # True CFG runs (negative prompt " ", scale 4): two encodes.
    assert ("encode", 2, 2) in events
    assert events[-1] == ("decode", 2, 2)
    assert "caption" not in {event[0] for event in events}  # a prompt was given
    assert stack.backend == "qwen" and stack.seed == 11 and stack.params["seed"] == 11
    assert {"encode", "denoise", "decode", "denoise_per_step"} <= set(stack.timings_s)
    assert any("background" in note for note in stack.notes)

    # The stack survives a save/load round trip like any other backend's.
    loaded = LayerStack.load(stack.save(tmp_path / "job"))
    assert np.array_equal(layers_array(loaded), layers_array(stack))
    assert backend.describe()["model_loaded"] is True


def test_empty_prompt_captions_the_image_first(backend, photo):
    events = []
    stack = backend.decompose(photo, quick(prompt=""), progress=lambda *event: events.append(event))
    stages = [event[0] for event in events]
    assert stages.index("caption") < stages.index("encode") < stages.index("denoise") < stages.index("decode")
    assert stack.timings_s["caption"] > 0
    assert any(note.startswith("caption: ") for note in stack.notes)


@pytest.fixture(scope="module")
def stock_quick(backend, photo) -> LayerStack:
    """One stock decomposition with a drawn seed, shared by the determinism and preset tests."""
    return backend.decompose(photo, quick(seed=None, layers=2))


def test_no_seed_draws_one_records_it_and_replays_exactly(backend, photo, stock_quick):
    seed = stock_quick.seed
    assert isinstance(seed, int) and stock_quick.params["seed"] == seed
    replay = backend.decompose(photo, quick(seed=seed, layers=2))
    assert np.array_equal(layers_array(replay), layers_array(stock_quick))
    other = backend.decompose(photo, quick(seed=(seed + 1) % 2**63, layers=2))
    assert np.abs(layers_array(other) - layers_array(stock_quick)).max() > 10


def test_auto_layers_runs_the_model_at_its_auto_count_and_says_so(backend, photo, tmp_path):
    from inference_server.refine import AUTO_DECOMPOSE_LAYERS as AUTO_LAYER_COUNT

    stack = backend.decompose(photo, quick(layers="auto"))
    assert 1 <= len(stack.layers) <= AUTO_LAYER_COUNT
    assert f"layers: auto; ran the model at {AUTO_LAYER_COUNT} layers" in stack.notes
    manifest = LayerStack.load(stack.save(tmp_path / "job")).params
    assert manifest["layers"] == "auto"


def test_one_step_is_refused_before_it_makes_nan_layers(backend, photo):
    with pytest.raises(InvalidInput, match="at least 2"):
        backend.decompose(photo, quick(num_inference_steps=1))


def test_cancel_stops_within_one_step_and_skips_decoding(backend, photo):
    token = CancelToken()
    events = []

    def progress(stage, step, total):
        events.append((stage, step, total))
        if stage == "denoise" and step == 1:
            token.cancel()

    with pytest.raises(JobCanceled, match="after 1 of 4 steps"):
        backend.decompose(photo, quick(num_inference_steps=4), progress=progress, cancel=token)
    assert [event for event in events if event[0] == "denoise"][-1] == ("denoise", 1, 4)
    assert "decode" not in {event[0] for event in events}


def test_cancel_before_start_does_no_work(backend, photo):
    token = CancelToken()
    token.cancel()
    events = []
    with pytest.raises(JobCanceled):
        backend.decompose(photo, quick(), progress=lambda *event: events.append(event), cancel=token)
    assert events == []


def test_exact_and_lowvram_presets_match_stock(tiny_qwen_dir, photo, stock_quick):
    """exact (no text mask + compiled blocks) and lowvram (group offload) change speed and memory, not results.

    On CPU the compile uses the "eager" backend: dynamo still captures each block as one graph (fullgraph), which
    is what could break, without spending a minute in the C++ compiler.
    """
    from inference_server.backends.qwen import QwenLayeredBackend

    backend = QwenLayeredBackend(model_id=str(tiny_qwen_dir), device="cpu", compile_backend="eager")
    stock = layers_array(stock_quick)
    exact = layers_array(backend.decompose(photo, quick(seed=stock_quick.seed, layers=2, preset="exact")))
    assert backend._compiled and backend.describe()["preset"] == "exact"
    lowvram = layers_array(backend.decompose(photo, quick(seed=stock_quick.seed, layers=2, preset="lowvram")))
    assert backend.describe()["preset"] == "lowvram"
    # The decoder runs one layer at a time in these presets: float rounding moves a few values by one level.
    assert np.abs(premultiplied(exact) - premultiplied(stock)).max() <= 2.0
    assert np.abs(premultiplied(lowvram) - premultiplied(stock)).max() <= 2.0


@pytest.mark.parametrize("step_cache", ["none", "fbc", "taylorseer"])
def test_fast_preset_runs_and_says_it_is_approximate(tiny_qwen_dir, photo, monkeypatch, step_cache):
    from inference_server.backends.qwen import QwenLayeredBackend

    # No compile here (CPU compiles only when asked): the step caches' hooks are what this test exercises.
    monkeypatch.setenv("STRATA_FAST_STEP_CACHE", step_cache)
    backend = QwenLayeredBackend(model_id=str(tiny_qwen_dir), device="cpu")
    stack = backend.decompose(photo, quick(num_inference_steps=4, preset="fast"))
    assert len(stack.layers) == 1
    notes = " ".join(stack.notes)
    assert "approximate" in notes and (step_cache == "none") == ("step cache" not in notes)
    assert stack.timings_s["first_step_s"] > 0


def test_bad_image_mode_is_rejected_with_the_mode_named(backend):
    with pytest.raises(InvalidInput, match="expected RGB or RGBA, got mode 'P'"):
        backend.decompose(Image.new("P", (64, 64)), quick())


def test_missing_weights_say_where_and_how_to_get_them(tmp_path, photo):
    from inference_server.backends.qwen import QwenLayeredBackend

    empty = tmp_path / "no-model-here"
    empty.mkdir()
    for model_id in (str(empty), str(tmp_path / "does-not-exist")):
        backend = QwenLayeredBackend(model_id=model_id, device="cpu")
        with pytest.raises(ModelUnavailable) as error:
            backend.decompose(photo, quick())
        message = str(error.value)
        assert model_id in message and "huggingface-cli download Qwen/Qwen-Image-Layered" in message
        assert "STRATA_QWEN_MODEL" in message
        assert backend.describe()["model_loaded"] is False


def test_gpu_out_of_memory_becomes_a_teaching_error(backend):
    import torch

    with pytest.raises(OutOfMemory, match="lowvram"):
        with backend._oom_as_error("exact", "denoising"):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_a_transparent_input_through_the_pipeline_and_refine_keeps_its_alpha_at_full_size(backend):
    """RGBA in (a logo on transparency), layers "auto": the pipeline decomposes into AUTO_DECOMPOSE_LAYERS at its
    working size, the refine stage brings them to the input's size, drops what is empty or repeated, and the
    composite reproduces the input's colour and alpha within one level."""
    from inference_server.layers import composite_over
    from inference_server.refine import AUTO_DECOMPOSE_LAYERS, decompose_refined

    height, width = 200, 320
    logo = np.zeros((height, width, 4), np.uint8)
    logo[40:160, 60:260] = (220, 60, 40, 255)
    logo[80:120, 100:220] = (250, 250, 250, 255)
    logo[30:170, 50:60, 3] = 128  # a half-transparent bar
    logo[30:170, 50:60, :3] = (20, 90, 200)
    events = []
    stack = decompose_refined(backend, Image.fromarray(logo, "RGBA"), quick(layers="auto"),
                              progress=lambda *event: events.append(event))
    assert ("decode", AUTO_DECOMPOSE_LAYERS, AUTO_DECOMPOSE_LAYERS) in events
    assert (stack.width_px, stack.height_px) == (width, height)
    assert stack.params["layers"] == "auto" and 1 <= len(stack.layers) <= AUTO_DECOMPOSE_LAYERS
    assert any(note.startswith("auto: kept") for note in stack.notes)
    composite = composite_over([layer.rgba for layer in stack.layers]).astype(int)
    assert np.abs(composite[..., 3] - logo[..., 3]).max() <= 1
    shows = logo[..., 3] > 0
    assert np.abs(composite[..., :3] - logo[..., :3].astype(int))[shows].max() <= 1
    assert (composite[..., 3][~shows] == 0).all()
