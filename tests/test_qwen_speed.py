# SPDX-License-Identifier: GPL-3.0-or-later
"""The fast preset's speed measures on the tiny random-weight pipeline, on CPU: real-valued RoPE (same layers),
one compiled graph for every prompt length, TaylorSeer's step schedule and its reset after a cancel, and the
remembered captions. Speed itself is measured by scripts/bench_gpu_speed.py, not here."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from test_qwen_backend import layers_array, photo, premultiplied, quick, tiny_qwen_dir  # noqa: E402,F401

from inference_server.backends.base import CancelToken  # noqa: E402
from inference_server.errors import InvalidInput, JobCanceled  # noqa: E402


def _backend(tiny_qwen_dir, **kwargs):
    from inference_server.backends.qwen import QwenLayeredBackend

    os.environ["HF_HUB_OFFLINE"] = "1"
    return QwenLayeredBackend(model_id=str(tiny_qwen_dir), device="cpu", **kwargs)


def test_real_rope_rotates_as_the_complex_product_does():
    import torch
    from diffusers.models.transformers import transformer_qwenimage

    from inference_server.backends.qwen_speed import _cos_sin, _rope_taking_cos_sin

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 7, 3, 16, generator=generator)
    angles = torch.rand(7, 8, generator=generator) * 6.28
    freqs = torch.polar(torch.ones_like(angles), angles)
    complex_rope = transformer_qwenimage.apply_rotary_emb_qwen
    if getattr(complex_rope, "takes_cos_sin", False):  # patched by an earlier test in this process
        complex_rope = complex_rope.complex_rope
    expected = complex_rope(x, freqs, use_real=False)
    got = _rope_taking_cos_sin(complex_rope)(x, _cos_sin(freqs), use_real=False)
    assert torch.allclose(got, expected, atol=1e-6)


def test_fast_gives_exacts_layers_on_the_cpu(tiny_qwen_dir, photo):
    """On the CPU fast has no fp8 (CUDA only): what remains is RoPE as real products, moving nothing a user sees."""
    params = dict(seed=3, layers=2, num_inference_steps=3, true_cfg_scale=4.0, negative_prompt=" ")
    exact = layers_array(_backend(tiny_qwen_dir).decompose(photo, quick(preset="exact", **params)))
    fast = layers_array(_backend(tiny_qwen_dir).decompose(photo, quick(preset="fast", **params)))
    assert np.abs(premultiplied(fast) - premultiplied(exact)).max() <= 1.0


def test_fast_compiles_one_graph_for_every_prompt_length(tiny_qwen_dir, photo, monkeypatch):
    """The prompt and the negative prompt differ in length, and so does every caption: one graph serves them all
    (no recompiling pause when a job brings a new length)."""
    import torch
    from torch._dynamo.utils import counters

    monkeypatch.setenv("STRATA_FAST_STEP_CACHE", "none")
    torch._dynamo.reset()
    counters.clear()
    backend = _backend(tiny_qwen_dir, compile_backend="eager")
    cfg = dict(true_cfg_scale=4.0, negative_prompt=" ", layers=1, num_inference_steps=2, preset="fast")
    backend.decompose(photo, quick(prompt="a dark box", **cfg))
    backend.decompose(photo, quick(prompt="a dark box in front of a sky with a half-transparent corner", **cfg))
    assert backend._compiled
    assert counters["stats"]["unique_graphs"] == 1


def test_taylorseer_computes_the_scheduled_steps_and_forgets_a_canceled_job(tiny_qwen_dir, photo, monkeypatch):
    from inference_server.backends.qwen_speed import TAYLORSEER_FIRST_STEPS, TAYLORSEER_INTERVAL, BlockCallCounter

    monkeypatch.setenv("STRATA_FAST_STEP_CACHE", "taylorseer")
    backend = _backend(tiny_qwen_dir)
    steps = 8
    params = quick(preset="fast", seed=5, num_inference_steps=steps, true_cfg_scale=4.0, negative_prompt=" ")
    backend.load("fast", "none")
    counter = BlockCallCounter(backend.pipe.transformer)
    first = layers_array(backend.decompose(photo, params))
    computed = [step for step in range(steps) if step < TAYLORSEER_FIRST_STEPS
                or (step - TAYLORSEER_FIRST_STEPS - 1) % TAYLORSEER_INTERVAL == 0]
    assert counter.calls == 2 * len(computed) < 2 * steps  # both CFG passes of each computed step

    token = CancelToken()

    def cancel_after_five(stage, step, total):
        if stage == "denoise" and step == 5:
            token.cancel()

    with pytest.raises(JobCanceled):
        backend.decompose(photo, params, progress=cancel_after_five, cancel=token)
    again = layers_array(backend.decompose(photo, params))
    assert np.array_equal(again, first)


def test_the_same_image_is_captioned_once(tiny_qwen_dir, photo):
    backend = _backend(tiny_qwen_dir)
    backend.load("stock", "none")
    calls = []
    caption = backend.pipe.get_image_caption

    def counted(*args, **kwargs):
        calls.append(1)
        return caption(*args, **kwargs)

    backend.pipe.get_image_caption = counted
    first = backend.decompose(photo, quick(prompt="", seed=1))
    second = backend.decompose(photo, quick(prompt="", seed=2, layers=2))
    assert len(calls) == 1
    captions = [[note for note in stack.notes if note.startswith("caption: ")] for stack in (first, second)]
    assert captions[0] == captions[1] and captions[0]
    backend.decompose(photo.transpose(0), quick(prompt="", seed=1))  # another image: captioned
    assert len(calls) == 2


def test_unknown_fast_tuning_is_named(monkeypatch):
    from inference_server.backends.qwen_speed import fast_tuning

    monkeypatch.setenv("STRATA_FAST_TUNING", "max")
    with pytest.raises(InvalidInput, match="STRATA_FAST_TUNING must be one of coordesc, quick, got 'max'"):
        fast_tuning()


class _Config:
    def __init__(self, block: int) -> None:
        self.kwargs = {"XBLOCK": block}


class _Result:
    def __init__(self, config) -> None:
        self.config = config


def _fake_heuristics(cached):
    """The names of torch's triton_heuristics module that the backported recheck uses."""
    import contextlib
    from types import SimpleNamespace

    return SimpleNamespace(check_autotune_cache=lambda configs, filename, meta: (cached, None, {"state": "hit"}),
                           triton_config_to_hashable=lambda config: tuple(config.kwargs.items()),
                           dynamo_timed=lambda name: contextlib.nullcontext())


