# SPDX-License-Identifier: GPL-3.0-or-later
"""Qwen-Image-Layered backend: diffusers' ``QwenImageLayeredPipeline``, loaded once and kept between jobs.

``decompose`` runs the pipeline's own stages one by one (caption, encode, denoise, decode) so each can report
progress, be timed for the manifest and be canceled in between; the denoising loop itself is the pipeline's,
called with ready prompt embeddings; it decodes too (diffusers 0.42.1's ``output_type="latent"`` path is broken), and
the decode's seconds are measured from the last denoising step.

Layer order: the model's layers are trained to recompose the input by sequential alpha blending,
C_i = α_i·RGB_i + (1 − α_i)·C_{i−1} for i = 1…N (Qwen-Image-Layered paper, arXiv 2512.15603, RGBA-VAE section), so
its first output layer is the bottom one (typically the background) and the last is on top. The frame before them,
the model's reconstruction of the input, is dropped by the pipeline. A LayerStack is back→front too, so the order
is kept as is.

Presets (``DecomposeParams.preset``) trade speed, memory and exactness (H100 numbers in scripts/BENCH_GPU.md):

=========  =====================================================================================================
stock      plain diffusers: bf16 on CUDA (fp32 on CPU), no compile, the pipeline as shipped.
exact      stock + no text mask when the prompt has no padding (SDPA may then pick a flash kernel; diffusers 0.42
           already drops an all-ones mask) + one VAE decode per layer (8 layers at 1024 px fit) + regional
           ``torch.compile`` of the 60 repeated transformer blocks (compiled on the first job, reused by later
           ones). Same math as stock up to bf16 rounding. H100, 640 px, 4 layers: 0.76 s/step vs 0.94 stock.
fast       exact + fp8 weights/activations in the blocks' linear layers (torchao rowwise, CUDA only), compiled
           the same way; a step cache (env STRATA_FAST_STEP_CACHE=fbc|taylorseer, see qwen_speed.py) is off by
           default. Approximate: layers differ from stock.
lowvram    bf16; the transformer streams from CPU RAM one block at a time (group offload on a side CUDA stream),
           the text encoder visits the GPU only to caption/encode. H100: 16 GiB peak, 1.8 s/step at 640 px.
=========  =====================================================================================================
"""

from __future__ import annotations

import os
import secrets
import time
from contextlib import contextmanager
from typing import Any

import numpy as np
from PIL import Image

from ..errors import InvalidInput, JobCanceled, ModelUnavailable, OutOfMemory, StrataError
from ..layers import Layer, LayerStack, Stopwatch
from ..params import OFFLOAD_MODES, PRESETS, DecomposeParams
from . import DOWNLOAD_HINT, qwen_model_id, qwen_weights_problem
from .base import CancelToken, ProgressCallback, no_progress
from .qwen_speed import CaptionMemo, reset_step_cache

# The pipeline's own default; the text encoder's embeddings are cut to this many tokens.
MAX_SEQUENCE_LENGTH = 512
APPROXIMATE_PRESETS = ("fast",)


def sdpa_preference() -> str:
    """Attention kernel order for the exact/fast presets on CUDA (env STRATA_SDPA: "cudnn" or "flash").

    On Hopper, cuDNN's fused attention ran 1.7× faster than PyTorch's FlashAttention-2 at these shapes (same
    softmax attention, different rounding), yet the compiled model's step time did not change with it: opt-in.
    """
    return os.environ.get("STRATA_SDPA", "flash")


def fast_step_cache() -> str:
    """Step cache of the fast preset (env STRATA_FAST_STEP_CACHE): "none" (default), "fbc" or "taylorseer"."""
    return os.environ.get("STRATA_FAST_STEP_CACHE", "none")


def torchvision_available() -> bool:
    try:
        from transformers.utils import is_torchvision_available
    except ImportError:
        return False
    return bool(is_torchvision_available())


def image_only_processor_class():
    """``Qwen2VLProcessor`` without its video half, for machines without torchvision.

    transformers 5 builds (and type-checks by name) a torchvision-only video processor whenever a Qwen2VLProcessor
    is made or loaded, so on a CPU-only torch without torchvision the real pipeline cannot even load. The layered
    pipeline only captions still images, so this subclass drops the video processor and keeps everything else: it
    reads the same ``processor/`` folder (tokenizer + image processor) and tokenizes the same way.
    """
    from transformers import Qwen2VLProcessor

    class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    return ImageOnlyQwen2VLProcessor


