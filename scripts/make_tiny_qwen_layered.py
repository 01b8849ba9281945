# SPDX-License-Identifier: GPL-3.0-or-later
"""Build a tiny, random-weight ``QwenImageLayeredPipeline`` folder, fully offline.

    python scripts/make_tiny_qwen_layered.py OUT_DIR
    python scripts/make_tiny_qwen_layered.py OUT_DIR --gguf      # also OUT_DIR/transformer-Q8_0.gguf

Same classes and the same layered flags as Qwen/Qwen-Image-Layered (RGBA VAE, ``use_additional_t_cond``,
``use_layer3d_rope``, a Qwen2.5-VL text encoder that can caption), only with a few channels and layers, so the
whole folder is a few MB and a full decomposition (caption, encode, denoise, decode) runs on a CPU in seconds.
It loads back with ``QwenImageLayeredPipeline.from_pretrained(OUT_DIR)`` and ``HF_HUB_OFFLINE=1``.

The tokenizer is built here rather than downloaded: a byte-level BPE vocabulary (the 256 byte symbols, no merges)
plus the special tokens the pipeline's templates use (``<|im_start|>``, ``<|vision_start|>``, ``<|image_pad|>``,
...). Prompts therefore cost one token a byte, which is fine for a model this small.

``--gguf`` also writes the tiny transformer as a GGUF file the way the community's Qwen-Image GGUFs are laid out
(diffusers tensor names, architecture "qwen_image"; 2-D weights whose rows split into 32-value blocks in Q8_0 or
Q4_0, the rest F32), which the backend loads with ``--transformer FILE.gguf`` next to ``--model OUT_DIR``.

Tests import ``build_tiny_pipeline(out_dir)`` and ``write_transformer_gguf`` from this file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Run as a script, Python puts scripts/ on the path, not the repository root.
_REPO_ROOT = Path(__file__).resolve().parent.parent
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

# Special tokens in the order Qwen2/Qwen2.5-VL numbers them (right after the ordinary vocabulary).
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# The caption prompt turns a 640² image into a few hundred vision patches; this cap (in pixels) keeps the tiny
# vision tower's input to 8×8 patches of 14 px. The real processor allows up to 12.8 MP.
CAPTION_MAX_PIXELS = 112 * 112

# The real pipeline lets the VL model write up to 512 caption tokens. A random model rarely emits <|im_end|>, so
# every byte token at or above 0x80 also ends generation here: about one token in two stops it, and a caption
# is a few tokens long. Only this tiny model's generation_config.json says so.
STOP_BYTES_FROM = 0x80


def _byte_symbols() -> list[str]:
    """GPT-2's byte-to-unicode table: the 256 symbols a byte-level BPE uses for raw bytes, in byte order."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    by_byte = dict(zip(printable, codes, strict=False))
    return [chr(by_byte[byte]) for byte in range(256)]


def build_tokenizer(first_special_id: int | None = None):
    """Byte-level BPE tokenizer (256 byte symbols, no merges) plus Qwen's special tokens.

    first_special_id: id of ``<|endoftext|>`` (the others follow); default right after the bytes. The GPU benchmark
    passes Qwen2's 151643 so the ids index the real 152,064-row embedding.
    """
    from transformers import Qwen2Tokenizer

    vocab = {symbol: index for index, symbol in enumerate(_byte_symbols())}
    first = len(vocab) if first_special_id is None else first_special_id
    for offset, token in enumerate(SPECIAL_TOKENS):
        vocab[token] = first + offset
    return Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        additional_special_tokens=SPECIAL_TOKENS[1:],
        model_max_length=32768,
    )


def build_processor(tokenizer, max_pixels: int | None = CAPTION_MAX_PIXELS):
    """The caption processor: Qwen2-VL's image processor (14 px patches, 2×2 merge) with ``tokenizer``.

    max_pixels None keeps the real processor's limits. Without torchvision the processor is the backend's
    image-only subclass (see ``image_only_processor_class``).
    """
    from transformers import Qwen2VLProcessor

    from inference_server.backends.qwen import image_only_processor_class, torchvision_available

    size = None if max_pixels is None else {"shortest_edge": 56 * 56, "longest_edge": max_pixels}
    options = dict(patch_size=14, temporal_patch_size=2, merge_size=2, **({"size": size} if size else {}))
    if torchvision_available():
        from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

        return Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(**options), tokenizer=tokenizer,
                                video_processor=Qwen2VLVideoProcessor())
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return image_only_processor_class()(image_processor=Qwen2VLImageProcessorPil(**options), tokenizer=tokenizer)