def test_a_cached_coordinate_descent_result_is_not_tuned_again():
    """Backport of pytorch#173391: a kernel with one config whose tuned config is in the cache keeps the mark that
    stops torch from tuning it again at every start."""
    from types import SimpleNamespace

    from inference_server.backends.qwen_speed import _recheck_autotune_cache

    best = _Config(64)
    best.found_by_coordesc = True
    kernel = SimpleNamespace(compile_results=[_Result(_Config(64))], filename="k.py", inductor_meta={})
    _recheck_autotune_cache(kernel, None, _fake_heuristics([best]))
    assert len(kernel.compile_results) == 1 and kernel.compile_results[0].config.found_by_coordesc

    # Tuned to a config that was never compiled: compiled now, from the kernel's source.
    compiled = []
    kernel = SimpleNamespace(compile_results=[_Result(_Config(128))], filename="k.py", inductor_meta={},
                             fn=SimpleNamespace(fn=None),
                             _precompile_config=lambda config: compiled.append(config) or _Result(config))
    _recheck_autotune_cache(kernel, lambda: SimpleNamespace(fn=SimpleNamespace(fn="source")),
                            _fake_heuristics([best]))
    assert compiled == [best] and kernel.compile_results[0].config is best


def test_the_backport_patches_only_a_torch_with_the_bug(monkeypatch):
    from torch._inductor.runtime import triton_heuristics

    from inference_server.backends import qwen_speed

    fixed = triton_heuristics.CachingAutotuner.recheck_autotune_cache
    if not getattr(fixed, "strata_backport", False):
        assert not qwen_speed.fix_coordesc_rerun_on_warm_cache()  # torch 2.13 here has the fix
        assert triton_heuristics.CachingAutotuner.recheck_autotune_cache is fixed

    def buggy(self, reload_kernel_from_src):  # torch 2.11's test, as in its source
        cached_configs, configs = [1], [1]
        if len(cached_configs) == 1 and len(configs) > 1:
            pass

    monkeypatch.setattr(triton_heuristics.CachingAutotuner, "recheck_autotune_cache", buggy)
    assert qwen_speed.fix_coordesc_rerun_on_warm_cache()
    assert triton_heuristics.CachingAutotuner.recheck_autotune_cache.strata_backport


def test_a_kernel_narrowed_by_the_cache_gets_no_halved_rblock_configs(monkeypatch):
    """Backport of pytorch#181789's rblock part: on torch 2.11 a reduction kernel whose tuned config came from the
    cache got halved-RBLOCK configs added again, so it was benchmarked and tuned again at every start."""
    from types import SimpleNamespace

    from torch._inductor.runtime import triton_heuristics

    from inference_server.backends import qwen_speed

    added = []

    def buggy(self):  # torch 2.11's: no look at the cache's answer
        added.append(self.name)

    monkeypatch.setattr(triton_heuristics.CachingAutotuner, "_dynamic_scale_rblock", buggy)
    assert qwen_speed.fix_coordesc_rerun_on_warm_cache()
    patched = triton_heuristics.CachingAutotuner._dynamic_scale_rblock
    assert patched.strata_backport
    patched(SimpleNamespace(name="hit", autotune_cache_info={"autotune_cache_state": "hit"}))
    patched(SimpleNamespace(name="miss", autotune_cache_info={"autotune_cache_state": "miss"}))
    patched(SimpleNamespace(name="no cache", autotune_cache_info=None))
    assert added == ["miss", "no cache"]
    assert qwen_speed.fix_coordesc_rerun_on_warm_cache()  # a second call leaves the patch as it is
    assert triton_heuristics.CachingAutotuner._dynamic_scale_rblock is patched
