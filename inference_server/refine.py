# SPDX-License-Identifier: GPL-3.0-or-later
"""The refine stage: every backend's layers pass through it before they are written (and ``strata refine`` runs it
alone on any layer folder).

What comes in: straight-alpha RGBA layers, back to front, at any resolution (the Qwen model works at about 640² or
1024² px; another tool's layers may have any size; the CPU backend's are already at the input's size), and the input
image at full resolution (RGB or RGBA). What goes out: layers at the input's size whose straight-alpha "over"
composite (``layers.composite_over``) equals the input within one level (1/255) at every pixel, colour and alpha.

Steps of ``refine_layers`` (cancellation is checked and progress reported at every one, and at every band of rows):

1. Check inputs.
2. Prepare each low-resolution layer: a colour guided filter (He, Sun & Tang, "Guided Image Filtering", and its fast
   variant "Fast Guided Filter", He & Sun 2015) is fitted at the layer's own size, with the input area-downscaled to
   that size as the guide: locally, alpha = a·colour + b. The coefficients (a, b) are smooth, so they are upsampled
   bilinearly and applied to the full-resolution input, and the alpha edge lands where the input's edge is.
   The layer's straight colour is extended under zero alpha (normalised box filters) so upsampling never blends
   in the undefined colour there.
3. With ``auto``: drop layers that are empty (coverage < 0.1 %), that repeat the whole composite, or that
   duplicate the layer right above them (merged into it), each with a note. Judged on a ≤ 512 px preview.
4. Per band of rows (bounded memory: a few hundred MB whatever the image size):
   a. alpha: upsampled (guided) or as given, rounded to 8 bits; then the composite's alpha is made the input's:
      where the layers above the bottom cover more than the input, their alphas are scaled down together; the
      bottom layer's alpha is solved so the stack's alpha equals the input's (1 on an opaque input, so the
      bottom layer is opaque there; on an RGBA input it is whatever the input's transparency asks for).
   b. colour (unblending): with the 8-bit alphas fixed, each pixel's composite is Σ q_k·F_k with
      q_k = α_k·Π_{j>k}(1 − α_j). The colours are moved as little as possible (least squares, weighted by
      how much each layer shows) so that the composite equals the input: where one layer is the visible top
      contributor its colour becomes the input's; semi-transparent mixes share the correction. Colours that
      clip at 0 or 255 pass their rest to the other contributors.
   c. residual: after rounding to 8 bits, any pixel whose composite still rounds to more than one level off is
      fixed on its top contributor, and as a last resort every contributor takes the input's colour there.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

from .backends.base import CancelToken, ProgressCallback, no_progress
from .errors import InvalidInput
from .layers import Layer, LayerStack, composite_over

logger = logging.getLogger(__name__)

GUIDE_RADIUS_PX = 2  # guided-filter window radius at the layer's own (low) resolution
GUIDE_EPS = 1e-4  # regularisation (guide in [0, 1]): small, so alpha follows the input's edges closely
ALPHA_DENOISE_EPS = 0.01  # self-guided smoothing of a layer's own alpha: wobbles of σ ≲ 0.05 are noise
DOUBT_FLOOR = 16.0  # (0–255)²: the colour uncertainty of a flat layer (≈ the model's colour jitter)
FULL_DOUBT = 1.0  # ... and of a layer given at full size (only rounding to correct)
BACKGROUND_COVERAGE = 0.9  # a bottom layer covering this much is the background: it fills opaque gaps
ALPHA_SNAP = 0.05  # upsampled alpha below this is 0, above 1 − this is 1 (the model's alpha noise)
COLOUR_LINE_MIN = 40.0  # (0–255) layer and backdrop colours at least this far apart make alpha well posed
COLOUR_LINE_FIT = 10.0  # ... and the input lies within this of the line between them
EMPTY_COVERAGE = 0.001  # "auto": layers covering less than 0.1 % of the image are dropped
DUPLICATE_IOU = 0.92  # "auto": soft alpha IoU above which a layer repeats another (or the whole composite)
DUPLICATE_COLOR_L1 = 8.0  # ... and their colours differ by less than this (mean, 0–255) where both show
PREVIEW_SIDE_PX = 512
BAND_BUDGET_BYTES = 192 * 2**20  # working memory of one band of rows (float32 planes)
SOLVE_ROUNDS = 4  # clip-and-redistribute rounds of the colour solve
# The qwen backend has no notion of "as many layers as the image has": with layers "auto" it decomposes into
# this many and the refine stage drops and merges what is empty or repeated.
AUTO_DECOMPOSE_LAYERS = 6


@dataclass
class RefineResult:
    layers: list[np.ndarray]  # H×W×4 uint8, back to front
    names: list[str]
    notes: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------- guided filter

def _box(values: np.ndarray, radius_px: int) -> np.ndarray:
    size = 2 * radius_px + 1
    return cv2.boxFilter(values, -1, (size, size), normalize=True, borderType=cv2.BORDER_REFLECT)


class _GuidedFit:
    """The guide's half of a colour guided filter at one size: window means and the inverse covariances, shared by
    every layer of that size."""

    def __init__(self, guide: np.ndarray, radius_px: int = GUIDE_RADIUS_PX, eps: float = GUIDE_EPS) -> None:
        self.guide = guide  # h×w×3 float32 in [0, 1]
        self.radius_px = radius_px
        self.mean = _box(guide, radius_px)
        r, g, b = (guide[..., c] for c in range(3))
        mr, mg, mb = (self.mean[..., c] for c in range(3))
        var_rr = _box(r * r, radius_px) - mr * mr + eps
        var_rg = _box(r * g, radius_px) - mr * mg
        var_rb = _box(r * b, radius_px) - mr * mb
        var_gg = _box(g * g, radius_px) - mg * mg + eps
        var_gb = _box(g * b, radius_px) - mg * mb
        var_bb = _box(b * b, radius_px) - mb * mb + eps
        # Inverse of the symmetric 3×3 covariance by cofactors.
        inv_rr = var_gg * var_bb - var_gb * var_gb
        inv_rg = var_gb * var_rb - var_rg * var_bb
        inv_rb = var_rg * var_gb - var_gg * var_rb
        inv_gg = var_rr * var_bb - var_rb * var_rb
        inv_gb = var_rb * var_rg - var_rr * var_gb
        inv_bb = var_rr * var_gg - var_rg * var_rg
        det = var_rr * inv_rr + var_rg * inv_rg + var_rb * inv_rb
        det = np.where(np.abs(det) < 1e-12, 1e-12, det)
        self.inverse = [x / det for x in (inv_rr, inv_rg, inv_rb, inv_gg, inv_gb, inv_bb)]

    def coefficients(self, alpha: np.ndarray) -> np.ndarray:
        """h×w×4 float32: the window-averaged slopes (a_r, a_g, a_b) of alpha ≈ a·guide + b, and alpha itself.

        Applied at full size as alpha_up + a·(guide − guide_up) (``_up``: bilinear from this size): the slopes
        carry the detail the downscaled guide lost into the alpha, so an edge lands where the input's edge is,
        while where the input is flat (a hidden edge under an opaque layer) alpha stays the bilinear upsample
        instead of a window-wide blur."""
        radius = self.radius_px
        mean_p = _box(alpha, radius)
        cov = [_box(self.guide[..., c] * alpha, radius) - self.mean[..., c] * mean_p for c in range(3)]
        i_rr, i_rg, i_rb, i_gg, i_gb, i_bb = self.inverse
        a_r = i_rr * cov[0] + i_rg * cov[1] + i_rb * cov[2]
        a_g = i_rg * cov[0] + i_gg * cov[1] + i_gb * cov[2]
        a_b = i_rb * cov[0] + i_gb * cov[1] + i_bb * cov[2]
        slopes = _box(np.stack([a_r, a_g, a_b], axis=2).astype(np.float32), radius)
        return np.concatenate([slopes, _denoise_alpha(alpha)[..., None]], axis=2)


def _denoise_alpha(alpha: np.ndarray, radius_px: int = 1, eps: float = ALPHA_DENOISE_EPS) -> np.ndarray:
    """Alpha guided by itself: steps between 0 and 1 (variance ≫ eps) stay, small wobbles (the model's alpha
    noise, variance ≪ eps) are averaged away. Hidden edges stay as sharp as the layer gave them."""
    alpha = alpha.astype(np.float32)
    mean = _box(alpha, radius_px)
    variance = np.maximum(_box(alpha * alpha, radius_px) - mean * mean, 0.0)
    slope = variance / (variance + eps)
    return _box(slope, radius_px) * alpha + _box((1.0 - slope) * mean, radius_px)


def _colour_and_doubt(rgba: np.ndarray) -> np.ndarray:
    """h×w×4 float32: the layer's straight colour extended under zero alpha (see ``_extend_colour``), and how
    unsure its upsampled colour is: the local colour variance (0–255² summed over channels) plus a floor. A flat
    layer is sure of its colour; a textured one lost detail in the downscale and takes the corrections."""
    colour = _extend_colour(rgba)
    mean = _box(colour, 1)
    variance = np.maximum(_box(colour * colour, 1) - mean * mean, 0.0).sum(axis=2)
    return np.concatenate([colour, (variance + DOUBT_FLOOR)[..., None]], axis=2).astype(np.float32)


def _extend_colour(rgba: np.ndarray) -> np.ndarray:
    """h×w×3 float32 straight colour (0–255), extended under zero alpha from the nearest visible colours."""
    alpha = rgba[..., 3].astype(np.float32) / 255.0
    premul = rgba[..., :3].astype(np.float32) * alpha[..., None]
    colour = rgba[..., :3].astype(np.float32)
    known = alpha > 0.05
    if known.all():
        return colour
    if not known.any():
        return colour
    # Normalised convolution at growing radii: the first one with enough alpha around a pixel gives its colour.
    filled = known.copy()
    radius = 2
    height, width = alpha.shape
    while not filled.all() and radius < 2 * max(height, width):
        weight = _box(alpha, radius)
        guess = _box(premul, radius) / np.maximum(weight, 1e-6)[..., None]
        take = ~filled & (weight > 1e-3)
        colour[take] = guess[take]
        filled |= take
        radius *= 3
    if not filled.all():
        colour[~filled] = premul.reshape(-1, 3).sum(0) / max(float(alpha.sum()), 1e-6)
    return colour


# ---------------------------------------------------------------------------------------------------- resampling

def _band_map(small_hw: tuple[int, int], full_hw: tuple[int, int], row0: int,
              row1: int) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps for rows [row0, row1) of the full frame sampling a small image (pixel centres aligned, as
    cv2.resize's bilinear does), so bands stitch seamlessly."""
    small_h, small_w = small_hw
    full_h, full_w = full_hw
    xs = ((np.arange(full_w, dtype=np.float32) + 0.5) * (small_w / full_w) - 0.5).astype(np.float32)
    ys = ((np.arange(row0, row1, dtype=np.float32) + 0.5) * (small_h / full_h) - 0.5).astype(np.float32)
    map_x = np.broadcast_to(xs[None, :], (row1 - row0, full_w)).copy()
    map_y = np.broadcast_to(ys[:, None], (row1 - row0, full_w)).copy()
    # Fixed-point maps (1/32 px): about twice as fast to apply, far finer than the layers' own pixels.
    return cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)