def build_scheduler():
    """Qwen-Image's scheduler settings (dynamic shifting; the pipeline passes mu). The GPU benchmark uses it too."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(
        base_image_seq_len=256,
        base_shift=0.5,
        max_image_seq_len=8192,
        max_shift=0.9,
        shift=1.0,
        shift_terminal=0.02,
        use_dynamic_shifting=True,
        time_shift_type="exponential",
    )


def build_components(seed: int = 0) -> dict:
    """The six components of a tiny layered pipeline, random weights drawn from ``seed``."""
    import torch
    from diffusers import AutoencoderKLQwenImage, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = build_tokenizer()
    token_id = tokenizer.convert_tokens_to_ids
    vocab_size = len(tokenizer)
    text_hidden = 16

    torch.manual_seed(seed)
    # Real model: in_channels 64 (16 latent channels × 2×2 patch), out 16, 60 blocks of 24 heads × 128.
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=32,  # 8 latent channels × 2×2 patch
        out_channels=8,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=text_hidden,
        guidance_embeds=False,
        axes_dims_rope=(4, 2, 2),
        use_additional_t_cond=True,
        use_layer3d_rope=True,
    )

    torch.manual_seed(seed)
    # Real layered VAE: RGBA in and out (input_channels 4), z_dim 16, three spatial halvings (×8). The tiny one
    # keeps the ×8 factor so token counts match the real model's (1,600 a frame at 640 px). z_dim must not be 4:
    # the pipeline takes a 4-channel tensor for ready-made latents, and RGBA pixels have 4 channels too.
    z_dim = 8
    vae = AutoencoderKLQwenImage(
        base_dim=4,
        z_dim=z_dim,
        dim_mult=[1, 1, 2, 2],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        input_channels=4,
        latents_mean=[0.0] * z_dim,
        latents_std=[1.0] * z_dim,
    )

    scheduler = build_scheduler()

    torch.manual_seed(seed)
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": text_hidden,
            "intermediate_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "vocab_size": vocab_size,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0,
            "eos_token_id": token_id("<|im_end|>"),
            "pad_token_id": token_id("<|endoftext|>"),
            "bos_token_id": None,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_heads": 2,
            "out_hidden_size": text_hidden,
            "fullatt_block_indexes": [1],
        },
        vocab_size=vocab_size,
        image_token_id=token_id("<|image_pad|>"),
        video_token_id=token_id("<|video_pad|>"),
        vision_start_token_id=token_id("<|vision_start|>"),
        vision_end_token_id=token_id("<|vision_end|>"),
    )
    text_encoder = Qwen2_5_VLForConditionalGeneration(config)
    text_encoder.eval()
    stop_ids = [token_id("<|im_end|>"), token_id("<|endoftext|>")] + list(range(STOP_BYTES_FROM, 256))
    text_encoder.generation_config.eos_token_id = stop_ids
    text_encoder.generation_config.pad_token_id = token_id("<|endoftext|>")
    text_encoder.generation_config.do_sample = False

    processor = build_processor(tokenizer)

    return {
        "transformer": transformer,
        "vae": vae,
        "scheduler": scheduler,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "processor": processor,
    }


def build_tiny_pipeline(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a loadable tiny pipeline folder to ``out_dir`` and return its path."""
    from diffusers import QwenImageLayeredPipeline

    pipe = QwenImageLayeredPipeline(**build_components(seed))
    return save_pipeline(pipe, out_dir, {"seed": seed, "purpose": "tests"})


def save_pipeline(pipe, out_dir: str | Path, marker: dict, marker_name: str = "TINY_RANDOM_WEIGHTS.json") -> Path:
    """Save a random-weight pipeline as a folder that loads like the real model's; ``marker`` goes into the file
    ``marker_name``, so nobody mistakes its output for the real model's."""
    out_dir = Path(out_dir)
    pipe.save_pretrained(out_dir)
    # Without torchvision the processor is the image-only subclass; record the real class so the folder reads
    # like the real model's (the backend picks the loader by what is installed, not by this name).
    index_path = out_dir / "model_index.json"
    index = json.loads(index_path.read_text())
    index["processor"] = ["transformers", "Qwen2VLProcessor"]
    index_path.write_text(json.dumps(index, indent=2) + "\n")
    processor_config = out_dir / "processor" / "processor_config.json"
    if processor_config.is_file():
        config = json.loads(processor_config.read_text())
        config["processor_class"] = "Qwen2VLProcessor"
        processor_config.write_text(json.dumps(config, indent=2) + "\n")
    (out_dir / marker_name).write_text(json.dumps(marker) + "\n")
    return out_dir


GGUF_ARCH = "qwen_image"
GGUF_TYPES = ("Q8_0", "Q4_0")


def write_transformer_gguf(transformer_or_state: object, path: str | Path, qtype: str = "Q8_0",
                           arch: str = GGUF_ARCH) -> Path:
    """Write a transformer (or a name → tensor dict) as a GGUF file; 2-D weights with rows of whole 32-value blocks
    in ``qtype``, everything else F32. Written to a temporary name and renamed, so a crash leaves no half file."""
    import gguf
    import numpy as np

    if qtype not in GGUF_TYPES:
        raise ValueError(f"qtype must be one of {', '.join(GGUF_TYPES)}, got {qtype!r}")
    state = transformer_or_state.state_dict() if hasattr(transformer_or_state, "state_dict") else transformer_or_state
    quant = getattr(gguf.GGMLQuantizationType, qtype)
    block_size, _ = gguf.GGML_QUANT_SIZES[quant]
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    writer = gguf.GGUFWriter(str(partial), arch=arch)
    writer.add_name("tiny random Qwen-Image-Layered transformer (tests)")
    for name, tensor in state.items():
        array = tensor.detach().float().cpu().numpy()
        if array.ndim == 2 and array.shape[-1] % block_size == 0:
            writer.add_tensor(name, gguf.quants.quantize(array, quant), raw_dtype=quant)
        else:
            writer.add_tensor(name, np.ascontiguousarray(array, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    partial.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="folder to write (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--gguf", nargs="?", const="Q8_0", choices=GGUF_TYPES, default=None,
                        help="also write the transformer as OUT_DIR/transformer-TYPE.gguf (default type Q8_0)")
    args = parser.parse_args(argv)
    path = build_tiny_pipeline(args.out_dir, seed=args.seed)
    print(path)
    if args.gguf:
        from diffusers import QwenImageTransformer2DModel

        transformer = QwenImageTransformer2DModel.from_pretrained(path, subfolder="transformer")
        print(write_transformer_gguf(transformer, path / f"transformer-{args.gguf}.gguf", args.gguf))
    return 0


if __name__ == "__main__":
    sys.exit(main())
