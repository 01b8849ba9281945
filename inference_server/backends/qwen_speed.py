# SPDX-License-Identifier: GPL-3.0-or-later
"""Speed measures of the qwen backend that outlive one process or change results: the on-disk compile cache, the
optional step cache of the ``fast`` preset, and the step counter that reports a step cache's skip rate.

Compile cache: ``torch.compile`` keeps what it built (inductor's FX graph cache, AOTAutograd's cache, Triton's
kernels) in ``TORCHINDUCTOR_CACHE_DIR``, by default a folder in /tmp that a reboot or another user loses. The backend
points it at a persistent folder (``STRATA_COMPILE_CACHE_DIR``; ``strata serve`` sets it to ``DATA_DIR/compile-cache``),
so a restarted server re-traces the blocks but compiles no kernel again. The first job's first step still carries
that warm-up; the manifest reports it as ``timings_s.first_step_s``.

The fast preset's transformer (``prepare_fast_transformer``): fp8 blocks, rotary embeddings as real cos/sin
products (``use_real_rope``), each block's forward compiled with the text length dynamic (``compile_block_forwards``).

Step caches (``STRATA_FAST_STEP_CACHE``, off by default; approximate, validate the alpha channels):
  ``taylorseer``  TaylorSeer (lite): the first ``TAYLORSEER_FIRST_STEPS`` steps are computed, then every
                  ``TAYLORSEER_INTERVAL``-th; on the others the blocks are skipped and the output extrapolated. Its
                  skip rate does not depend on the weights (46 % at 50 steps).
  ``fbc``         First Block Cache: the remaining blocks are skipped on steps where the first block's output barely
                  changed (threshold ``FBC_THRESHOLD``); how often depends on the weights.
MagCache is not offered: it needs magnitude ratios calibrated for this model, which nobody has published.

Captioning keeps its words: eager greedy decoding as diffusers runs it, timed in the manifest; the captions of the
last images are remembered (``CaptionMemo``). A static KV cache with compiled decoding is opt-in
(``STRATA_CAPTION_CACHE=static``): other kernels, so a near-tie can flip a word.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

STEP_CACHES = ("none", "fbc", "taylorseer")
# First Block Cache threshold (diffusers' default is 0.05; 0.08 skips more steps). How many steps it skips depends
# on the weights: random-weight benchmarks cannot tell.
FBC_THRESHOLD = 0.08
# TaylorSeer, lite variant: on its predicted steps all 60 blocks are skipped and the final projection's output is
# extrapolated (first order) from the last two computed steps. The first TAYLORSEER_FIRST_STEPS steps are computed,
# then every TAYLORSEER_INTERVAL-th: at 50 steps 27 computed, 23 predicted, whatever the weights.
TAYLORSEER_INTERVAL = 2
TAYLORSEER_FIRST_STEPS = 4
COMPILE_CACHE_ENV = "STRATA_COMPILE_CACHE_DIR"
FAST_TUNING_ENV = "STRATA_FAST_TUNING"
FAST_TUNINGS = ("coordesc", "quick")


def default_compile_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "strata" / "torch-compile"


def use_persistent_compile_cache() -> Path | None:
    """Point inductor's and Triton's caches at ``$STRATA_COMPILE_CACHE_DIR`` (or ~/.cache/strata/torch-compile).

    Leaves a cache folder the user chose (``TORCHINDUCTOR_CACHE_DIR``) alone. Returns the folder in use, or None
    when it cannot be created (compiling still works, just without a cache that survives a restart).
    """
    chosen = os.environ.get(COMPILE_CACHE_ENV)
    user_folder = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if not chosen and user_folder:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir

        # torch writes its /tmp default into the variable the first time it looks: that is not a user's choice.
        if os.path.abspath(user_folder) != os.path.abspath(default_cache_dir()):
            return Path(user_folder)
    folder = Path(chosen or default_compile_cache_dir())
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        logger.warning("compile cache folder %s cannot be created (%s); compiling without a persistent cache",
                       folder, error)
        return None
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    os.environ["TRITON_CACHE_DIR"] = str(folder / "triton")
    # On by default in current torch; said explicitly so an older default does not silently skip the cache.
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")
    if fix_coordesc_rerun_on_warm_cache():
        logger.info("inductor: tuned kernels are reused from the cache as they are "
                    "(backport of pytorch#173391 and #181789)")
    return folder


def fix_coordesc_rerun_on_warm_cache() -> bool:
    """Backport of pytorch#173391 and of the rblock part of pytorch#181789 to the torch versions that lack them
    (2.11 has both bugs; issue pytorch#172819).

    1. A kernel that inductor loads from its FX graph cache with a static launcher looks its best config up in the
       autotune cache, but the lookup is skipped when the kernel has a single config, and a hit does not keep the
       "found by coordinate descent" mark: coordinate-descent tuning runs again on every start. With the fast
       preset's fp8 blocks (torchao turns that tuning on) it was 31 of the 36 s of a restart's warm-up on an H200.
    2. After a hit has narrowed a reduction kernel to its cached config, ``_dynamic_scale_rblock`` still adds configs
       with halved RBLOCK; the kernel then benchmarks them and tunes the winner by coordinate descent again. With
       (1) fixed this was what remained: 41 tuning benchmarks, 13.4 of the 19.4 s warm-up on an H200.
    Returns whether a fix is in place; a torch with the fixes already (or other internals) is left alone.
    """
    try:
        import inspect

        from torch._inductor.runtime import triton_heuristics as heuristics

        autotuner = heuristics.CachingAutotuner
        recheck = autotuner.recheck_autotune_cache
        scale_rblock = autotuner._dynamic_scale_rblock
        recheck_has_bug = (getattr(recheck, "strata_backport", False)
                           or "len(cached_configs) == 1 and len(configs) > 1" in inspect.getsource(recheck))
        scale_has_bug = (getattr(scale_rblock, "strata_backport", False)
                         or "autotune_cache_state" not in inspect.getsource(scale_rblock))
    except (ImportError, AttributeError, OSError, TypeError):
        return False

    if recheck_has_bug and not getattr(recheck, "strata_backport", False):
        def recheck_autotune_cache(self, reload_kernel_from_src):
            try:
                _recheck_autotune_cache(self, reload_kernel_from_src, heuristics)
            except Exception as error:  # noqa: BLE001 - torch's own code is the fallback
                logger.debug("backported autotune recheck failed (%s); torch's own runs", error)
                recheck(self, reload_kernel_from_src)

        recheck_autotune_cache.strata_backport = True  # type: ignore[attr-defined]
        autotuner.recheck_autotune_cache = recheck_autotune_cache  # type: ignore[method-assign]
    if scale_has_bug and not getattr(scale_rblock, "strata_backport", False):
        def _dynamic_scale_rblock(self):
            if not autotune_cache_hit(self):
                scale_rblock(self)

        _dynamic_scale_rblock.strata_backport = True  # type: ignore[attr-defined]
        autotuner._dynamic_scale_rblock = _dynamic_scale_rblock  # type: ignore[method-assign]
    return recheck_has_bug or scale_has_bug


def autotune_cache_hit(autotuner) -> bool:
    """Whether this kernel's config came from the autotune cache (then it is final: nothing to add or tune)."""
    info = getattr(autotuner, "autotune_cache_info", None) or {}
    return info.get("autotune_cache_state") == "hit"


def _recheck_autotune_cache(autotuner, reload_kernel_from_src, heuristics) -> None:
    """``CachingAutotuner.recheck_autotune_cache`` as torch 2.13 has it (``heuristics``: its module)."""
    configs = [result.config for result in autotuner.compile_results]
    cached_configs, _, info = heuristics.check_autotune_cache(configs, autotuner.filename, autotuner.inductor_meta)
    autotuner.autotune_cache_info = info
    if len(cached_configs) != 1:
        return
    best_config = cached_configs[0]
    found_by_coordesc = getattr(best_config, "found_by_coordesc", False)
    best_hash = heuristics.triton_config_to_hashable(best_config)
    for compile_result in autotuner.compile_results:
        if heuristics.triton_config_to_hashable(compile_result.config) == best_hash:
            compile_result.config.found_by_coordesc = found_by_coordesc
            autotuner.compile_results = [compile_result]
            return
    # The best config was found at run time (coordinate descent) and is not among the compiled ones: compile it.
    with heuristics.dynamo_timed("CachingAutotuner.slow_precompile_config"):
        if autotuner.fn.fn is None:
            autotuner.fn = reload_kernel_from_src().fn
        autotuner.compile_results = [autotuner._precompile_config(best_config)]


def fast_tuning() -> str:
    """Kernel tuning of the fast preset (env STRATA_FAST_TUNING).

    "coordesc" (default): torchao's recommended inductor settings, coordinate-descent tuning of every Triton kernel
    among them. Measured on an H200 (torch 2.11, 640 × 4): 0.572 s/step; the cold compile spent 163 of its 178 s
    tuning, and each restart re-tuned the kernels it loads from the cache (31 of its 36 s of warm-up).
    "quick": inductor's defaults (no tuning; compiling takes seconds), kernels possibly a little slower: not yet
    measured on a GPU.
    """
    value = os.environ.get(FAST_TUNING_ENV, "coordesc")
    if value not in FAST_TUNINGS:
        from ..errors import InvalidInput

        raise InvalidInput(f"{FAST_TUNING_ENV} must be one of {', '.join(FAST_TUNINGS)}, got {value!r}")
    return value


def step_cache_config(name: str):
    """The diffusers cache config for step cache ``name`` (one of ``STEP_CACHES`` but "none")."""
    import torch

    if name == "fbc":
        from diffusers import FirstBlockCacheConfig

        return FirstBlockCacheConfig(threshold=FBC_THRESHOLD)
    if name == "taylorseer":
        from diffusers import TaylorSeerCacheConfig

        # Lite: hooks on whole blocks (skipped) and on proj_out (extrapolated), none inside the compiled blocks.
        return TaylorSeerCacheConfig(cache_interval=TAYLORSEER_INTERVAL,
                                     disable_cache_before_step=TAYLORSEER_FIRST_STEPS,
                                     taylor_factors_dtype=torch.float32, use_lite_mode=True)
    from ..errors import InvalidInput

    raise InvalidInput(f"STRATA_FAST_STEP_CACHE must be one of {', '.join(STEP_CACHES)}, got {name!r}")


class BlockCallCounter:
    """Counts the passes in which the transformer's last block really computed: a step cache's hook returns the
    cached output without calling the block's own forward, so steps × passes − ``calls`` were skipped."""

    def __init__(self, transformer) -> None:
        self.calls = 0
        block = transformer.transformer_blocks[-1]
        refs = getattr(getattr(block, "_diffusers_hook", None), "_fn_refs", None)
        if refs:
            # The first hook registered holds the block's forward from before the hooks (the compiled one).
            ref = refs[0]
            name = "original_forward" if ref.original_forward is not None else "forward"
            inner = getattr(ref, name)

            def counted(*args, **kwargs):
                self.calls += 1
                return inner(*args, **kwargs)

            setattr(ref, name, counted)
        else:
            block.register_forward_pre_hook(self._count)

    def _count(self, module, args) -> None:
        self.calls += 1


CAPTION_CACHE_ENV = "STRATA_CAPTION_CACHE"


def use_static_caption_cache(text_encoder) -> None:
    """Caption with a static KV cache: transformers' ``generate`` then compiles the one-token decoding step (and
    replays it as a CUDA graph) instead of running ~30 eager kernels per layer per token. Greedy decoding either
    way; the words can differ only where bf16 rounding flips a near-tie (``scripts/bench_gpu_speed.py`` compares
    the two captions)."""
    text_encoder.generation_config.cache_implementation = "static"


def apply_caption_speedups(pipe) -> None:
    """``STRATA_CAPTION_CACHE=static`` (opt-in): see ``use_static_caption_cache``."""
    if os.environ.get(CAPTION_CACHE_ENV, "dynamic") == "static" and pipe.text_encoder is not None:
        use_static_caption_cache(pipe.text_encoder)


def prepare_fast_transformer(transformer, compile_backend: str, step_cache: str, real_rope: bool = True) -> bool:
    """The fast preset's transformer after fp8 (see the module's docstring); returns whether it compiled."""
    if real_rope:
        use_real_rope(transformer)
    compiled = compile_backend != "none"
    if compiled:
        compile_block_forwards(transformer, compile_backend)
    if step_cache != "none":
        transformer.enable_cache(step_cache_config(step_cache))
    return compiled


def reset_step_cache(transformer) -> None:
    """Forget a step cache's state (the pipeline resets it after a finished job, not after a canceled one)."""
    if getattr(transformer, "is_cache_enabled", False):
        transformer._reset_stateful_cache()


def compile_block_forwards(transformer, backend: str) -> None:
    """Regional compile for the fast preset: each block's own ``forward`` is compiled as one graph, shared by the 60
    identical blocks (as ``compile_repeated_blocks`` does), so a step cache's hooks, which wrap whole blocks, run as
    plain Python around compiled code and can be added or removed without compiling again.

    The text's length is marked dynamic from the first call: the prompt and the negative prompt (and every job's
    caption) differ in length, and without the mark the first pass compiles a graph for its exact length and the
    second compiles again, with the length symbolic: two traces and two compiles at every start instead of one.
    """
    import torch

    for block in transformer.transformer_blocks:
        compiled = torch.compile(block.forward, fullgraph=True, backend=backend)
        block.forward = _text_length_dynamic(compiled)


def _text_length_dynamic(compiled):
    from torch._dynamo import maybe_mark_dynamic

    def forward(*args, **kwargs):
        text = kwargs.get("encoder_hidden_states")
        if text is not None:
            maybe_mark_dynamic(text, 1)
        mask = kwargs.get("encoder_hidden_states_mask")
        if mask is not None:
            maybe_mark_dynamic(mask, 1)
        rope = kwargs.get("image_rotary_emb")
        if rope is not None:
            text_rope = rope[1]
            for part in text_rope if isinstance(text_rope, tuple) else (text_rope,):
                maybe_mark_dynamic(part, 0)
        return compiled(*args, **kwargs)

    forward.compiled = compiled
    return forward


def use_real_rope(transformer, memo_size: int = 8) -> None:
    """Rotary embeddings as real cos/sin products instead of complex multiplications: the same formula, in fp32 as
    before (the results move by float32 rounding at most). Inductor cannot fuse complex arithmetic: every block
    then ran the rotation of q and k for image and text as separate eager kernels with their own memory round
    trips; as real products it fuses with the q/k norms (diffusers has this path for Neuron devices only).

    The transformer's ``pos_embed`` returns ``(cos, sin)`` pairs in place of the complex frequencies (kept for the
    last ``memo_size`` shapes: the same every pass of a job), and diffusers' ``apply_rotary_emb_qwen`` takes the
    pairs. Not for Ulysses context parallel, which splits the complex frequencies itself.
    """
    from diffusers.models.transformers import transformer_qwenimage

    if not getattr(transformer_qwenimage.apply_rotary_emb_qwen, "takes_cos_sin", False):
        transformer_qwenimage.apply_rotary_emb_qwen = _rope_taking_cos_sin(transformer_qwenimage.apply_rotary_emb_qwen)
    pos_embed = transformer.pos_embed
    complex_forward = pos_embed.forward
    memo: dict[str, tuple] = {}

    def forward(*args, **kwargs):
        key = repr((args, sorted(kwargs.items())))
        if key not in memo:
            if len(memo) >= memo_size:
                memo.pop(next(iter(memo)))
            memo[key] = tuple(_cos_sin(freqs) for freqs in complex_forward(*args, **kwargs))
        return memo[key]

    pos_embed.forward = forward


def _cos_sin(freqs):
    """Complex [S, D/2] frequencies → fp32 (cos, sin), each [S, D] with every value twice (pairs (2k, 2k+1))."""
    return (freqs.real.repeat_interleave(2, dim=-1).contiguous(), freqs.imag.repeat_interleave(2, dim=-1).contiguous())


def _rope_taking_cos_sin(complex_rope):
    import torch

    def apply_rotary_emb_qwen(x, freqs_cis, use_real=True, use_real_unbind_dim=-1):
        if not isinstance(freqs_cis, tuple):
            return complex_rope(x, freqs_cis, use_real=use_real, use_real_unbind_dim=use_real_unbind_dim)
        # x: [B, S, H, D], channel pairs (2k, 2k+1) = (real, imaginary); cos/sin: [S, D].
        cos, sin = freqs_cis
        pairs = x.float().reshape(*x.shape[:-1], -1, 2)
        real, imaginary = pairs.unbind(-1)
        rotated = torch.stack([-imaginary, real], dim=-1).flatten(3)
        return (x.float() * cos[:, None, :] + rotated * sin[:, None, :]).type_as(x)

    apply_rotary_emb_qwen.takes_cos_sin = True
    apply_rotary_emb_qwen.complex_rope = complex_rope
    return apply_rotary_emb_qwen


class CaptionMemo:
    """The captions of the last few images: captioning is greedy, so the same image (and language) gets the same
    words; a job on an image captioned before (another seed, another layer count) reuses them instead of running
    the text encoder's up to 512 decoding steps again."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._captions: dict[str, str] = {}

    @staticmethod
    def key(image, use_en_prompt: bool) -> str:
        import hashlib

        digest = hashlib.sha256(image.tobytes())
        digest.update(f"{image.mode} {image.size} {use_en_prompt}".encode())
        return digest.hexdigest()

    def get(self, key: str) -> str | None:
        caption = self._captions.pop(key, None)
        if caption is not None:
            self._captions[key] = caption  # most recent last
        return caption

    def clear(self) -> None:
        self._captions.clear()

    def put(self, key: str, caption: str) -> None:
        self._captions.pop(key, None)
        self._captions[key] = caption
        while len(self._captions) > self.size:
            self._captions.pop(next(iter(self._captions)))