def _remap(small: np.ndarray, maps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return cv2.remap(small, maps[0], maps[1], interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


# ---------------------------------------------------------------------------------------------------- the stage

class _Source:
    """One layer as it came in: either already at full size, or low-res with its guided-filter coefficients."""

    def __init__(self, rgba: np.ndarray, name: str) -> None:
        self.rgba = rgba
        self.name = name
        # h×w×4 float32 at the layer's size (see refine_layers step 3): alpha slopes + alpha; colour + doubt
        self.small_alpha: np.ndarray | None = None
        self.small_colour: np.ndarray | None = None

    @property
    def size_hw(self) -> tuple[int, int]:
        return int(self.rgba.shape[0]), int(self.rgba.shape[1])


def _check(layers: list[np.ndarray], target: np.ndarray) -> None:
    if not layers:
        raise InvalidInput("no layers to refine")
    if target.ndim != 3 or target.shape[2] != 4 or target.dtype != np.uint8:
        raise InvalidInput(f"the original must be H×W×4 uint8 (RGBA), got {target.shape} {target.dtype}")
    for index, rgba in enumerate(layers):
        if rgba.ndim != 3 or rgba.shape[2] != 4 or rgba.dtype != np.uint8:
            raise InvalidInput(f"layer {index} must be H×W×4 uint8 (RGBA), got {rgba.shape} {rgba.dtype}")
        aspect_layer = rgba.shape[1] / rgba.shape[0]
        aspect_target = target.shape[1] / target.shape[0]
        if abs(math.log(aspect_layer / aspect_target)) > 0.1:
            raise InvalidInput(
                f"layer {index} is {rgba.shape[1]}×{rgba.shape[0]} px, the original {target.shape[1]}×"
                f"{target.shape[0]} px: their aspect ratios differ by more than 10 %, so the layers are not of "
                f"this image (or were cropped)")


def _preview(rgba: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """rgba resized (premultiplied, area) to size_wh, as uint8 straight RGBA."""
    if (rgba.shape[1], rgba.shape[0]) == size_wh:
        return rgba
    return np.asarray(Image.fromarray(rgba, "RGBA").resize(size_wh, Image.Resampling.BOX))


def _prune(sources: list[_Source], target: np.ndarray) -> tuple[list[_Source], list[str]]:
    """"auto": drop empty layers, layers that repeat the whole composite, and merge a layer into the one above it
    when both are the same. Judged on a small preview; returns the kept layers and one note per change."""
    notes: list[str] = []
    scale = min(1.0, PREVIEW_SIDE_PX / max(target.shape[:2]))
    size_wh = (max(1, round(target.shape[1] * scale)), max(1, round(target.shape[0] * scale)))
    target_small = _preview(target, size_wh).astype(np.float32)
    previews = [_preview(source.rgba, size_wh).astype(np.float32) for source in sources]

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        union = np.maximum(a, b).sum()
        return float(np.minimum(a, b).sum() / union) if union > 0 else 1.0

    def colour_l1(a: np.ndarray, b: np.ndarray) -> float:
        both = (a[..., 3] > 127) & (b[..., 3] > 127)
        return float(np.abs(a[..., :3][both] - b[..., :3][both]).mean()) if both.any() else 255.0

    keep = list(range(len(sources)))
    for index in list(keep):
        coverage = float(sources[index].rgba[..., 3].mean() / 255.0)
        if coverage < EMPTY_COVERAGE and len(keep) > 1:
            keep.remove(index)
            notes.append(f"auto: dropped layer {index} ({sources[index].name!r}): empty (covers "
                         f"{coverage * 100:.3f} % of the image)")
    for index in list(keep):
        if index == keep[0] or len(keep) <= 1:
            continue  # the bottom layer may hold everything: it is the background, not a repeat
        layer = previews[index]
        if (iou(layer[..., 3], target_small[..., 3]) >= DUPLICATE_IOU
                and colour_l1(layer, target_small) <= DUPLICATE_COLOR_L1):
            keep.remove(index)
            notes.append(f"auto: dropped layer {index} ({sources[index].name!r}): it repeats the whole composite")
    position = 0
    while position + 1 < len(keep):
        lower, upper = keep[position], keep[position + 1]
        a, b = previews[lower], previews[upper]
        if iou(a[..., 3], b[..., 3]) >= DUPLICATE_IOU and colour_l1(a, b) <= DUPLICATE_COLOR_L1:
            low, up = sources[lower], sources[upper]
            if low.size_hw == up.size_hw:
                up.rgba = composite_over([low.rgba, up.rgba])
            previews[upper] = composite_over([a.astype(np.uint8), b.astype(np.uint8)]).astype(np.float32)
            keep.remove(lower)
            notes.append(f"auto: merged layer {lower} ({low.name!r}) into layer {upper} ({up.name!r}): "
                         f"near-duplicates")
            continue
        position += 1
    return [sources[index] for index in keep], notes


def refine_layers(
    layers: list[np.ndarray],
    target: np.ndarray,
    names: list[str] | None = None,
    auto: bool = False,
    progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
    band_budget_bytes: int = BAND_BUDGET_BYTES,
) -> RefineResult:
    """Bring ``layers`` (back to front, any sizes of the target's aspect) to ``target``'s size (H×W×4 uint8) with an
    exact composite; see the module docstring. ``auto`` drops empty and repeated layers."""
    cancel = cancel or CancelToken()
    timings: dict[str, float] = {}
    started = time.perf_counter()

    # 1. Check inputs
    progress("refine", 0, 1)
    cancel.raise_if_canceled()
    _check(layers, target)
    names = list(names) if names else [("Background" if i == 0 else f"Layer {i}") for i in range(len(layers))]
    full_h, full_w = target.shape[:2]
    # Layers larger than the input (a model bucket above a small input) come down to its size first (area,
    # premultiplied): there is nothing to upsample then, only to solve.
    layers = [rgba if rgba.shape[0] <= full_h and rgba.shape[1] <= full_w or rgba.shape[:2] == (full_h, full_w)
              else _preview(rgba, (full_w, full_h)) for rgba in layers]
    sources = [_Source(rgba, name) for rgba, name in zip(layers, names, strict=False)]
    notes: list[str] = []

    # 2. Auto: drop empty and repeated layers (before the solve, which then fills what they covered)
    if auto and len(sources) > 1:
        cancel.raise_if_canceled()
        sources, prune_notes = _prune(sources, target)
        notes += prune_notes
    timings["refine_prune"] = time.perf_counter() - started

    # 3. Guided filter fits for the layers that are not at full size (one guide per layer size)
    mark = time.perf_counter()
    alpha_target = target[..., 3].astype(np.float32) / 255.0
    guide_full_u8 = target  # the guide is the input's premultiplied colour (transparent parts black)
    fits: dict[tuple[int, int], _GuidedFit] = {}
    upsampled = 0
    for source in sources:
        cancel.raise_if_canceled()
        if source.size_hw == (full_h, full_w):
            continue
        upsampled += 1
        if source.size_hw not in fits:
            small_h, small_w = source.size_hw
            small = cv2.resize(_premultiplied(guide_full_u8), (small_w, small_h), interpolation=cv2.INTER_AREA)
            fits[source.size_hw] = _GuidedFit(small)
        source.small_alpha = fits[source.size_hw].coefficients(source.rgba[..., 3].astype(np.float32) / 255.0)
        source.small_colour = _colour_and_doubt(source.rgba)
    if upsampled:
        sizes = ", ".join(f"{w}×{h}" for h, w in sorted(fits))
        notes.append(f"refine: {upsampled} layer(s) upsampled from {sizes} px to {full_w}×{full_h} px, alpha "
                     f"edge-aware (guided by the input)")
    timings["refine_fit"] = time.perf_counter() - mark

    # 4. Bands of rows: alpha, colour solve, residual
    mark = time.perf_counter()
    count = len(sources)
    out = [np.zeros((full_h, full_w, 4), np.uint8) for _ in range(count)]
    # ~14 float32 planes per layer per pixel while a band is solved
    band_rows = int(max(8, min(full_h, band_budget_bytes // max(1, count * full_w * 14 * 4))))
    bands = list(range(0, full_h, band_rows))
    bottom_is_background = float(sources[0].rgba[..., 3].mean()) / 255.0 >= BACKGROUND_COVERAGE
    stats = {"changed": 0, "fallback": 0}
    for step, row0 in enumerate(bands, start=1):
        cancel.raise_if_canceled()
        row1 = min(full_h, row0 + band_rows)
        _refine_band(sources, fits, bottom_is_background, target[row0:row1], alpha_target[row0:row1], out, row0, row1,
                     (full_h, full_w), stats)
        progress("refine", step, len(bands))
    timings["refine_solve"] = time.perf_counter() - mark
    if stats["fallback"]:
        notes.append(f"refine: {stats['fallback']} pixel(s) took the input's colour on every layer that shows there "
                     f"(the layers' colours could not reach it otherwise)")
    timings["refine"] = time.perf_counter() - started
    logger.debug("refined %d layers to %d×%d in %.2f s", count, full_w, full_h, timings["refine"])
    return RefineResult(out, [source.name for source in sources], notes, timings)


def _premultiplied(rgba: np.ndarray) -> np.ndarray:
    """h×w×3 float32 premultiplied colour in [0, 1]."""
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    return rgba[..., :3].astype(np.float32) * (alpha / 255.0)


def _refine_band(sources: list[_Source], fits: dict, bottom_is_background: bool, target: np.ndarray,
                 alpha_target: np.ndarray, out: list[np.ndarray], row0: int, row1: int, full_hw: tuple[int, int],
                 stats: dict[str, int]) -> None:
    count = len(sources)
    guide = _premultiplied(target)
    maps_by_size: dict[tuple[int, int], tuple] = {}
    alphas: list[np.ndarray] = []
    # h×w×4 float32 per layer: colour, then doubt; the doubt channel takes the final alpha before the 8-bit write
    planes: list[np.ndarray] = []
    reach: list[np.ndarray | None] = []  # where an upsampled layer may have alpha (its own or its guided alpha)
    for source in sources:
        if source.small_alpha is None:
            reach.append(None)
            alphas.append(source.rgba[row0:row1, :, 3].astype(np.float32))
            plane = source.rgba[row0:row1].astype(np.float32)
            plane[..., 3] = FULL_DOUBT
            planes.append(plane)
            continue
        if source.size_hw not in maps_by_size:
            maps = _band_map(source.size_hw, full_hw, row0, row1)
            detail = np.empty(guide.shape[:2] + (4,), np.float32)
            detail[..., :3] = guide - _remap(fits[source.size_hw].guide, maps)
            detail[..., 3] = 1.0
            maps_by_size[source.size_hw] = (maps, detail)
        maps, detail = maps_by_size[source.size_hw]
        coefficients = _remap(source.small_alpha, maps)
        # alpha = own alpha + slopes · (input − input seen at the layer's size), summed by cv2 (fast, threaded)
        alpha = cv2.transform(cv2.multiply(coefficients, detail), np.full((1, 4), 255.0, np.float32))
        alpha = alpha.reshape(guide.shape[:2])
        np.putmask(alpha, alpha < ALPHA_SNAP * 255.0, 0.0)
        np.putmask(alpha, alpha > (1.0 - ALPHA_SNAP) * 255.0, 255.0)
        np.rint(alpha, out=alpha)
        alphas.append(alpha)
        # The colour line can only change alpha on a layer's edge: where it is neither 0 nor 1, or the layer's
        # own (upsampled) alpha is not.
        own = coefficients[..., 3]
        reach.append(((alpha > 0) & (alpha < 255)) | ((own > ALPHA_SNAP) & (own < 1.0 - ALPHA_SNAP)))
        # bilinear never leaves the range of its inputs: no clipping needed
        assert source.small_colour is not None  # set together with small_alpha
        planes.append(_remap(source.small_colour, maps))
    colours = [plane[..., :3] for plane in planes]
    doubts = [plane[..., 3] for plane in planes]

    # a. Alpha: where the colour line decides it, from the input; then the stack's alpha is made the input's
    _colour_line_alphas(alphas, colours, reach, target)
    _fit_alphas(alphas, alpha_target, bottom_is_background)

    # b. Colour: where one layer alone makes the pixel, its colour is the input's. Elsewhere (soft edges,
    #    translucent layers) the least-squares unblend, weighted by how unsure each layer's colour is:
    #    minimise Σ_k |ΔF_k|²/doubt_k subject to Σ_k q_k·ΔF_k = error, so ΔF_k = error·q_k·doubt_k / Σ_j q_j²·doubt_j.
    shares = _shares(alphas)
    total = shares.sum(axis=0)  # the composite's alpha, as composite_over computes it from the 8-bit alphas
    top = np.argmax(shares, axis=0)
    top_share = np.take_along_axis(shares, top[None], axis=0)[0]
    visible = total > 0
    alone = visible & (top_share >= total - 1e-6)
    target_rgb = target[..., :3]
    mixed = np.nonzero(visible & ~alone)
    sub_colours = []
    if mixed[0].size:
        sub_shares = shares[:, mixed[0], mixed[1]]
        sub_colours = [colour[mixed] for colour in colours]
        sub_weights = [share * doubt[mixed] for share, doubt in zip(sub_shares, doubts, strict=False)]
        sub_target = target_rgb[mixed].astype(np.float32) * total[mixed][:, None]
        _unblend(sub_shares, sub_colours, sub_weights, sub_target)
        # c. Residual after rounding: fix the top contributor, then (rarely) every contributor
        for colour in sub_colours:
            np.rint(colour, out=colour)
        stats["fallback"] += _round_exact(sub_shares, sub_colours, sub_target, total[mixed][:, None])
    for index in range(count):
        band = out[index][row0:row1]
        planes[index][..., 3] = alphas[index]
        band[...] = cv2.convertScaleAbs(planes[index])  # rounds and saturates to 8 bits in one threaded pass
        # where a layer alone makes the pixel, its colour is the input's
        np.copyto(band[..., :3], target_rgb, where=(alone & (top == index))[..., None])
        if sub_colours:
            band[..., :3][mixed] = sub_colours[index]


def _unblend(shares: np.ndarray, colours: list[np.ndarray], weights: list[np.ndarray],
             target_premul: np.ndarray) -> None:
    """The weighted least-squares unblend on (n, 3) pixels, in place. Layers pinned at 0 or 255 take no more
    correction in that direction; the others share what is left (a few rounds)."""
    error = target_premul - _premul_sum(shares, colours)
    norm = sum(weight * share for weight, share in zip(weights, shares, strict=False))
    step = error / np.maximum(norm, 1e-12)[:, None]
    step[norm <= 1e-12] = 0.0
    clipped = False
    for colour, weight in zip(colours, weights, strict=False):
        colour += weight[:, None] * step
        if colour.size and (colour.min() < 0.0 or colour.max() > 255.0):
            clipped = True
            np.clip(colour, 0.0, 255.0, out=colour)
    if not clipped:
        return
    for _ in range(SOLVE_ROUNDS):
        error = target_premul - _premul_sum(shares, colours)
        if not (np.abs(error) > 1e-3).any():
            return
        free_weights = [weight[:, None] * np.where(error > 0, colour < 255.0, colour > 0.0)
                        for weight, colour in zip(weights, colours, strict=False)]
        norm = sum(weight * share[:, None] for weight, share in zip(free_weights, shares, strict=False))
        step = np.where(norm > 1e-12, error / np.maximum(norm, 1e-12), 0.0)
        for colour, weight in zip(colours, free_weights, strict=False):
            colour += weight * step
            np.clip(colour, 0.0, 255.0, out=colour)


def _round_exact(shares: np.ndarray, colours: list[np.ndarray], target_premul: np.ndarray,
                 total: np.ndarray) -> int:
    """With 8-bit colours, pixels whose composite is more than half a level off get the rest on their top
    contributor, and where that clips, the input's colour on every contributor. Returns how many needed that."""
    target = target_premul / total
    off = (np.abs(_premul_sum(shares, colours) / total - target) > 0.5).any(axis=1)
    if not off.any():
        return 0
    rows = np.nonzero(off)[0]
    sub_shares = shares[:, rows]
    error = target_premul[rows] - _premul_sum(sub_shares, [colour[rows] for colour in colours])
    top = np.argmax(sub_shares, axis=0)
    top_share = np.maximum(sub_shares[top, np.arange(rows.size)], 1e-9)[:, None]
    for index, colour in enumerate(colours):
        mine = rows[top == index]
        if mine.size:
            colour[mine] = np.clip(np.rint(colour[mine] + error[top == index] / top_share[top == index]), 0, 255)
    still = rows[(np.abs(_premul_sum(sub_shares, [colour[rows] for colour in colours]) / total[rows]
                         - target[rows]) > 0.5).any(axis=1)]
    for index, colour in enumerate(colours):
        shows = still[shares[index, still] > 0]
        colour[shows] = np.rint(target[shows])
    return int(still.size)


def _premul_sum(shares, colours: list[np.ndarray]) -> np.ndarray:
    premul = shares[0][..., None] * colours[0]
    for share, colour in zip(shares[1:], colours[1:], strict=False):
        premul += share[..., None] * colour
    return premul


def _shares(alphas_255: list[np.ndarray]) -> np.ndarray:
    """(L, h, w) float32: q_k = α_k·Π_{j>k}(1 − α_j), from alphas on 0–255."""
    shares = np.empty((len(alphas_255),) + alphas_255[0].shape, np.float32)
    transmit = np.ones_like(alphas_255[0])
    for index in range(len(alphas_255) - 1, -1, -1):
        alpha = alphas_255[index] / 255.0
        shares[index] = alpha * transmit
        transmit *= 1.0 - alpha
    return shares


def _colour_line_alphas(alphas: list[np.ndarray], colours: list[np.ndarray], reach: list[np.ndarray | None],
                        target: np.ndarray) -> None:
    """Matting where it is well posed: a pixel where an upsampled layer is the top one, over an opaque composite of
    the layers below, lies on the line between what is below (B) and the layer's colour (F); its alpha is the
    input's position on that line, α = (I − B)·(F − B)/|F − B|², when F and B differ enough and the input is on
    the line. This is what makes a layer opaque right up to its edge, and an anti-aliased edge exactly as soft
    as the input's, where the guided upsample alone leaves a wobble over a textured background."""
    count = len(alphas)
    for index in range(1, count):
        layer_reach = reach[index]
        if layer_reach is None:
            continue
        where = np.nonzero(layer_reach)
        if not where[0].size:
            continue
        # Gathering a few pixels beats whole-band arithmetic, until the layer reaches over much of the band.
        pick = (lambda values, where=where: values[where]) if where[0].size < 0.25 * layer_reach.size else None
        transmit_above = _transmit_at(alphas[index + 1:], pick, where[0].shape if pick else alphas[0].shape)
        premul_below, alpha_below = _composite_below(alphas[:index], colours[:index], pick)
        if pick is None:
            transmit_above, premul_below, alpha_below = transmit_above[where], premul_below[where], alpha_below[where]
        candidates = (transmit_above > 0.98) & (alpha_below > 0.98)
        if not candidates.any():
            continue
        where = (where[0][candidates], where[1][candidates])
        below = premul_below[candidates] / alpha_below[candidates][:, None]
        image = target[where][:, :3].astype(np.float32)
        line = colours[index][where] - below
        length2 = np.einsum("ij,ij->i", line, line)
        estimate = np.einsum("ij,ij->i", image - below, line) / np.maximum(length2, 1e-6)
        np.clip(estimate, 0.0, 1.0, out=estimate)
        off_line = np.abs(image - (below + estimate[:, None] * line)).max(axis=1)
        posed = (length2 > COLOUR_LINE_MIN ** 2) & (off_line < COLOUR_LINE_FIT)
        estimate = np.where(estimate < ALPHA_SNAP, 0.0, np.where(estimate > 1.0 - ALPHA_SNAP, 1.0, estimate))
        alphas[index][where[0][posed], where[1][posed]] = np.rint(estimate[posed] * 255.0)


def _transmit_at(alphas_255: list[np.ndarray], pick, shape: tuple[int, ...]) -> np.ndarray:
    """Π(1 − α) of the given layers at the pixels ``pick`` gathers (or everywhere); ones for no layers."""
    result = np.ones(shape, np.float32)
    for alpha in alphas_255:
        result *= 1.0 - (pick(alpha) if pick else alpha) / 255.0
    return result


def _composite_below(alphas_255: list[np.ndarray], colours: list[np.ndarray], pick) -> tuple[np.ndarray, np.ndarray]:
    """Premultiplied colour and alpha of the "over" composite of the given layers (at least one), at ``pick`` (or
    everywhere)."""
    premul: np.ndarray | None = None
    alpha_sum: np.ndarray | None = None
    for alpha_255, colour in zip(alphas_255, colours, strict=False):
        alpha = (pick(alpha_255) if pick else alpha_255) / 255.0
        colour = pick(colour) if pick else colour
        if premul is None or alpha_sum is None:
            premul, alpha_sum = alpha[..., None] * colour, alpha
        else:
            premul = alpha[..., None] * colour + (1.0 - alpha[..., None]) * premul
            alpha_sum = alpha + (1.0 - alpha) * alpha_sum
    if premul is None or alpha_sum is None:
        raise ValueError("no layers below")
    return premul, alpha_sum


def _transmit(alphas_255: list[np.ndarray]) -> np.ndarray:
    transmit = np.ones(alphas_255[0].shape, np.float32)
    for alpha in alphas_255:
        transmit *= 1.0 - alpha / 255.0
    return transmit


def _fit_alphas(alphas: list[np.ndarray], alpha_target: np.ndarray, bottom_is_background: bool) -> None:
    """Make the 8-bit alphas' composite equal ``alpha_target`` (0–1) within half a level, in place.

    Too much cover (a transparent input, a model's alpha spilling over an edge): every layer's alpha is scaled
    down by one common factor (bisection), rounded down. Too little: one layer takes the rest, the one with the
    largest alpha there (it is the layer that is meant to be there, a little thin), or the bottom layer where
    no layer has any alpha (a hole), or where the input is opaque, no layer is nearly so and the bottom layer is
    a background (it covers ≥ 90 % of the image).
    """
    tolerance = 0.5 / 255.0
    over = (1.0 - _transmit(alphas)) > alpha_target + tolerance
    if over.any():
        picked = [alpha[over] / 255.0 for alpha in alphas]
        goal = alpha_target[over]
        low = np.zeros_like(goal)
        high = np.ones_like(goal)
        for _ in range(20):
            middle = (low + high) / 2.0
            cover = 1.0 - np.prod([1.0 - middle * alpha for alpha in picked], axis=0)
            too_much = cover > goal
            high = np.where(too_much, middle, high)
            low = np.where(too_much, low, middle)
        for alpha, values in zip(alphas, picked, strict=False):
            alpha[over] = np.floor(low * values * 255.0 + 1e-4)
    short = (1.0 - _transmit(alphas)) < alpha_target - tolerance
    if not short.any():
        return
    stacked = np.stack([alpha[short] for alpha in alphas])  # (L, n) on 0–255
    chosen = np.argmax(stacked, axis=0)  # the lowest layer on ties
    largest = stacked[chosen, np.arange(chosen.size)]
    goal = alpha_target[short]
    fill = (goal >= 1.0 - tolerance) & (largest < 0.9 * 255.0) if bottom_is_background else False
    chosen = np.where((largest <= 0) | fill, 0, chosen)
    transmit_others = np.ones_like(goal)
    for index, alpha in enumerate(stacked):
        transmit_others *= np.where(chosen == index, 1.0, 1.0 - alpha / 255.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        needed = 1.0 - (1.0 - goal) / transmit_others
    needed = np.clip(np.nan_to_num(needed, nan=1.0), 0.0, 1.0)
    for index, alpha in enumerate(alphas):
        mine = chosen == index
        if mine.any():
            values = alpha[short]
            values[mine] = np.maximum(values[mine], np.rint(needed[mine] * 255.0))
            alpha[short] = values


# ---------------------------------------------------------------------------------------------------- stacks

def refine_stack(stack: LayerStack, image: Image.Image | np.ndarray, auto: bool = False,
                 progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> LayerStack:
    """``stack`` refined against ``image`` (the full-resolution input): a new LayerStack, manifest fields kept, the
    refine's notes and seconds added."""
    target = np.asarray(image.convert("RGBA") if isinstance(image, Image.Image) else image, dtype=np.uint8)
    result = refine_layers([layer.rgba for layer in stack.layers], target, [layer.name for layer in stack.layers],
                           auto=auto, progress=progress, cancel=cancel)
    timings = dict(stack.timings_s)
    timings.update(result.timings_s)
    return LayerStack(
        [Layer(rgba, name) for rgba, name in zip(result.layers, result.names, strict=False)],
        backend=stack.backend, params=dict(stack.params), seed=stack.seed, timings_s=timings,
        notes=list(stack.notes) + result.notes, parent=stack.parent,
    )


def decompose_refined(backend, image: Image.Image, params, progress: ProgressCallback = no_progress,
                      cancel: CancelToken | None = None) -> LayerStack:
    """The one decomposition path of jobs and the CLI: the backend's call, then the refine stage.

    ``layers: "auto"``: a backend that cannot choose its own count (qwen) decomposes into AUTO_DECOMPOSE_LAYERS,
    and the refine stage drops the empty and repeated ones."""
    cancel = cancel or CancelToken()
    auto = params.layers == "auto"
    run_params = params
    if auto and not getattr(backend, "chooses_layer_count", False):
        run_params = params.with_layers(AUTO_DECOMPOSE_LAYERS)
    stack = backend.decompose(image, run_params, progress, cancel)
    cancel.raise_if_canceled()
    refined = refine_stack(stack, image, auto=auto, progress=progress, cancel=cancel)
    if auto:
        refined.params["layers"] = "auto"
        refined.notes.append(f"auto: kept {len(refined.layers)} of {len(stack.layers)} layer(s)")
    return refined
