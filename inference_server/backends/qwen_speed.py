"""Speed measures of the qwen backend that outlive one process or change results: the on-disk compile cache, the
optional step cache of the ``fast`` preset, and the step counter that reports a step cache's skip rate.

Compile cache: ``torch.compile`` keeps what it built (inductor's FX graph cache, AOTAutograd's cache, Triton's
kernels) in ``TORCHINDUCTOR_CACHE_DIR``, by default a folder in /tmp that a reboot or another user loses. The backend
points it at a persistent folder (``STRATA_COMPILE_CACHE_DIR``; ``strata serve`` sets it to ``DATA_DIR/compile-cache``),
so a restarted server re-traces the blocks but compiles no kernel again. The first job's first step still carries
that warm-up; the manifest reports it as ``timings_s.first_step_s``.

Step caches (``STRATA_FAST_STEP_CACHE``, off by default; approximate, validate the alpha channels):
  ``fbc``         First Block Cache: the remaining blocks are skipped on steps where the first block's output barely
                  changed (threshold ``FBC_THRESHOLD``).
  ``taylorseer``  TaylorSeer: every ``TAYLORSEER_INTERVAL``-th step is computed, the others extrapolated.
MagCache is not offered: it needs magnitude ratios calibrated for this model, which nobody has published.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

STEP_CACHES = ("none", "fbc", "taylorseer")
# First Block Cache threshold (diffusers' default is 0.05; 0.08 skips more steps).
FBC_THRESHOLD = 0.08
TAYLORSEER_INTERVAL = 3
COMPILE_CACHE_ENV = "STRATA_COMPILE_CACHE_DIR"


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
    return folder


def step_cache_config(name: str):
    """The diffusers cache config for step cache ``name`` (one of ``STEP_CACHES`` but "none")."""
    if name == "fbc":
        from diffusers import FirstBlockCacheConfig

        return FirstBlockCacheConfig(threshold=FBC_THRESHOLD)
    if name == "taylorseer":
        from diffusers import TaylorSeerCacheConfig

        return TaylorSeerCacheConfig(cache_interval=TAYLORSEER_INTERVAL)
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


def compile_blocks_under_step_cache(transformer, backend: str, step_cache: str) -> None:
    """Regional compile for a model that gets a step cache: each block's own ``forward`` is compiled (one graph,
    shared by the identical blocks, as ``compile_repeated_blocks`` does), so First Block Cache's hooks, which wrap
    whole blocks afterwards, run as plain Python around compiled code. TaylorSeer hooks modules inside the blocks:
    its blocks compile with graph breaks around them."""
    import torch

    for block in transformer.transformer_blocks:
        block.forward = torch.compile(block.forward, fullgraph=step_cache == "fbc", backend=backend)