def _is_oom(error: BaseException) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower()
    )


class QwenLayeredBackend:
    """One loaded ``QwenImageLayeredPipeline``; ``decompose`` calls are serialised by the caller (one job at a time)."""

    name = "qwen"

    def __init__(
        self,
        model_id: str | None = None,
        device: str | None = None,
        preset: str = "exact",
        offload: str = "none",
        compile_backend: str | None = None,
        load_now: bool = False,
        pipeline=None,
        vram: str | None = None,
        transformer_path: str | None = None,
        machine=None,
    ) -> None:
        """
        model_id: Hub id or local folder (default: env ``STRATA_QWEN_MODEL``, else ``Qwen/Qwen-Image-Layered``).
        device: "cuda", "cuda:1", "cpu"... (default: cuda if available).
        preset / offload: what is applied at load time; a job asking for another preset reloads the pipeline.
        compile_backend: torch.compile backend for the exact/fast presets ("inductor" on CUDA by default; on CPU
            compiling is off unless a backend is named, e.g. "eager" to check that the blocks trace).
        pipeline: a ready ``QwenImageLayeredPipeline`` to use instead of loading ``model_id`` (the GPU benchmark
            builds one with random weights); the backend applies one preset to it and cannot switch later.
        vram: VRAM tier ("auto", "80", "24", "16", "12", "8"; see qwen_tiers.py), chosen here from the card's free
            memory before anything loads. None keeps the bf16 pipeline and the job's preset/offload as they are.
        transformer_path: a GGUF file of the transformer (``model_id`` still gives the rest and the config).
        machine: a ``qwen_tiers.Machine`` to decide the tier on instead of probing this one (tests, benchmark).
        """
        if preset not in PRESETS:
            raise InvalidInput(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        if offload not in OFFLOAD_MODES:
            raise InvalidInput(f"offload must be one of {', '.join(OFFLOAD_MODES)}, got {offload!r}")
        self.model_id = model_id or qwen_model_id()
        self._device_name = device
        self.preset = preset
        self.offload = offload
        self.compile_backend = compile_backend
        self.pipe: Any = None
        self._given_pipeline = pipeline
        self._configured: tuple[str, str] | None = None
        self._compiled = False
        self._text_encoder_offloaded = False
        self.load_seconds: float | None = None
        self.transformer_path = transformer_path
        self.tier_plan = self._choose_tier(vram, machine)
        self._placement = None
        self._captions = CaptionMemo()
        if load_now:
            self.load(preset, offload)

    # ----------------------------------------------------------------------------------------------- describe
    @property
    def device(self) -> str:
        if self._device_name:
            return self._device_name
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def describe(self) -> dict:
        info = {
            "backend": self.name,
            "device": self.device,
            "model_loaded": self.pipe is not None,
            "model": self.model_id,
            "preset": self._configured[0] if self._configured else self.preset,
            "offload": self._configured[1] if self._configured else self.offload,
        }
        if self.load_seconds is not None:
            info["load_s"] = round(self.load_seconds, 2)
        if self.transformer_path:
            info["transformer"] = self.transformer_path
        if self.tier_plan is not None:
            info["tier"] = self.tier_plan.to_dict()
            if self._placement is not None:
                info["tier"].update(self._placement.describe())
        return info

    def _choose_tier(self, vram: str | None, machine):
        """The tier plan (or None: plain bf16 pipeline); raises TierDoesNotFit before anything loads."""
        from .qwen_tiers import check_vram_choice, choose_tier, plan_for, probe_machine

        file_format = "gguf" if self.transformer_path else None
        if vram is None and not self.transformer_path:
            return None
        vram = check_vram_choice(vram or "auto")
        if machine is None and not self.device.startswith("cuda"):
            # No VRAM to fit on the CPU: "auto" keeps everything resident; a named tier applies its formats as is.
            if vram == "auto" and not self.transformer_path:
                return None
            return plan_for("80" if vram == "auto" else vram, _cpu_machine(), file_format, "on the CPU")
        return choose_tier(vram, machine or probe_machine(self.device), file_format)

    @property
    def _tiered(self) -> bool:
        return self.tier_plan is not None and (self.tier_plan.tier != "80" or bool(self.transformer_path))

    # ----------------------------------------------------------------------------------------------- loading
    def _dtype(self):
        import torch

        return torch.bfloat16 if self.device.startswith("cuda") else torch.float32

    def _check_weights(self) -> None:
        problem = qwen_weights_problem(self.model_id)
        if problem:
            raise ModelUnavailable(problem)

    def load(self, preset: str | None = None, offload: str | None = None):
        """Load (or reconfigure) the pipeline for ``preset``/``offload``; returns it. Cheap when already so."""
        preset = preset or self.preset
        offload = offload or self.offload
        if self.pipe is not None and (self._configured == (preset, offload) or self._tiered):
            # A VRAM tier fixes formats and placement itself; the job's preset/offload do not reload it.
            return self.pipe
        started = time.perf_counter()
        if self._given_pipeline is not None:
            if self._configured is not None:
                raise InvalidInput(
                    f"this backend runs a pipeline set up for preset {self._configured[0]!r}, offload "
                    f"{self._configured[1]!r}; it cannot switch to {preset!r}, {offload!r}"
                )
            pipe = self._given_pipeline
        else:
            # Presets change the model in place (fp8 weights, compiled blocks, offload hooks); going to another
            # preset starts from fresh weights rather than trying to undo them.
            self.unload()
            pipe = self._from_pretrained() if not self._tiered else None
        try:
            if self._tiered:
                pipe = self._load_tier(pipe)
            else:
                pipe.set_progress_bar_config(disable=True)
                self._apply_preset(pipe, preset, offload)
        except BaseException as error:
            pipe = None  # drop the half-configured model before freeing GPU memory
            self._free_cuda()
            if _is_oom(error):
                raise OutOfMemory(self._oom_message(preset, "loading the model")) from error
            raise
        self.pipe = pipe
        self._configured = (preset, offload)
        self.load_seconds = time.perf_counter() - started
        return pipe

    def _load_tier(self, given):
        """Load (or place the given pipeline) as the tier plan says: quantized or GGUF weights, streaming, turns."""
        import torch

        from .qwen_weights import (
            QUANTIZED_FORMATS,
            compile_tier_blocks,
            load_tiered_pipeline,
            prepare_given_pipeline,
        )

        plan = self.tier_plan
        if given is not None:
            self._placement = prepare_given_pipeline(given, plan, self.device)
            pipe = given
        else:
            self._check_weights()
            extra: dict[str, Any] = {}
            if not torchvision_available():
                extra["processor"] = image_only_processor_class().from_pretrained(self.model_id, subfolder="processor")
            pipe, self._placement = load_tiered_pipeline(self.model_id, plan, self.device, self._dtype(),
                                                         transformer_path=self.transformer_path, **extra)
        pipe.set_progress_bar_config(disable=True)
        pipe.vae.enable_slicing()
        # Quantized blocks pay only once compiled (NF4's dequantization and fp8's activation scaling fuse).
        if (plan.transformer_format in QUANTIZED_FORMATS and torch.device(self.device).type == "cuda"
                and (self.compile_backend or "inductor") != "none"):
            from .qwen_speed import use_persistent_compile_cache

            use_persistent_compile_cache()
            self._compiled = compile_tier_blocks(pipe.transformer, self._placement, self.compile_backend or "inductor")
        return pipe

    def _from_pretrained(self):
        try:
            from diffusers import QwenImageLayeredPipeline
        except ImportError as error:
            raise ModelUnavailable(
                f"the qwen backend needs torch and diffusers>=0.42 ({error}); pip install 'strata[qwen]'"
            ) from error
        self._check_weights()
        extra: dict[str, Any] = {}
        if not torchvision_available():
            extra["processor"] = image_only_processor_class().from_pretrained(self.model_id, subfolder="processor")
        try:
            return QwenImageLayeredPipeline.from_pretrained(self.model_id, dtype=self._dtype(), **extra)
        except OSError as error:
            raise ModelUnavailable(f"weights not found at {self.model_id} ({error}); {DOWNLOAD_HINT}") from error

    def unload(self) -> None:
        self.pipe = None
        self._placement = None
        self._configured = None
        self._compiled = False
        self._text_encoder_offloaded = False
        self._captions = CaptionMemo()
        self._free_cuda()

    def _free_cuda(self) -> None:
        import gc

        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass

    def _apply_preset(self, pipe, preset: str, offload: str) -> None:
        """Place the pipeline on the device and apply the preset's speed/memory measures."""
        import torch

        device = torch.device(self.device)
        if preset == "lowvram" and offload == "none":
            offload = "group"
        # a. Placement / offloading.
        if offload == "none":
            pipe.to(device)
        elif offload == "model":
            if device.type == "cpu":
                # Moving whole models between CPU and CPU saves nothing (and accelerate's hooks then change
                # the last bits of the result); the pipeline just stays where it is.
                pipe.to(device)
            else:
                pipe.enable_model_cpu_offload(device=device)
        else:
            # The transformer streams its weights from CPU RAM: "sequential" one leaf layer at a time (least
            # memory), "group" one block at a time, prefetched on a side CUDA stream so copies overlap compute.
            # The text encoder moves to the GPU as a whole for captioning and encoding only (streaming it would
            # move all 16 GB for every caption token), and the 0.25 GB VAE stays on the GPU.
            use_stream = device.type == "cuda" and offload == "group"
            pipe.transformer.enable_group_offload(
                onload_device=device,
                offload_device=torch.device("cpu"),
                offload_type="leaf_level" if offload == "sequential" else "block_level",
                num_blocks_per_group=None if offload == "sequential" else 1,
                use_stream=use_stream,
            )
            pipe.text_encoder.to("cpu")
            pipe.vae.to(device)
            self._text_encoder_offloaded = True
        # b. fp8 linear layers (fast only): torchao's dynamic rowwise fp8 needs compute capability ≥ 8.9.
        if preset == "fast" and device.type == "cuda":
            self._quantize_fp8(pipe.transformer)
        compile_backend = "none"
        if preset in ("exact", "fast") and offload == "none":
            compile_backend = self.compile_backend or ("inductor" if device.type == "cuda" else "none")
        if compile_backend != "none":
            from .qwen_speed import use_persistent_compile_cache

            use_persistent_compile_cache()
        # d. Decode one layer at a time (the pipeline batches all layers through the VAE: 8 layers at 1024 px
        #    need over 8 GB there). Same math, per-frame independent.
        if preset != "stock":
            pipe.vae.enable_slicing()
        from .qwen_speed import apply_caption_speedups

        apply_caption_speedups(pipe)
        # e. Regional compile: the 60 identical blocks compile once and share the code. fast (one graph per block,
        #    Ulysses aside): real-valued RoPE, block forwards compiled with the text length dynamic, and the step
        #    cache's hooks (opt-in, approximate) around them (qwen_speed.py).
        whole_graph = self._prepare_parallel(pipe)
        if preset == "fast" and whole_graph:
            from .qwen_speed import prepare_fast_transformer

            self._compiled = prepare_fast_transformer(pipe.transformer, compile_backend, fast_step_cache())
        elif compile_backend != "none":
            pipe.transformer.compile_repeated_blocks(fullgraph=whole_graph, backend=compile_backend)
            self._compiled = True

    def _prepare_parallel(self, pipe) -> bool:
        """Multi-GPU backends (qwen_parallel) split the model here, before compiling; returns whether each block
        still compiles as one graph."""
        return True

    def _run_pipeline(self, pipe, **call):
        """The pipeline's denoising loop and decoder; multi-GPU backends run it on every rank."""
        return pipe(**call).images[0]

    def _quantize_fp8(self, transformer) -> None:
        try:
            from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_
        except ImportError as error:
            raise ModelUnavailable(f"the fast preset needs torchao for fp8 ({error}); pip install torchao") from error
        blocks = transformer.transformer_blocks
        # Only the blocks' linear layers: the embedders and the final projection stay bf16 (small, and the most
        # sensitive to rounding).
        # torchao's default also switches inductor's coordinate-descent tuning on, process-wide (qwen_speed.py:
        # fast_tuning): faster kernels, minutes of tuning on a cold start, half a minute on each restart (torch 2.11).
        from .qwen_speed import fast_tuning

        quantize_(blocks, Float8DynamicActivationFloat8WeightConfig(
            granularity=PerRow(), set_inductor_config=fast_tuning() == "coordesc"))

    def _oom_message(self, preset: str, stage: str) -> str:
        if self._tiered:
            from .qwen_tiers import TIERS

            names = list(TIERS)
            smaller = names[names.index(self.tier_plan.tier) + 1:] if self.tier_plan.tier in names else []
            hint = f"restart the server with --vram {smaller[0]}" if smaller else "close other programs using the GPU"
            return (f"the GPU ran out of memory while {stage} in the {self.tier_plan.tier} GB tier; {hint}, "
                    "or use fewer layers or resolution 640")
        lighter = "lowvram" if preset != "lowvram" else "lowvram with offload=sequential"
        return (
            f"the GPU ran out of memory while {stage} with preset {preset!r}; try preset {lighter!r} "
            "(weights stream from CPU RAM, peak under 22 GiB), fewer layers or resolution 640"
        )

    def _attention_kernels(self, preset: str):
        """Context that puts the preferred SDPA kernel first (exact/fast on CUDA), else does nothing."""
        import contextlib

        if preset not in ("exact", "fast") or not self.device.startswith("cuda") or sdpa_preference() != "cudnn":
            return contextlib.nullcontext()
        from torch.nn.attention import SDPBackend, sdpa_kernel

        order = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                 SDPBackend.MATH]
        return sdpa_kernel(order, set_priority=True)

    @contextmanager
    def _text_encoder_on(self, pipe, device):
        """With offloading, the text encoder visits the GPU for captioning and encoding, then goes back."""
        swap = self._placement.swap if self._placement is not None else None
        if swap is not None:
            with swap.text_encoder_turn():
                yield
            return
        if not self._text_encoder_offloaded:
            yield
            return
        pipe.text_encoder.to(device)
        try:
            yield
        finally:
            pipe.text_encoder.to("cpu")
            self._free_cuda()

    @contextmanager
    def _oom_as_error(self, preset: str, stage: str):
        try:
            yield
        except JobCanceled:
            raise
        except BaseException as error:
            if _is_oom(error):
                self._free_cuda()
                raise OutOfMemory(self._oom_message(preset, stage)) from error
            raise

    # ----------------------------------------------------------------------------------------------- decompose
    def layer_count(self, image: Image.Image, params: DecomposeParams) -> int:
        """How many layers the model is asked for: the requested count, or for "auto" (when called directly;
        jobs and the CLI go through refine.decompose_refined, which asks for a count and drops what is empty or
        repeated) refine's AUTO_DECOMPOSE_LAYERS."""
        from ..refine import AUTO_DECOMPOSE_LAYERS

        return params.layer_count(AUTO_DECOMPOSE_LAYERS)

    def decompose(
        self,
        image: Image.Image,
        params: DecomposeParams,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
    ) -> LayerStack:
        import torch
        from diffusers.pipelines.qwenimage.pipeline_qwenimage_layered import calculate_dimensions

        cancel = cancel or CancelToken()
        watch = Stopwatch()

        # 1. Check inputs
        if not isinstance(image, Image.Image):
            raise InvalidInput(f"expected a PIL image, got {type(image).__name__}")
        if image.mode not in ("RGB", "RGBA"):
            raise InvalidInput(f"expected RGB or RGBA, got mode {image.mode!r}; convert the image first")
        params.validate()
        image = image.convert("RGBA")
        input_width_px, input_height_px = image.size
        if min(input_width_px, input_height_px) < 16:
            raise InvalidInput(f"the image is {input_width_px}×{input_height_px} px; both sides must be at least 16 px")
        seed = params.seed if params.seed is not None else secrets.randbelow(2**63)
        layer_count = self.layer_count(image, params)
        cancel.raise_if_canceled()

        # 2. Load the pipeline for this preset (kept between jobs; a different preset reloads)
        if self.pipe is None or (self._configured != (params.preset, params.offload) and not self._tiered):
            progress("load", 0, 1)
            watch.start("load")
            self.load(params.preset, params.offload)
            watch.stop()
            progress("load", 1, 1)
        pipe = self.pipe
        if params.num_inference_steps < 2 and pipe.scheduler.config.get("shift_terminal"):
            # The scheduler stretches its schedule to end at shift_terminal, dividing by (1 - last sigma): with a
            # single step that sigma is 1 and every layer comes out NaN.
            raise InvalidInput(
                "num_inference_steps must be at least 2 for this model (its scheduler divides by zero with one "
                "step); the model card uses 50"
            )
        device = pipe._execution_device
        # The pipeline's working size: about resolution² pixels with the input's aspect, multiple of 32 (its
        # condition image) and of 16 (its latents; equal here since 32 divides both).
        work_width_px, work_height_px = calculate_dimensions(params.resolution**2, input_width_px / input_height_px)
        prompt_image = pipe.image_processor.resize(image, work_height_px, work_width_px)
        cancel.raise_if_canceled()

        with self._text_encoder_on(pipe, device):
            # 3. Caption (empty prompt): the VL text encoder describes the image
            prompt = params.prompt.strip()
            if not prompt:
                progress("caption", 0, 1)
                watch.start("caption")
                caption_key = self._captions.key(prompt_image, params.use_en_prompt)
                caption = self._captions.get(caption_key)
                if caption is None:
                    with self._oom_as_error(params.preset, "captioning"), torch.inference_mode():
                        caption = pipe.get_image_caption(prompt_image, use_en_prompt=params.use_en_prompt,
                                                         device=device)
                    self._captions.put(caption_key, caption)
                prompt = caption
                watch.stop()
                progress("caption", 1, 1)
                # A random-weight or unlucky caption can be empty; the pipeline would then caption again.
                prompt = prompt or "an image"
            cancel.raise_if_canceled()

            # 4. Encode the prompt (and the negative prompt when true CFG runs)
            do_true_cfg = params.true_cfg_scale > 1 and params.negative_prompt is not None
            progress("encode", 0, 2 if do_true_cfg else 1)
            watch.start("encode")
            with self._oom_as_error(params.preset, "encoding the prompt"), torch.inference_mode():
                prompt_embeds, prompt_mask = pipe.encode_prompt(
                    prompt, device=device, max_sequence_length=MAX_SEQUENCE_LENGTH
                )
                negative_embeds = negative_mask = None
                if do_true_cfg:
                    progress("encode", 1, 2)
                    negative_embeds, negative_mask = pipe.encode_prompt(
                        params.negative_prompt, device=device, max_sequence_length=MAX_SEQUENCE_LENGTH
                    )
            if params.preset != "stock":
                # An all-ones mask makes SDPA use its masked (slower) kernels for nothing; diffusers 0.42 already
                # drops it in encode_prompt, older versions did not.
                prompt_mask = _drop_full_mask(prompt_mask)
                negative_mask = _drop_full_mask(negative_mask)
            watch.stop()
            progress("encode", 2 if do_true_cfg else 1, 2 if do_true_cfg else 1)
            cancel.raise_if_canceled()

        # 5. Denoise, then 6. decode: the pipeline's own loop and decoder. It reports and checks cancellation after
        # every step; the last step's report marks where decoding starts.
        total_steps = params.num_inference_steps
        step_ends: list[float] = []

        def on_step_end(pipeline, step_index, timestep, callback_kwargs):
            step_ends.append(time.perf_counter())
            progress("denoise", step_index + 1, total_steps)
            if cancel.canceled:
                # _interrupt makes the loop skip its remaining steps; raising here also skips the decoder, which
                # would otherwise still run on the half-denoised latents.
                pipeline._interrupt = True
                raise JobCanceled(f"canceled during denoising after {step_index + 1} of {total_steps} steps")
            if step_index + 1 == total_steps:
                progress("decode", 0, layer_count)
            return callback_kwargs

        progress("denoise", 0, total_steps)
        reset_step_cache(pipe.transformer)  # a canceled job leaves its state behind
        denoise_started = time.perf_counter()
        generator = torch.Generator("cpu").manual_seed(seed)
        with self._oom_as_error(params.preset, "denoising"), _quiet_pipeline_warnings(), \
                self._attention_kernels(params.preset):
            frames = self._run_pipeline(
                pipe,
                image=image,
                prompt=prompt,  # with prompt_embeds given, a non-empty prompt only stops the pipeline captioning
                prompt_embeds=prompt_embeds,
                prompt_embeds_mask=prompt_mask,
                negative_prompt_embeds=negative_embeds,
                negative_prompt_embeds_mask=negative_mask,
                true_cfg_scale=params.true_cfg_scale,
                layers=layer_count,
                num_inference_steps=total_steps,
                generator=generator,
                resolution=params.resolution,
                cfg_normalize=params.cfg_normalize,
                use_en_prompt=params.use_en_prompt,
                max_sequence_length=MAX_SEQUENCE_LENGTH,
                # diffusers 0.42.1's output_type="latent" path fails (returns an unset variable), so the pipeline
                # decodes; "np" gives H×W×4 floats in [0, 1] for each layer.
                output_type="np",
                callback_on_step_end=on_step_end,
            )
        finished = time.perf_counter()
        # The pipeline's VAE encoding of the input (tens of ms) falls into "denoise".
        watch.timings_s["denoise"] = step_ends[-1] - denoise_started
        # The first step carries the compile warm-up after a (re)load, and the input's VAE encoding.
        watch.timings_s["first_step_s"] = step_ends[0] - denoise_started
        watch.timings_s["decode"] = finished - step_ends[-1]
        progress("decode", layer_count, layer_count)

        # 7. A back→front LayerStack at the model's working size: the refine stage (inference_server.refine) brings
        #    the layers to the input's size, edge-aware and with an exact composite, which a plain resize is not.
        if not np.isfinite(frames).all():
            raise StrataError(
                f"the model produced NaN/inf values (preset {params.preset}, {params.num_inference_steps} steps); "
                "try preset 'stock' or more steps"
            )
        layers = []
        for index, frame in enumerate(frames):
            rgba = np.clip(np.rint(frame * 255.0), 0, 255).astype(np.uint8)
            layers.append(Layer(rgba, "Background" if index == 0 else f"Layer {index}"))

        timings = dict(watch.timings_s)
        timings["denoise_per_step"] = timings["denoise"] / total_steps
        if self._placement is not None and self._placement.swap is not None:
            timings["model_turns"] = self._placement.swap.turn_seconds
        notes = [
            f"Qwen-Image-Layered ({self.model_id}), preset {params.preset}, offload {params.offload}, "
            f"worked at {work_width_px}×{work_height_px} px (input {input_width_px}×{input_height_px} px)",
            "layer 0 is the model's background layer; later layers are foreground, back to front",
        ]
        if self.tier_plan is not None:
            notes.append(f"VRAM tier: {self.tier_plan.summary} ({self.tier_plan.reason})")
        if self.transformer_path:
            notes.append(f"transformer from {self.transformer_path}")
        if params.preset in APPROXIMATE_PRESETS:
            cache = fast_step_cache()
            with_cache = "" if cache == "none" else " + step cache " + cache
            notes.append(f"preset {params.preset} is approximate (fp8{with_cache}"
                         "): layers differ from stock")
        if not params.prompt.strip():
            notes.append(f"caption: {prompt}")
        if params.auto_layers:
            notes.append(f"layers: auto; ran the model at {layer_count} layers")
        stack_params = params.to_dict()
        stack_params["seed"] = seed
        if self.tier_plan is not None:
            stack_params["vram_tier"] = self.tier_plan.tier
        return LayerStack(
            layers,
            backend=self.name,
            params=stack_params,
            seed=seed,
            timings_s=timings,
            notes=notes,
            parent=(
                {"job": params.parent_job, "layer": params.parent_layer} if params.parent_job is not None else None
            ),
        )


def _cpu_machine():
    """A stand-in for the CPU device: its RAM serves as both memories (tiers run there only in tests)."""
    from .qwen_tiers import Machine, host_ram_gib

    total, available = host_ram_gib()
    return Machine(free_vram_gib=available, total_vram_gib=total, total_ram_gib=total, available_ram_gib=available,
                   compute_capability=(0, 0), gpu_name="the CPU")


@contextmanager
def _quiet_pipeline_warnings():
    """The pipeline warns that prompt embeddings came without a mask; None is what it passes itself for no padding."""
    from diffusers.utils import logging as diffusers_logging

    logger = diffusers_logging.get_logger("diffusers.pipelines.qwenimage.pipeline_qwenimage_layered")
    level = logger.level
    logger.setLevel(diffusers_logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _drop_full_mask(mask):
    if mask is not None and bool(mask.all()):
        return None
    return mask
