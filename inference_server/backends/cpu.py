"""The embedded CPU decomposer: LayerD-style "peel and fill" with classical parts, no network weights to download.

How it works, in the order of ``CpuDecomposer.decompose``:

1. Check inputs. An RGBA input is analysed in straight colour where it is visible and as one flat "key" colour
   (far from all visible colours) where it is nearly transparent; at the end every layer's alpha is capped by
   the input's, and the transparent surround takes no place in the layer budget.
2. Regions. Pixels whose colour steps to a neighbour are small form connected regions, so a flat fill *and*
   a smooth gradient each stay one region; the anti-aliased seams between them are "edge" pixels. Each region
   gets a quadratic colour model; regions it explains well are "flat" (graphics), the rest texture (photos).
   Regions the model does not explain are split again with a stricter step and a trimmed fit, so a feathered
   cut-out does not melt into the flat background around it. The short runs that make up a thin slanted line
   are chained into one region when they chain up into something long.
3. Text. rapidocr's PP-OCR detector (weights ship inside the wheel) finds words; the dominant colour among the
   regions inside a word box is its letters, which form a text element named after what it reads. Single
   "characters" are ignored: they are mostly shapes read as glyphs (a star as '★').
4. Elements. The background is the flat colour that runs along most of the canvas's edge (border contact, not area,
   tells ground from figure: the corners around a round icon, not its disc), plus the regions its colour model
   explains (a gradient cut in two by a shape, the counters of letters), or the texture when there is no such region
   (a photo). Photographs placed on a flat page (solid blobs whose inside is mostly texture) stay one "Image" element
   with the flat-looking patches and holes inside them; one running along the canvas edge makes the whole picture a
   photo. Marks of the ground's colour enclosed by a solid shape (white words in a blue box, an icon's glyph) are
   elements on that shape, not holes through it. Other flat regions are grouped by colour (per word), or by a
   gradient's colour model (a gradient-filled shape cut by a line); textured blobs on a flat background are "Image"
   elements. Pieces of one colour with background between them, or on both sides of another element in depth, are
   split into separate elements; words of one colour next to each other (and glyph-like shapes of their colour: words
   the detector missed) are one phrase. Two flat elements whose colours differ exactly as what lies under them
   differs are one translucent sheet (colour and opacity solved). A photo with room left in the budget gets a
   "Subject" layer (colour contrast to the border with a centre prior seeds grabCut; the salient blobs' dilated hull,
   reaching up for a head when the subject stands on the bottom edge, is its probable region; a guided filter scales
   it up).
5. Order. Element B is above A when B sits inside A's convex hulls more than A sits inside B's: an occluded
   shape has a bite taken out of it. Elements are peeled in levels (unoccluded first), text to the front.
   Glyphs and strokes (rings, outlines: thin and hollow) use their own mask, not their hulls.
6. Layer count. Adjacent elements in depth order are merged (exactly, by compositing) until the requested
   count is met, disjoint pairs of one depth first; an image with fewer elements returns fewer layers and
   says so in ``LayerStack.notes``.
7. Peel. Per element, front to back: alpha 1 (or its opacity) on its regions, alpha from the colour line
   between its colour (F, nearest own pixel) and what lies under it (B, nearest pixel outside) in a thin edge
   band, completion under the elements above it (inside its own convex hulls); colour = nearest own colour,
   also under zero alpha near its edge so resampling does not bleed black; farther out, the input's colour.
8. Fill. The background's hole is filled from its colour model (flat or gradient) or by Telea inpainting
   (texture, at reduced size for big holes), which deep inside a photo subject's hole gives way to a smooth
   pull-push fill with a little grain (no radial streaks); where the layers above leave it visible, the
   background colour is solved from the input, so the composite matches.
9. Residual. Whatever error is left (clipping, overlapping soft edges) goes into the colour of the layer that
   contributes most at that pixel. The "over" composite of the result equals the input (mean error ≤ 1/255).

Cancellation is checked between stages and, through a per-thread token (``_checkpoint``), between the sub-steps
of the long ones, so a cancel lands inside the running stage (bench_decompose measures how soon on 12 MP).
"""

from __future__ import annotations

import os
import threading

import numpy as np
from PIL import Image

from ..errors import InvalidInput
from ..layers import Layer, LayerStack, Stopwatch, composite_over
from ..params import MAX_LAYERS, DecomposeParams
from .base import CancelToken, ProgressCallback, no_progress

EDGE_STEP = 10.0  # colour step (0–255, max over channels) between neighbours that separates two regions
EDGE_STEP_STRICT = 4.0  # the same, for regions that turned out not to be flat (soft transitions)
FLAT_RESIDUAL = 6.0  # RMS error (0–255) of the quadratic colour model below which a region counts as flat
SAME_COLOR = 28.0  # Euclidean RGB distance under which two flat regions are one element's colour
STROKE_THICKNESS = 0.1  # rings and outlines: thinner than this share of their hull's size (sqrt of its area)
BACKGROUND_GAP = 0.35  # same-colour pieces with more background than this between them are separate shapes
BAND_PX = 3  # width of the soft-edge band around an element's regions
MIN_REGION_FRACTION = 0.0002  # regions smaller than this part of the image are edge/noise pixels
MIN_ELEMENT_FRACTION = 0.001  # elements smaller than this stay in the background
MIN_ELEMENT_FRACTION_ON_PHOTO = 0.004
LONG_ELEMENT = 0.25  # ... unless (on a flat background) they span this share of the image: rules, lines
ELEMENT_RESIDUAL = 4.0  # flat elements (not the background) must be flatter than this (0–255 RMS)
PHOTO_ELEMENT_RESIDUAL = 1.0  # the same on a photo background, whose smooth patches measure 0.5–3
PHOTO_TEXTURE_SHARE = 0.45  # a blob whose inside is this much texture (or more) is a photograph, kept whole
PHOTO_BLEED_SHARE = 0.2  # photographs touching this share of the canvas's edge is the picture, not placed on it
MIN_IMAGE_FRACTION = 0.005  # textured blobs on a flat background at least this big become "Image" elements
MAX_ELEMENTS = 48
OCR_MAX_SIDE_PX = 640  # the text detector runs on a copy at most this big (time grows with pixels)
SUBJECT_MAX_SIDE_PX = 256  # grabCut for a photo's subject runs at this size
INPAINT_MAX_SIDE_PX = 384  # photo holes are filled at this size, then upsampled
TELEA_BAND_PX = 5  # (at that size) Telea fills this far into a subject's hole, a smooth fill beyond twice that
FILL_RELAX_STEPS = 20  # smoothing passes per pyramid level of that fill (towards a membrane fill)

# The running decomposition's cancel token, per thread: the long stages call _checkpoint() between their sub-steps
# (every few hundred ms of work on a 12 MP image), so a cancel lands inside the stage, not at the next one.
_running = threading.local()


def _checkpoint() -> None:
    """Stop here (JobCanceled) if this thread's decomposition was canceled."""
    token = getattr(_running, "cancel", None)
    if token is not None:
        token.raise_if_canceled()


COLOR_NAMES = {
    "Red": (220, 50, 50), "Orange": (245, 150, 60), "Yellow": (235, 205, 80), "Green": (60, 170, 80),
    "Teal": (40, 160, 150), "Mint": (140, 200, 190), "Blue": (50, 110, 200), "Navy": (30, 50, 90),
    "Purple": (110, 75, 150), "Pink": (235, 130, 170), "Brown": (130, 85, 50), "White": (250, 250, 250),
    "Grey": (128, 128, 128), "Black": (15, 15, 15),
}


def color_name(rgb) -> str:
    rgb = np.asarray(rgb, np.float64)
    return min(COLOR_NAMES, key=lambda name: float(np.sum((np.asarray(COLOR_NAMES[name]) - rgb) ** 2)))


class _Element:
    """One thing on the canvas: a set of regions (or a texture mask), its kind and name."""

    def __init__(self, kind: str, mask: np.ndarray, color_rgb, text: str = "") -> None:
        self.kind = kind  # "background" | "shape" | "text" | "image"
        self.mask = mask  # bool H×W, the pixels that certainly belong to it (its core)
        self.color_rgb = np.asarray(color_rgb, np.float64)
        self.text = text  # what a text element reads ("Subject" for a photo's subject)
        self.hull = mask  # bool H×W, union of its regions' convex hulls (for occlusion and completion)
        self.area = int(mask.sum())
        self.level = 0
        self.pieces = 1
        self.glyph_like = False
        self.opacity = 1.0  # < 1: a translucent flat shape (its colour is color_rgb, its alpha this)
        self.regions: list[int] = []  # background only: its flat regions ([] = a photo's texture)
        self.host: _Element | None = None  # marks drawn on a shape: that shape (they fold back into it first)

    @property
    def name(self) -> str:
        if self.kind == "background":
            return "Background"
        if self.kind == "text":
            return f"Text '{self.text}'" if self.text else "Text"
        if self.kind == "image":
            return self.text or "Image"
        if self.opacity < 1.0:
            return f"Translucent {color_name(self.color_rgb).lower()} shape ({self.opacity:.0%})"
        return f"{color_name(self.color_rgb)} shape" + ("s" if self.glyph_like else "")


class CpuDecomposer:
    """Embedded classical decomposer (backend ``cpu``). Thread-safe; the OCR engine loads on first use."""

    name = "cpu"
    chooses_layer_count = True  # layers: "auto" reaches decompose(): every distinct element, up to MAX_LAYERS

    def __init__(self, use_ocr: bool = True) -> None:
        self.use_ocr = use_ocr
        self._ocr = None
        self._ocr_failed = ""
        self._ocr_lock = threading.Lock()
        self.threads = thread_budget()
        if self.threads is not None:
            import cv2

            cv2.setNumThreads(self.threads)

    def describe(self) -> dict:
        return {"backend": self.name, "device": "cpu", "model_loaded": True,
                "text_detector": "rapidocr" if self.use_ocr and not self._ocr_failed else None}

    def decompose(self, image: Image.Image, params: DecomposeParams,
                  progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> LayerStack:
        cancel = cancel or CancelToken()
        outer, _running.cancel = getattr(_running, "cancel", None), cancel
        try:
            return self._decompose(image, params, progress, cancel)
        finally:
            _running.cancel = outer

    def _decompose(self, image: Image.Image, params: DecomposeParams, progress: ProgressCallback,
                   cancel: CancelToken) -> LayerStack:
        watch = Stopwatch()
        notes: list[str] = []

        def begin(stage: str) -> None:
            """Every step: time it under its own name, and stop here if the job was canceled."""
            watch.start(stage)
            cancel.raise_if_canceled()

        # 1. Check inputs
        begin("check")
        if not isinstance(image, Image.Image):
            raise InvalidInput(f"expected a PIL image, got {type(image).__name__}")
        if image.mode not in ("RGB", "RGBA"):
            raise InvalidInput(f"expected an RGB or RGBA image, got mode {image.mode!r}; convert it first")
        if image.width < 1 or image.height < 1:
            raise InvalidInput(f"the image is empty ({image.width}×{image.height})")
        # "auto": as many layers as the image has distinct elements, up to the most the API allows.
        requested = params.layer_count(MAX_LAYERS)
        target = np.asarray(image.convert("RGBA"), dtype=np.uint8)
        height_px, width_px = target.shape[:2]
        alpha_in = target[..., 3].astype(np.float32) / 255.0
        opaque = bool((target[..., 3] == 255).all())
        rgb = target[..., :3].astype(np.float32)
        key_rgb = np.zeros(3, np.float32)
        if not opaque:
            # The analysis sees straight colour where the input is visible enough and one flat "key" colour,
            # far from every visible colour, where it is (nearly) transparent; the layers' alphas are capped by
            # the input's at the end, so soft edges against transparency come from the input itself.
            visible = alpha_in >= 0.1
            key_rgb = _key_color(rgb[visible])
            rgb[~visible] = key_rgb
        rgb_u8 = np.clip(rgb, 0, 255).astype(np.uint8)
        progress("check", 1, 1)
        if requested == 1:
            watch.stop()
            return self._stack([Layer(target.copy(), "Background")], params, watch, notes)

        # 2. Regions
        begin("regions")
        regions = _find_regions(rgb)
        progress("regions", 1, 1)

        # 3. Text
        begin("text")
        words = self._detect_text(rgb_u8, notes)
        progress("text", 1, 1)

        # 4. Elements
        begin("elements")
        background, elements = _build_elements(rgb, regions, words)
        elements = _find_translucent(rgb, background, elements)
        elements = _split_depths(background, elements)
        elements = _merge_phrases(elements)
        if not background.regions and len(elements) < requested - 1:
            # A photo with room left in the layer budget: split off its main subject.
            subject = _find_subject(rgb, background, elements)
            if subject is not None:
                elements.append(subject)
                background.mask &= ~subject.mask
        progress("elements", 1, 1)

        # 5. Order
        begin("order")
        elements = _order_elements(elements)
        progress("order", 1, 1)

        # 6. Layer count
        begin("count")
        # An RGBA input's transparent surround is the "background" here; it ends up empty and is dropped, so it
        # does not take a place in the layer budget.
        surround = not opaque and float(np.abs(background.color_rgb - key_rgb).max()) < 24.0
        groups = _fit_count(elements, requested - (0 if surround else 1))
        progress("count", 1, 1)

        # 7. Peel (front to back, so each element knows what covers it)
        watch.start("peel")
        element_layers: dict[int, np.ndarray] = {}
        covering = np.zeros((height_px, width_px), bool)
        for step, element in enumerate(reversed(elements), start=1):
            cancel.raise_if_canceled()
            element_layers[id(element)] = _peel(rgb, rgb_u8, element, covering, alpha_in)
            covering |= element_layers[id(element)][..., 3] > 0
            progress("peel", step, len(elements))
        upper = []
        for group in groups:
            rgba_list = [element_layers[id(e)] for e in group]
            rgba = composite_over(rgba_list) if len(rgba_list) > 1 else rgba_list[0]
            if len(rgba_list) > 1:
                # composite_over leaves colour 0 where all alphas are 0: keep the front element's colour there.
                empty = rgba[..., 3] == 0
                rgba[empty, :3] = rgba_list[-1][empty, :3]
            upper.append(Layer(rgba, _group_name(group)))

        # 8. Fill the background
        begin("fill")
        top_premul, top_alpha = _over_premul([layer.rgba for layer in upper], (height_px, width_px))
        subject_layer = [element_layers[id(e)] for e in elements if e.kind == "image" and e.text == "Subject"]
        fill_rgb = _fill_background(rgb, background, top_alpha > 0,
                                    subject_layer[0][..., 3] > 0 if subject_layer else None)
        progress("fill", 1, 1)
        bottom = _solve_bottom(target, top_premul, top_alpha, fill_rgb, opaque)
        layers = [Layer(bottom, "Background")] + upper

        # 9. Residual correction
        begin("residual")
        _correct_residual(layers, target)
        if surround and len(layers) > 1:
            if layers[0].coverage < 0.001:
                layers = layers[1:]  # nothing left in the transparent surround
            else:
                layers[:2] = [Layer(composite_over([layers[0].rgba, layers[1].rgba]), layers[1].name)]
            _correct_residual(layers, target)
        progress("residual", 1, 1)
        watch.stop()
        if params.auto_layers:
            notes.append(f"layers: auto; found {len(layers)} distinct layer(s) in the image")
        elif len(layers) < requested:
            notes.append(f"found {len(layers)} distinct layer(s) in the image, fewer than the {requested} "
                         f"requested; returned {len(layers)}")
        return self._stack(layers, params, watch, notes)

    def _stack(self, layers, params, watch, notes) -> LayerStack:
        return LayerStack(layers, backend=self.name, params=params.to_dict(), seed=params.seed,
                          timings_s=watch.timings_s, notes=notes)

    def _detect_text(self, rgb_u8: np.ndarray, notes: list[str]) -> list[tuple[np.ndarray, str]]:
        """Word boxes (4×2 corner points in image pixels) and what they read; [] without the OCR engine."""
        if not self.use_ocr:
            return []
        engine = self._ocr_engine(notes)
        if engine is None:
            return []
        height_px, width_px = rgb_u8.shape[:2]
        if min(height_px, width_px) < 16:
            return []
        scale = min(1.0, OCR_MAX_SIDE_PX / max(height_px, width_px))
        small = rgb_u8
        if scale < 1.0:
            small = np.asarray(Image.fromarray(rgb_u8).resize(
                (max(1, round(width_px * scale)), max(1, round(height_px * scale))), Image.Resampling.BILINEAR))
        import cv2

        result, _ = engine(np.ascontiguousarray(cv2.cvtColor(small, cv2.COLOR_RGB2BGR)), use_cls=False)
        words = []
        for box, text, score in result or []:
            if float(score) < 0.5:
                continue
            # One "character" is most often a shape read as a glyph (a star as '★', a bitten disc as 'D');
            # a real single letter still comes back as its own layer, as a shape.
            if sum(ch.isalnum() for ch in str(text)) < 2:
                continue
            words.append((np.asarray(box, np.float64) / scale, str(text).strip()))
        return words

    def _ocr_engine(self, notes: list[str]):
        with self._ocr_lock:
            if self._ocr is None and not self._ocr_failed:
                try:
                    from rapidocr_onnxruntime import RapidOCR

                    threads = {} if self.threads is None else {"intra_op_num_threads": self.threads,
                                                                "inter_op_num_threads": 1}
                    self._ocr = RapidOCR(**threads)
                except Exception as error:  # missing wheel or broken onnxruntime: decompose without text cues
                    self._ocr_failed = f"{type(error).__name__}: {error}"
            if self._ocr_failed:
                notes.append(f"text detector unavailable ({self._ocr_failed}); text is treated as shapes")
            return self._ocr


def thread_budget() -> int | None:
    """Threads the decomposer's pools may use (OpenCV's, ONNX Runtime's), from ``OMP_NUM_THREADS`` as numpy's BLAS
    reads it; None (each library's default: one thread per core) when unset. Ray sets it to a replica's CPU
    reservation, so two 1-CPU replicas on two cores run one thread each instead of four competing."""
    try:
        threads = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        return None
    return threads if threads > 0 else None


def _key_color(visible_rgb: np.ndarray) -> np.ndarray:
    """Of the 27 colours {0, 128, 255}³, the one farthest from (nearly) all of the visible colours."""
    candidates = np.stack(np.meshgrid([0, 128, 255], [0, 128, 255], [0, 128, 255], indexing="ij"), -1)
    candidates = candidates.reshape(-1, 3).astype(np.float32)
    if visible_rgb.size == 0:
        return candidates[-1]
    sample = visible_rgb[:: max(1, len(visible_rgb) // 5000)]
    distance = np.linalg.norm(sample[:, None, :] - candidates[None], axis=2)
    return candidates[int(np.argmax(np.percentile(distance, 1, axis=0)))]


# ---------------------------------------------------------------------------------------------- regions


class _Regions:
    """Connected smooth regions: label image, per-region stats and a quadratic colour model."""

    def __init__(self, labels, count, areas, touches_border, means, coefs, residuals, features_mean, flat):
        self.labels = labels
        self.count = count
        self.areas = areas
        self.touches_border = touches_border
        self.means = means
        self.coefs = coefs  # region → 6×3 quadratic model coefficients (features: 1, x, y, x², xy, y²)
        self.residuals = residuals
        self.features_mean = features_mean  # region → mean of the 6 features over its pixels
        self.flat = flat


def _features_at(ys: np.ndarray, xs: np.ndarray, height_px: int, width_px: int) -> np.ndarray:
    """The colour model's 6 features (1, x, y, x², xy, y², coordinates scaled to [−0.5, 0.5]) at the given
    pixels, as an N×6 design matrix."""
    x = xs.astype(np.float64) / max(width_px - 1, 1) - 0.5
    y = ys.astype(np.float64) / max(height_px - 1, 1) - 0.5
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)


def _smooth_labels(rgb: np.ndarray, step: float) -> tuple[int, np.ndarray]:
    """Connected components of pixels whose colour steps to every 4-neighbour are ≤ ``step``; 0 = edge pixel."""
    import cv2

    height_px, width_px = rgb.shape[:2]
    step_x = np.abs(np.diff(rgb, axis=1)).max(axis=2) > step
    _checkpoint()
    step_y = np.abs(np.diff(rgb, axis=0)).max(axis=2) > step
    edge = np.zeros((height_px, width_px), bool)
    edge[:, :-1] |= step_x
    edge[:, 1:] |= step_x
    edge[:-1, :] |= step_y
    edge[1:, :] |= step_y
    _checkpoint()
    count, labels = cv2.connectedComponents((~edge).astype(np.uint8), connectivity=4)
    labels[edge] = 0
    return count, labels


def _join_thin_runs(count: int, labels: np.ndarray) -> tuple[int, np.ndarray]:
    """The core of a thin slanted line (a rule, a stroke) is a staircase of short runs, each too small to be a
    region, that touch only at corners. Runs that chain up diagonally into something long become one region.
    (Only long chains: 8-connecting everything would turn the dark and bright specks of photos into regions.)"""
    import cv2

    height_px, width_px = labels.shape
    min_area = max(6, int(MIN_REGION_FRACTION * height_px * width_px))
    small = np.bincount(labels.ravel(), minlength=count) < min_area
    small[0] = False
    runs = small[labels]
    if not runs.any():
        return count, labels
    # Runs a pixel apart chain up too: where the staircase steps, the runs need not touch even at corners.
    _checkpoint()
    bridged = cv2.dilate(runs.astype(np.uint8), np.ones((3, 3), np.uint8))
    chains, chain_labels, stats, _ = cv2.connectedComponentsWithStats(bridged, connectivity=8)
    long_px = LONG_ELEMENT * max(height_px, width_px)
    keep = np.zeros(chains, bool)
    keep[1:] = np.maximum(stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT]) >= long_px
    keep &= np.bincount(chain_labels[runs], minlength=chains) >= min_area
    if not keep.any():
        return count, labels
    labels = labels.copy()
    joined = runs & keep[chain_labels]
    labels[joined] = count + chain_labels[joined]
    return count + chains, labels


def _find_regions(rgb: np.ndarray) -> _Regions:
    regions = _region_stats(rgb, *_join_thin_runs(*_smooth_labels(rgb, EDGE_STEP)))
    # A region that the colour model does not explain was joined through a soft transition (a feathered photo
    # cut-out melting into a flat background): split those again with a stricter step.
    loose = ~regions.flat[regions.labels] & (regions.labels > 0)
    if not loose.any():
        return regions
    _checkpoint()
    strict_count, strict = _smooth_labels(rgb, EDGE_STEP_STRICT)
    labels = regions.labels.astype(np.int64)
    labels[loose] = np.where(strict[loose] > 0, strict[loose] + regions.count, 0)
    regions = _region_stats(rgb, regions.count + strict_count, labels)
    # Still not flat and big: most likely a flat background with a soft blob grown into it. Drop the pixels
    # the region's own colour model misses (trimmed fit), twice, so the background's model is its own.
    for _ in range(2):
        _checkpoint()
        height_px, width_px = rgb.shape[:2]
        big_loose = ~regions.flat & (regions.areas >= 0.05 * height_px * width_px)
        big_loose[0] = False
        if not big_loose.any():
            break
        mask = big_loose[regions.labels]
        features = _features_at(*np.nonzero(mask), height_px, width_px)
        predicted = np.einsum("ni,nic->nc", features, regions.coefs[regions.labels[mask]])
        miss = np.abs(predicted - rgb[mask]).max(axis=1) > 3.0 * FLAT_RESIDUAL
        # Only regions the model mostly explains are trimmed; a photo's texture misses everywhere.
        region_of = regions.labels[mask]
        miss_share = (np.bincount(region_of, miss, minlength=regions.count)
                      / np.maximum(np.bincount(region_of, minlength=regions.count), 1))
        miss &= miss_share[region_of] < 0.3
        if not miss.any():
            break
        labels = regions.labels.astype(np.int64)
        flat_index = np.flatnonzero(mask.ravel())
        labels.ravel()[flat_index[miss]] = 0
        regions = _region_stats(rgb, regions.count, labels)
    return regions


def _region_stats(rgb: np.ndarray, count: int, labels: np.ndarray) -> _Regions:
    height_px, width_px = rgb.shape[:2]
    flat_labels = labels.ravel()
    areas = np.bincount(flat_labels, minlength=count).astype(np.int64)
    min_area = max(6, int(MIN_REGION_FRACTION * height_px * width_px))
    small = areas < min_area
    small[0] = True  # label 0 = edge pixels
    remap = np.where(small, 0, np.arange(count))
    labels = remap[labels]
    # Renumber to 1..k
    keep = np.flatnonzero(~small)
    renumber = np.zeros(count, np.int64)
    renumber[keep] = np.arange(1, keep.size + 1)
    labels = renumber[labels].astype(np.int32)
    count = keep.size + 1
    flat_labels = labels.ravel()
    areas = np.bincount(flat_labels, minlength=count).astype(np.float64)
    border = np.zeros(count, bool)
    border[np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))] = True

    # The colour models are fitted on a subsampled grid for big images (4× less work, same models).
    step_px = 2 if height_px * width_px > 300_000 else 1
    grid_ys, grid_xs = np.mgrid[0:height_px:step_px, 0:width_px:step_px]
    design = _features_at(grid_ys.ravel(), grid_xs.ravel(), height_px, width_px)
    features = [design[:, i] for i in range(6)]
    colors = rgb[::step_px, ::step_px].reshape(-1, 3).astype(np.float64)
    flat_labels = labels[::step_px, ::step_px].ravel()
    sampled = np.bincount(flat_labels, minlength=count).astype(np.float64)
    safe_areas = np.maximum(sampled, 1.0)
    # Per-region normal equations from bincount sums: Σ f_i f_j and Σ f_i c.
    gram = np.zeros((count, 6, 6))
    for i in range(6):
        _checkpoint()
        for j in range(i, 6):
            gram[:, i, j] = gram[:, j, i] = np.bincount(flat_labels, features[i] * features[j], minlength=count)
    rhs = np.zeros((count, 6, 3))
    for i in range(6):
        _checkpoint()
        for c in range(3):
            rhs[:, i, c] = np.bincount(flat_labels, features[i] * colors[:, c], minlength=count)
    sq = np.stack([np.bincount(flat_labels, colors[:, c] ** 2, minlength=count) for c in range(3)], axis=1)
    coefs = np.linalg.solve(gram + np.eye(6) * 1e-6, rhs)
    sse = sq - np.einsum("kic,kic->kc", coefs, rhs)
    residuals = np.sqrt(np.maximum(sse.sum(axis=1), 0.0) / (3 * safe_areas))
    means = rhs[:, 0, :] / safe_areas[:, None]
    features_mean = gram[:, 0, :] / safe_areas[:, None]
    flat = (residuals <= FLAT_RESIDUAL) & (sampled >= 6)
    flat[0] = False
    return _Regions(labels, count, areas, border, means, coefs, residuals, features_mean, flat)


# ---------------------------------------------------------------------------------------------- elements


def _pieces(mask: np.ndarray) -> tuple[int, float]:
    """(number of connected pieces, largest piece's share of the area)."""
    import cv2

    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    return int(count - 1), float(areas.max() / max(areas.sum(), 1)) if areas.size else 0.0


def _hull_mask(mask: np.ndarray) -> np.ndarray:
    """Union of the convex hulls of the mask's connected parts."""
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = np.zeros(mask.shape, np.uint8)
    for contour in contours:
        cv2.fillPoly(hull, [cv2.convexHull(contour)], 1)
    return hull.astype(bool) | mask


def _build_elements(rgb: np.ndarray, regions: _Regions, words) -> tuple[_Element, list[_Element]]:
    import cv2

    height_px, width_px = rgb.shape[:2]
    total = height_px * width_px
    labels = regions.labels
    candidates = [k for k in range(1, regions.count) if regions.flat[k]]

    # Background: the flat colour that runs along most of the canvas's edge (with the other border regions its
    # colour model explains: the four corners around a round icon are one ground), if it is big enough to be one.
    # Border contact, not area, decides figure against ground: a disc filling an icon is the figure.
    border_flat = [k for k in candidates if regions.touches_border[k] and regions.areas[k] >= 0.01 * total]
    perimeter = np.concatenate([labels[0], labels[-1], labels[1:-1, 0], labels[1:-1, -1]])
    contact = np.bincount(perimeter, minlength=regions.count)

    def ground_family(k: int) -> list[int]:
        predicted = np.einsum("ki,ic->kc", regions.features_mean[border_flat], regions.coefs[k])
        close = ((np.linalg.norm(predicted - regions.means[border_flat], axis=1) < SAME_COLOR * 0.5)
                 | (np.linalg.norm(regions.means[border_flat] - regions.means[k], axis=1) < SAME_COLOR * 0.5))
        return [j for j, near in zip(border_flat, close, strict=False) if near or j == k]

    bg_region = None
    if border_flat:
        families = {k: ground_family(k) for k in border_flat}
        bg_region = max(border_flat, key=lambda k: (contact[families[k]].sum(), regions.areas[k]))
        if regions.areas[families[bg_region]].sum() < 0.1 * total:
            bg_region = None
    bg_regions: set[int] = set()
    if bg_region is not None:
        bg_regions.update(families[bg_region])
        bg_coef = regions.coefs[bg_region]
        for k in candidates:
            if k in bg_regions:
                continue
            # The background's colour model, averaged over region k, against k's own mean: a gradient cut apart
            # by a shape continues on the other side, and the counters of letters show the background.
            predicted = regions.features_mean[k] @ bg_coef
            if np.linalg.norm(predicted - regions.means[k]) < SAME_COLOR * 0.5:
                bg_regions.add(k)

    photos: list[np.ndarray] = []
    if bg_region is not None:
        bg_lookup = np.zeros(regions.count, bool)
        bg_lookup[list(bg_regions)] = True
        photos = _photo_objects(regions, bg_lookup[labels])
        # A photograph that runs off the canvas along a good part of its edge is the picture itself (a sky
        # whose smooth part looked like a flat background): decompose it as a photo.
        perimeter = np.zeros((height_px, width_px), bool)
        perimeter[[0, -1], :] = perimeter[:, [0, -1]] = True
        if photos and (np.logical_or.reduce(photos) & perimeter).sum() > PHOTO_BLEED_SHARE * perimeter.sum():
            bg_region, bg_regions, photos = None, set(), []

    # On a photo, smooth patches of the photo itself (sky, shadows, highlights) are nearly flat too; graphics
    # placed on it are flat to the noise level.
    element_residual = ELEMENT_RESIDUAL if bg_region is not None else PHOTO_ELEMENT_RESIDUAL

    from scipy import ndimage

    region_boxes = ndimage.find_objects(labels)  # region k's (rows, cols) slices at k − 1

    # A word's letters: among the regions lying wholly inside its box, the colour with the most area (parts of
    # a shape showing between the letters lie inside the box too, but cover less of it).
    word_of_region: dict[int, int] = {}
    word_pixels: dict[int, np.ndarray] = {}
    if words:
        for index, (box, _) in enumerate(words):
            _checkpoint()
            x0, y0 = box.min(axis=0)
            x1, y1 = box.max(axis=0)
            margin = 0.15 * (y1 - y0)
            inside = []
            for k in candidates:
                # Letters of the background's colour (white words in a blue box on a white page) are candidates
                # too; the background's own main region never lies inside a word box.
                if (k == bg_region or k in word_of_region or region_boxes[k - 1] is None
                        or regions.residuals[k] > element_residual):
                    continue
                rows, cols = region_boxes[k - 1]
                if (cols.start >= x0 - margin and cols.stop <= x1 + margin
                        and rows.start >= y0 - margin and rows.stop <= y1 + margin):
                    inside.append(k)
            if not inside:
                continue
            clusters: list[list[int]] = []
            for k in sorted(inside, key=lambda k: -regions.areas[k]):
                for cluster in clusters:
                    if np.linalg.norm(regions.means[cluster[0]] - regions.means[k]) < SAME_COLOR:
                        cluster.append(k)
                        break
                else:
                    clusters.append([k])
            letters = max(clusters, key=lambda cluster: regions.areas[cluster].sum())
            bg_regions -= set(letters)
            for k in letters:
                word_of_region[k] = index
            # Letters touching something of their own colour (a white suit in a photo) were joined to it:
            # inside the box, every pixel of the letters' colour is the word's.
            letter_rgb = (regions.means[letters] * regions.areas[letters][:, None]).sum(axis=0)
            letter_rgb /= regions.areas[letters].sum()
            box_mask = np.zeros((height_px, width_px), np.uint8)
            cv2.fillPoly(box_mask, [np.rint(box).astype(np.int32).reshape(-1, 1, 2)], 1)
            rows, cols = _bbox_slices(box_mask.astype(bool), 0)
            pixels = np.zeros((height_px, width_px), bool)
            pixels[rows, cols] = box_mask[rows, cols].astype(bool) & (
                np.abs(rgb[rows, cols] - letter_rgb).max(axis=2) < 24.0)
            word_pixels[index] = pixels
    all_word_pixels = np.zeros((height_px, width_px), bool)
    for pixels in word_pixels.values():
        all_word_pixels |= pixels

    # Group the remaining flat regions by colour (and word), or by a gradient's colour model: a gradient-filled
    # shape cut apart by a line over it continues on the other side in another colour, as the background does.
    def continues_gradient(lead: int, k: int) -> bool:
        (lead_rows, lead_cols), (rows, cols) = region_boxes[lead - 1], region_boxes[k - 1]
        reach_px = 0.05 * max(height_px, width_px)
        if (cols.start > lead_cols.stop + reach_px or lead_cols.start > cols.stop + reach_px
                or rows.start > lead_rows.stop + reach_px or lead_rows.start > rows.stop + reach_px):
            return False  # far away: a model extrapolated that far says nothing
        predicted = regions.features_mean[k] @ regions.coefs[lead]
        return bool(np.linalg.norm(predicted - regions.means[k]) < SAME_COLOR * 0.5)

    groups: list[dict] = []
    for k in sorted(candidates, key=lambda k: -regions.areas[k]):
        if k in bg_regions or regions.residuals[k] > element_residual:
            continue
        word = word_of_region.get(k)
        for group in groups:
            if group["word"] == word and (np.linalg.norm(group["color"] - regions.means[k]) < SAME_COLOR
                                          or continues_gradient(group["regions"][0], k)):
                group["regions"].append(k)
                break
        else:
            groups.append({"word": word, "color": regions.means[k].copy(), "regions": [k]})

    bg_lookup = np.zeros(regions.count, bool)
    bg_lookup[list(bg_regions)] = True
    elements: list[_Element] = []
    assigned = bg_lookup[labels] & ~all_word_pixels
    _checkpoint()
    for group in groups:
        _checkpoint()
        lookup = np.zeros(regions.count, bool)
        lookup[group["regions"]] = True
        if group["word"] is None:
            mask = lookup[labels] & ~all_word_pixels
        else:
            mask = lookup[labels] | word_pixels[group["word"]]
        # On a photo, flat-looking patches of the photo itself (highlights, shadows) must be bigger to count.
        min_fraction = MIN_ELEMENT_FRACTION if bg_region is not None else MIN_ELEMENT_FRACTION_ON_PHOTO
        if mask.sum() < min_fraction * total and group["word"] is None and not (
                bg_region is not None and _is_long(mask, LONG_ELEMENT * max(height_px, width_px))):
            continue
        areas = regions.areas[group["regions"]]
        color = (regions.means[group["regions"]] * areas[:, None]).sum(axis=0) / areas.sum()
        word = group["word"]
        if word is not None:
            elements.append(_Element("text", mask, color, words[word][1]))
        else:
            elements.append(_Element("shape", mask, color))
        assigned |= mask

    if bg_region is not None:
        background = _Element("background", bg_lookup[labels] & ~all_word_pixels, regions.means[bg_region])
        background.regions = sorted(bg_regions)
        # Photographs placed on the canvas (a product shot, a cut-out portrait) stay whole: a connected
        # non-background blob whose inside is mostly texture is one image, with the flat-looking patches in it
        # (a black watch face, a white reflection, its label's letters) and the holes it encloses.
        drawn = np.zeros((height_px, width_px), bool)
        for element in elements:
            drawn |= element.mask
        for blob in photos:
            _checkpoint()
            # The photograph is the texture in the blob with the holes it encloses (background-coloured
            # highlights in it are not background). Flat shapes and words on it stay elements of their own: a
            # badge placed on a photo looks like a flat patch of it.
            texture = blob & ~drawn
            # What is left of it besides the flat elements must still be solid: JPEG ringing around a shape is
            # texture too, but thin.
            solid = cv2.erode(texture.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
            if solid.sum() < 0.5 * texture.sum():
                continue
            photo = _filled(texture) & ~drawn
            if photo.sum() < MIN_IMAGE_FRACTION * height_px * width_px:
                continue
            background.mask &= ~photo
            elements.append(_Element("image", photo, rgb[photo].mean(axis=0)))
            assigned |= photo
        # Textured blobs on a flat background: photos or cut-outs placed on the canvas.
        # Opening with a kernel ~3% of the short side drops the thin strips that anti-aliasing and JPEG ringing
        # leave along shape edges; a placed photo is much thicker than that.
        _checkpoint()
        texture = _open_mask(~assigned, max(5, int(0.03 * min(height_px, width_px)) | 1))
        _checkpoint()
        count, blobs, stats, _ = cv2.connectedComponentsWithStats(texture, connectivity=8)
        for k in range(1, count):
            if stats[k, cv2.CC_STAT_AREA] >= MIN_IMAGE_FRACTION * total:
                mask = blobs == k
                elements.append(_Element("image", mask, rgb[mask].mean(axis=0)))
    else:
        # No flat background: it is a photo (or texture); everything that is not a flat element is background.
        mask = np.ones((height_px, width_px), bool)
        for element in elements:
            mask &= ~element.mask
        background = _Element("background", mask, rgb[mask].mean(axis=0) if mask.any() else rgb.mean(axis=(0, 1)))
        background.regions = []

    elements.sort(key=lambda e: -e.area)
    if len(elements) > MAX_ELEMENTS:
        elements = elements[:MAX_ELEMENTS]
    for element in elements:
        _checkpoint()
        _set_hull(element)
    if bg_region is not None:
        elements += _enclosed_ground(rgb, background, elements)
    return background, elements


def _enclosed_ground(rgb: np.ndarray, background: _Element, elements: list[_Element]) -> list[_Element]:
    """Background-coloured marks enclosed by a solid shape (white letters in a blue box, the glyph on a round
    icon) are drawn on the shape, not holes through it to the background: they become elements of their own,
    above the shape, which is completed under them. A mark is the pixels inside the shape's hull, outside every
    element, nearer the background's colour than the shape's, in pieces that do not reach out of the hull (a
    bay of background in a concave shape does). Glyphs and strokes keep their own mask as hull: the counters
    of letters and the inside of a ring stay background."""
    import cv2

    height_px, width_px = rgb.shape[:2]
    owner = np.zeros((height_px, width_px), np.int32)
    for index, element in enumerate(elements, start=1):
        owner[element.mask] = index
    found = []
    for shape in elements:
        if shape.kind != "shape" or shape.glyph_like or shape.opacity < 1.0 or shape.hull is shape.mask:
            continue
        _checkpoint()
        box = _bbox_slices(shape.hull, 1)
        hull = shape.hull[box]
        crop = rgb[box]
        to_ground = np.linalg.norm(crop - background.color_rgb.astype(np.float32), axis=2)
        to_shape = np.linalg.norm(crop - shape.color_rgb.astype(np.float32), axis=2)
        marks = hull & (owner[box] == 0) & (to_ground < to_shape)
        if marks.sum() < MIN_ELEMENT_FRACTION * height_px * width_px or marks.sum() > 0.3 * hull.sum():
            continue
        count, pieces = cv2.connectedComponents(marks.astype(np.uint8), connectivity=8)
        outside = cv2.dilate((~hull).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        open_pieces = np.unique(pieces[outside & marks])
        marks &= ~np.isin(pieces, open_pieces)
        if marks.sum() < MIN_ELEMENT_FRACTION * height_px * width_px:
            continue
        mask = np.zeros((height_px, width_px), bool)
        mask[box] = marks
        background.mask &= ~mask
        color = rgb[mask].mean(axis=0)
        # An element of their colour there already (a word read there, a glyph's core) takes the marks around
        # it: they are its soft edge and the letters it missed.
        near = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        words = [e for e in elements + found if e is not shape and e.kind in ("text", "shape")
                 and np.linalg.norm(e.color_rgb - color) < np.linalg.norm(shape.color_rgb - color)
                 and (e.mask & near).any()]
        if words:
            words[0].mask = words[0].mask | mask
            words[0].area = int(words[0].mask.sum())
            _set_hull(words[0])
            continue
        element = _Element("shape", mask, color)
        element.host = shape
        _set_hull(element)
        found.append(element)
    return found


def _open_mask(mask: np.ndarray, kernel_px: int) -> np.ndarray:
    """Morphological opening with a disc of ``kernel_px``, as uint8. A big disc on a big image is slow (seconds
    at 12 MP), so big openings run at reduced size; the result never reaches outside ``mask``."""
    import cv2

    factor = max(1, kernel_px // 25)
    if factor == 1:
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel_px, kernel_px))
        return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, disc)
    height_px, width_px = mask.shape
    size = (max(1, width_px // factor), max(1, height_px // factor))
    small = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0.5
    small_px = max(3, (kernel_px // factor) | 1)  # 25 px or more: still round
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (small_px, small_px))
    opened = cv2.morphologyEx(small.astype(np.uint8), cv2.MORPH_OPEN, disc)
    return cv2.resize(opened, (width_px, height_px), interpolation=cv2.INTER_NEAREST) & mask.astype(np.uint8)


def _filled(mask: np.ndarray) -> np.ndarray:
    """The mask with the holes its outer contours enclose filled."""
    import cv2

    if not mask.any():
        return mask
    box = _bbox_slices(mask, 1)
    crop = mask[box].astype(np.uint8)
    contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(crop, contours, -1, 1, thickness=cv2.FILLED)
    out = np.zeros(mask.shape, bool)
    out[box] = crop.astype(bool)
    return out


def _photo_objects(regions: _Regions, background: np.ndarray) -> list[np.ndarray]:
    """Masks of the photographs on a flat background: connected blobs of non-background pixels, holes filled,
    whose inside (a few pixels in from their outline) is mostly texture (edge pixels or regions the colour
    model does not explain). Flat graphics, even with text in them, are texture only along their edges."""
    import cv2

    height_px, width_px = background.shape
    texture = (regions.labels == 0) | ~regions.flat[regions.labels]
    count, blobs, stats, _ = cv2.connectedComponentsWithStats((~background).astype(np.uint8), connectivity=8)
    photos = []
    erode = np.ones((5, 5), np.uint8)
    for k in range(1, count):
        _checkpoint()
        if stats[k, cv2.CC_STAT_AREA] < MIN_IMAGE_FRACTION * height_px * width_px:
            continue
        box = _bbox_slices(blobs == k, 2)
        blob = (blobs[box] == k).astype(np.uint8)
        inside = cv2.erode(blob, erode).astype(bool)
        # Thin things (letters, strokes, small icons) are mostly outline: a photograph is solid.
        if inside.sum() < max(50, 0.5 * blob.sum()) or texture[box][inside].mean() < PHOTO_TEXTURE_SHARE:
            continue
        contours, _ = cv2.findContours(blob, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(blob, contours, -1, 1, thickness=cv2.FILLED)
        mask = np.zeros(background.shape, bool)
        mask[box] = blob.astype(bool)
        photos.append(mask)
    return photos


def _set_hull(element: _Element) -> None:
    """The element's pieces, whether it looks like glyphs, and the hull its occlusion and completion use."""
    # Glyphs are not convex: their hulls would claim their own counters (and whatever shows through them)
    # as occluded parts. Text and many-piece elements (words the detector missed) keep their own mask.
    # (A shape cut up by letters above it has one dominant piece; a word has many similar ones.)
    element.pieces, largest_share = _pieces(element.mask)
    glyph_like = element.kind == "text" or (element.pieces >= 3 and largest_share < 0.6)
    element.glyph_like = glyph_like
    # Rings, outlines and arcs are thin all along: their hull would claim the whole inside (and everything
    # drawn there) as occluded parts of them, and completion would fill it in. They keep their own mask too.
    if glyph_like:
        element.hull = element.mask
    else:
        hull = _hull_mask(element.mask)
        element.hull = element.mask if _is_stroke(element.mask, hull) else hull


def _is_long(mask: np.ndarray, length_px: float) -> bool:
    """Whether the mask spans at least ``length_px`` along x or y (a thin rule is small in area, not in size)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return rows.size > 0 and max(rows[-1] - rows[0], cols[-1] - cols[0]) >= length_px


def _is_stroke(mask: np.ndarray, hull: np.ndarray) -> bool:
    """Thin everywhere (thickness under STROKE_THICKNESS of the hull's size) and hollow (half its hull or less).
    ``hull`` is the mask's ``_hull_mask``."""
    import cv2

    if not mask.any():
        return False
    crop = mask[_bbox_slices(mask, 1)].astype(np.uint8)
    thickness_px = 2.0 * float(cv2.distanceTransform(crop, cv2.DIST_L2, 3).max())
    hull_area = float(hull.sum())
    return thickness_px < STROKE_THICKNESS * np.sqrt(hull_area) and crop.sum() < 0.5 * hull_area


def _joint_hull(mask: np.ndarray) -> np.ndarray:
    """The one convex hull around all of the mask's pixels."""
    import cv2

    points = cv2.findNonZero(mask.astype(np.uint8))
    hull = np.zeros(mask.shape, np.uint8)
    if points is not None:
        cv2.fillPoly(hull, [cv2.convexHull(points)], 1)
    return hull.astype(bool) | mask


def _split_depths(background: _Element, elements: list[_Element]) -> list[_Element]:
    """Split a flat element whose same-coloured pieces lie at different depths into one element per depth.

    Regions are grouped by colour, so two red shapes with a blue one between them (one under it, one over it)
    arrive as one element, and one layer would hold both. Pieces stay together when they can be one shape seen
    around an occluder: no other element is above one piece and below the other, and little of the gap their
    joint hull spans (beyond their own hulls) is background (the rest is other elements and their soft edges).
    Glyph-like elements (a word's letters) are split by the depth test only.
    """
    if len(elements) < 2:
        return elements
    import cv2

    size = elements[0].mask.size
    tolerance = max(4.0, 1e-5 * size)  # as in _order_elements: a few pixels of hull overlap are anti-aliasing
    result: list[_Element] = []
    for element in elements:
        _checkpoint()
        if element.kind != "shape" or element.opacity < 1.0 or element.pieces < 2:
            result.append(element)
            continue
        count, labels, stats, _ = cv2.connectedComponentsWithStats(element.mask.astype(np.uint8), connectivity=8)
        big = [k for k in range(1, count) if stats[k, cv2.CC_STAT_AREA] >= MIN_ELEMENT_FRACTION * size]
        if len(big) < 2:
            result.append(element)
            continue
        others = [e for e in elements if e is not element]
        pieces = [labels == k for k in big]
        hulls = [_hull_mask(piece) for piece in pieces]
        # relation[i][o]: +1 element o is above piece i, −1 piece i is above o, 0 they do not overlap.
        relation = []
        for piece, hull in zip(pieces, hulls, strict=False):
            row = []
            for other in others:
                other_in_piece = float((hull & other.mask).sum())
                piece_in_other = float((other.hull & piece).sum())
                row.append(1 if other_in_piece - piece_in_other > tolerance
                           else -1 if piece_in_other - other_in_piece > tolerance else 0)
            relation.append(row)
        parent = list(range(len(pieces)))

        def root(i: int, parent: list[int] = parent) -> int:
            while parent[i] != i:
                i = parent[i]
            return i

        # Candidate joins, least background in the gap first; a join must keep the whole group consistent
        # (pieces joined through a third one must not lie on both sides of some element either).
        joins = []
        for i in range(len(pieces)):
            for j in range(i + 1, len(pieces)):
                _checkpoint()
                gap = _joint_hull(pieces[i] | pieces[j]) & ~hulls[i] & ~hulls[j]
                gap_px = float(gap.sum())
                share = float((gap & background.mask).sum()) / gap_px if gap_px > tolerance else 0.0
                # Background between them: two shapes, not one cut apart. (Glyph-like elements, letters of a
                # word the detector missed, have background between every letter: only depth splits them.)
                if share <= BACKGROUND_GAP or element.glyph_like:
                    joins.append((share, i, j))
        group_relation = {i: np.asarray(relation[i]) for i in range(len(pieces))}
        for _, i, j in sorted(joins):
            ri, rj = root(i), root(j)
            if ri == rj or (group_relation[ri] * group_relation[rj] < 0).any():
                continue  # something lies between them in depth
            parent[rj] = ri
            group_relation[ri] = np.where(group_relation[ri] != 0, group_relation[ri], group_relation[rj])
        roots = sorted({root(i) for i in range(len(pieces))})
        if len(roots) == 1:
            result.append(element)
            continue
        # Crumbs too small to be pieces of their own go with the biggest piece.
        masks = {r: np.zeros(element.mask.shape, bool) for r in roots}
        for i, piece in enumerate(pieces):
            masks[root(i)] |= piece
        biggest = max(roots, key=lambda r: masks[r].sum())
        masks[biggest] |= element.mask & ~np.logical_or.reduce([masks[r] for r in roots])
        for r in roots:
            part = _Element("shape", masks[r], element.color_rgb)
            _set_hull(part)
            result.append(part)
    return result


def _merge_phrases(elements: list[_Element]) -> list[_Element]:
    """Words of one colour next to each other are one text element (a phrase), as a designer would set it.

    The detector boxes words and lines, not phrases: a line it split in two (a rotated line, a line crossing
    another text) would otherwise come back as one layer per word, and a word it missed (crossed by another
    text) as glyph-like shapes of the same colour next to it.
    """

    def wordlike(element: _Element) -> bool:
        return element.kind == "text" or (element.kind == "shape" and element.glyph_like)

    texts = [e for e in elements if wordlike(e)]
    if len(texts) < 2 or not any(e.kind == "text" for e in texts):
        return elements
    boxes = {}
    for element in texts:
        rows, cols = _bbox_slices(element.mask, 0)
        boxes[id(element)] = (cols.start, rows.start, cols.stop, rows.stop)
    merged = list(elements)
    changed = True
    while changed:
        changed = False
        texts = [e for e in merged if wordlike(e)]
        for first in texts:
            for second in texts:
                if first is second or "text" not in (first.kind, second.kind):
                    continue
                if np.linalg.norm(first.color_rgb - second.color_rgb) >= SAME_COLOR:
                    continue
                a, b = boxes[id(first)], boxes[id(second)]
                reach_px = 0.6 * min(a[3] - a[1], b[3] - b[1])  # about a word space at that size
                if (a[0] - reach_px > b[2] or b[0] - reach_px > a[2]
                        or a[1] - reach_px > b[3] or b[1] - reach_px > a[3]):
                    continue
                left, right = (first, second) if a[0] <= b[0] else (second, first)
                phrase = _Element("text", first.mask | second.mask,
                                  (first.color_rgb * first.area + second.color_rgb * second.area)
                                  / max(first.area + second.area, 1),
                                  " ".join(t for t in (left.text, right.text) if t))
                _set_hull(phrase)
                boxes[id(phrase)] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                merged = [e for e in merged if e is not first and e is not second] + [phrase]
                changed = True
                break
            if changed:
                break
    return merged


def _find_subject(rgb: np.ndarray, background: _Element, elements: list[_Element]) -> _Element | None:
    """The photo's main subject: colour contrast to the border with a centre prior seeds grabCut.

    Runs at most SUBJECT_MAX_SIDE_PX on the long side. The salient blobs only *seed* the subject: the probable
    foreground is their dilated convex hull, generous enough that grabCut's colour models can take in a head
    above a suit or a cup's rim whose colours look like the border's. The mask is scaled back with a guided
    filter (edges follow the full-size image) and its outer rim is left to the peel's soft-edge band.
    """
    import cv2

    height_px, width_px = rgb.shape[:2]
    if min(height_px, width_px) < 24:
        return None
    scale = min(1.0, SUBJECT_MAX_SIDE_PX / max(height_px, width_px))
    size = (max(8, round(width_px * scale)), max(8, round(height_px * scale)))
    small = cv2.resize(np.clip(rgb, 0, 255).astype(np.uint8), size, interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    border = np.concatenate([lab[:3].reshape(-1, 3), lab[-3:].reshape(-1, 3),
                             lab[:, :3].reshape(-1, 3), lab[:, -3:].reshape(-1, 3)])
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 1.0)
    clusters = min(6, len(border))
    cv2.setRNGSeed(0)  # k-means++ seeding: the same photo gives the same subject
    _, _, centers = cv2.kmeans(border, clusters, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    distance = np.min(np.linalg.norm(lab[:, :, None, :] - centers[None, None], axis=3), axis=2)
    ys, xs = np.mgrid[0:size[1], 0:size[0]].astype(np.float32)
    centre = np.exp(-(((xs / size[0] - 0.5) ** 2) + ((ys / size[1] - 0.5) ** 2)) / (2 * 0.3 ** 2))
    saliency = cv2.GaussianBlur(distance * centre, (0, 0), 2.0)
    saliency_u8 = np.clip(saliency / max(float(saliency.max()), 1e-6) * 255, 0, 255).astype(np.uint8)
    threshold, _ = cv2.threshold(saliency_u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    salient = (saliency_u8 > threshold).astype(np.uint8)
    # Keep the big blobs (specks of odd colour in the background are not the subject).
    count, pieces, stats, _ = cv2.connectedComponentsWithStats(salient, connectivity=8)
    if count < 2:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.flatnonzero(areas >= max(0.15 * areas.max(), 0.005 * salient.size))
    salient = np.isin(pieces, keep)
    side_px = min(size)
    grow = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * round(0.08 * side_px) + 1,) * 2)
    probable = cv2.dilate(_hull_mask(salient).astype(np.uint8), grow)
    if probable[-max(3, size[1] // 10):].any():
        # A subject standing on (or near) the bottom edge, a person, may have its head above the salient part
        # (a suit): let the probable region reach a fifth of the height further up.
        reach_px = round(0.2 * size[1])
        upward = cv2.getStructuringElement(cv2.MORPH_RECT, (1, reach_px + 1))
        probable = cv2.dilate(probable, upward, anchor=(0, 0))
    probable = probable.astype(bool)
    mask = np.full(salient.shape, cv2.GC_PR_BGD, np.uint8)
    mask[probable] = cv2.GC_PR_FGD
    mask[salient & (saliency_u8 > min(255, threshold * 1.6))] = cv2.GC_FGD
    # The frame's edge is background, except the bottom edge: people and objects often stand on it.
    mask[:2][mask[:2] != cv2.GC_FGD] = cv2.GC_BGD
    mask[:, :2][mask[:, :2] != cv2.GC_FGD] = cv2.GC_BGD
    mask[:, -2:][mask[:, -2:] != cv2.GC_FGD] = cv2.GC_BGD
    bgd_model, fgd_model = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(small[..., ::-1].copy(), mask, None, bgd_model, fgd_model, 6, cv2.GC_INIT_WITH_MASK)
    foreground = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    count, pieces, stats, _ = cv2.connectedComponentsWithStats(foreground, connectivity=8)
    if count < 2:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.flatnonzero(areas >= max(0.2 * areas.max(), 0.01 * foreground.size))
    foreground = np.isin(pieces, keep).astype(np.uint8)
    # Holes inside the subject (the dark coffee, a pupil) belong to it.
    contours, _ = cv2.findContours(foreground, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(foreground, contours, -1, 1, thickness=cv2.FILLED)
    _checkpoint()
    full = _guided_upsample(foreground.astype(np.float32), rgb, scale) > 0.5
    for element in elements:
        full &= ~element.mask
    share = full.mean()
    if not 0.02 <= share <= 0.85:
        return None
    # Leave the outer rim to the peel's soft-edge band.
    rim = max(1, round(0.5 / scale))
    core = cv2.erode(full.astype(np.uint8), np.ones((2 * rim + 1, 2 * rim + 1), np.uint8)).astype(bool)
    if core.sum() < 0.01 * core.size:
        return None
    subject = _Element("image", core, rgb[core].mean(axis=0), "Subject")
    subject.hull = _hull_mask(core)
    return subject


def _guided_upsample(mask_small: np.ndarray, rgb: np.ndarray, scale: float) -> np.ndarray:
    """A low-resolution mask (0–1) scaled to full size with a guided filter (He et al.) on the image's
    luminance, so its edges move onto the photo's edges instead of staying blocky."""
    import cv2

    height_px, width_px = rgb.shape[:2]
    mask = cv2.resize(mask_small, (width_px, height_px), interpolation=cv2.INTER_LINEAR)
    if scale >= 1.0:
        return mask
    guide = (rgb @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.float32) / 255.0
    radius_px = max(2, round(1.5 / scale))
    ksize = (2 * radius_px + 1, 2 * radius_px + 1)
    mean_i = cv2.blur(guide, ksize)
    mean_p = cv2.blur(mask, ksize)
    _checkpoint()
    var_i = cv2.blur(guide * guide, ksize) - mean_i * mean_i
    cov_ip = cv2.blur(guide * mask, ksize) - mean_i * mean_p
    a = cov_ip / (var_i + 1e-3)
    b = mean_p - a * mean_i
    return cv2.blur(a, ksize) * guide + cv2.blur(b, ksize)


def _find_translucent(rgb: np.ndarray, background: _Element, elements: list[_Element]) -> list[_Element]:
    """Merge pairs of flat elements that are one translucent shape seen over two different things.

    A sheet of colour F at opacity a shows c1 = a·F + (1 − a)·u1 over u1 and c2 = a·F + (1 − a)·u2 over u2,
    so c1 − c2 = (1 − a)·(u1 − u2): the two visible colours differ along the line between what is under them,
    by a ratio in (0, 1). Two unrelated opaque shapes almost never line up like that.
    """
    import cv2

    shapes = [e for e in elements if e.kind == "shape" and not e.glyph_like]
    if len(shapes) < 2:
        return elements
    owner = np.zeros(background.mask.shape, np.int32)
    owner[background.mask] = 1
    for index, element in enumerate(elements, start=2):
        owner[element.mask] = index
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
    neighbours: dict[int, dict[int, np.ndarray]] = {}  # element id → {owner label: mean colour next to it}
    for element in shapes:
        _checkpoint()
        box = _bbox_slices(element.mask, 6)
        ring = cv2.dilate(element.mask[box].astype(np.uint8), kernel).astype(bool) & ~element.mask[box]
        labels_in_ring = owner[box][ring]
        colours = rgb[box][ring]
        counts = np.bincount(labels_in_ring, minlength=len(elements) + 2)
        found = {}
        for label in np.flatnonzero(counts[1:] >= max(8, 0.05 * ring.sum())) + 1:
            found[int(label)] = colours[labels_in_ring == label].mean(axis=0)
        neighbours[id(element)] = found
    label_of = {id(e): index for index, e in enumerate(elements, start=2)}
    merged: set[int] = set()
    result = list(elements)
    for first in shapes:
        for second in shapes:
            if first is second or id(first) in merged or id(second) in merged:
                continue
            if label_of[id(second)] not in neighbours[id(first)]:
                continue
            best = None
            for under_1, u1 in neighbours[id(first)].items():
                for under_2, u2 in neighbours[id(second)].items():
                    if under_1 == under_2 or under_1 == label_of[id(second)] or under_2 == label_of[id(first)]:
                        continue
                    du = u1 - u2
                    dc = first.color_rgb - second.color_rgb
                    norm_u, norm_c = np.linalg.norm(du), np.linalg.norm(dc)
                    if norm_u < 40.0 or norm_c < 8.0:
                        continue
                    ratio = float(dc @ du) / norm_u ** 2
                    cosine = float(dc @ du) / (norm_u * norm_c)
                    if cosine < 0.985 or not 0.1 < ratio < 0.9:
                        continue
                    opacity = 1.0 - ratio
                    color_1 = (first.color_rgb - ratio * u1) / opacity
                    color_2 = (second.color_rgb - ratio * u2) / opacity
                    if np.linalg.norm(color_1 - color_2) > 20.0 or not (-12 < color_1).all() or (color_1 > 267).any():
                        continue
                    if best is None or cosine > best[0]:
                        best = (cosine, opacity, np.clip((color_1 + color_2) / 2, 0, 255))
            if best is None:
                continue
            _, opacity, color = best
            sheet = _Element("shape", first.mask | second.mask, color)
            sheet.opacity = opacity
            closing = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
            closed = cv2.morphologyEx(sheet.mask.astype(np.uint8), cv2.MORPH_CLOSE, closing).astype(bool)
            sheet.hull = _hull_mask(closed)
            sheet.pieces = 1
            result = [e for e in result if e is not first and e is not second] + [sheet]
            merged.update({id(first), id(second)})
    return result


def _order_elements(elements: list[_Element]) -> list[_Element]:
    """Back-to-front order. above[a, b] > 0: b lies inside a's hulls more than a inside b's, so b is above a."""
    count = len(elements)
    if count <= 1:
        return elements
    # Element masks are disjoint: one label image, then one bincount per hull.
    owner = np.zeros(elements[0].mask.shape, np.int32)
    for index, element in enumerate(elements, start=1):
        owner[element.mask] = index
    inside = np.zeros((count, count))
    for a, ea in enumerate(elements):
        _checkpoint()
        inside[a] = np.bincount(owner[ea.hull], minlength=count + 1)[1:]
        inside[a, a] = 0.0
    # A few pixels of hull overlap are anti-aliasing noise, not occlusion (more on bigger images).
    tolerance = max(4.0, 1e-5 * elements[0].mask.size)
    above = (inside - inside.T) > tolerance  # above[a, b]: b is above a
    remaining = list(range(count))
    levels_front_to_back = []
    while remaining:
        # Unoccluded: nothing remaining is above it.
        top = [a for a in remaining if not any(above[a, b] for b in remaining if b != a)]
        if not top:  # a cycle: take the least occluded
            top = [min(remaining, key=lambda a: sum((inside[a, b] - inside[b, a]) for b in remaining if b != a))]
        levels_front_to_back.append(top)
        remaining = [a for a in remaining if a not in top]
    ordered = []
    for level_index, level in enumerate(reversed(levels_front_to_back)):
        # Within a level (disjoint elements): images to the back, text to the front, bigger ones further back.
        rank = {"image": 0, "shape": 1, "text": 2}
        for a in sorted(level, key=lambda a: (rank[elements[a].kind], -elements[a].area)):
            elements[a].level = level_index
            ordered.append(elements[a])
    # Marks drawn on a shape lie inside it only: right above their shape, so that a tight layer budget can fold
    # them back into it.
    for mark in [e for e in ordered if e.host is not None]:
        host = next((i for i, e in enumerate(ordered) if e is mark.host), None)
        if host is not None:
            ordered.remove(mark)
            ordered.insert(host + 1, mark)
    return ordered


def _fit_count(elements: list[_Element], wanted: int) -> list[list[_Element]]:
    """Merge neighbours in depth order until there are ``wanted`` groups; disjoint, small pairs go first."""
    groups = [[element] for element in elements]
    while len(groups) > max(wanted, 0):
        if wanted <= 0:
            return []
        best, best_cost = 0, None
        for index in range(len(groups) - 1):
            lower, upper = groups[index], groups[index + 1]
            same_level = lower[-1].level == upper[0].level
            same_kind = {e.kind for e in lower} == {e.kind for e in upper}
            area = sum(e.area for e in lower) + sum(e.area for e in upper)
            cost = (0 if same_level else 1, 0 if same_kind else 1, area)
            if all(e.host is not None and any(e.host is h for h in lower) for e in upper):
                cost = (-1, 0, area)  # marks on a shape go back into it before anything else is merged
            if best_cost is None or cost < best_cost:
                best, best_cost = index, cost
        groups[best:best + 2] = [groups[best] + groups[best + 1]]
    return groups


def _group_name(group: list[_Element]) -> str:
    if len(group) == 1:
        return group[0].name
    kinds = {e.kind for e in group}
    if kinds == {"text"}:
        texts = [e.text for e in group if e.text]
        return "Text '" + " ".join(texts) + "'" if texts else "Text"
    if kinds == {"shape"}:
        return "Shapes"
    if kinds == {"image"}:
        return "Images"
    names = list(dict.fromkeys(e.name for e in group))
    return "Group: " + ", ".join(names[:3]) + (f" +{len(names) - 3} more" if len(names) > 3 else "")


# ---------------------------------------------------------------------------------------------- peel


def _nearest_colors(rgb: np.ndarray, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every pixel: the colour of the nearest ``source`` pixel and the distance to it (px)."""
    import cv2

    if not source.any():
        return np.zeros_like(rgb), np.full(source.shape, np.inf, np.float32)
    distance, label = cv2.distanceTransformWithLabels((~source).astype(np.uint8), cv2.DIST_L2, 5,
                                                      labelType=cv2.DIST_LABEL_PIXEL)
    positions = np.flatnonzero(source.ravel())
    nearest = positions[np.maximum(label.ravel() - 1, 0)]
    return rgb.reshape(-1, 3)[nearest].reshape(rgb.shape), distance


def _bbox_slices(mask: np.ndarray, margin_px: int):
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    height_px, width_px = mask.shape
    return (slice(max(rows[0] - margin_px, 0), min(rows[-1] + margin_px + 1, height_px)),
            slice(max(cols[0] - margin_px, 0), min(cols[-1] + margin_px + 1, width_px)))


def _peel(rgb: np.ndarray, rgb_u8: np.ndarray, element: _Element, covering: np.ndarray,
          alpha_in: np.ndarray) -> np.ndarray:
    """The element's straight RGBA layer (full size); ``rgb_u8`` is ``rgb`` as it shows (uint8)."""
    import cv2

    height_px, width_px = rgb.shape[:2]
    rgba = np.zeros((height_px, width_px, 4), np.uint8)
    # Colour under zero alpha away from the element: the input's own colour. It is never seen in the composite,
    # but it is what a viewer or an editor that ignores alpha shows, what a merge with the layer below keeps
    # (Pillow's alpha_composite keeps the lower colour under alpha 0), and it does not bleed black when resampled.
    rgba[..., :3] = rgb_u8
    core = element.mask
    # Work inside the element's bounding box plus a margin; the colour outside it is the nearest colour anyway.
    box = _bbox_slices(element.hull, BAND_PX + 2)
    crop_rgb, crop_core = rgb[box], core[box]
    translucent = element.opacity < 1.0
    if translucent:
        # Its pieces (over different things) are one sheet: close the seams between them, one colour throughout.
        closing = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
        crop_core = cv2.morphologyEx(crop_core.astype(np.uint8), cv2.MORPH_CLOSE, closing).astype(bool)
        near_f = np.broadcast_to(element.color_rgb.astype(np.float32), crop_rgb.shape)
    else:
        near_f, _ = _nearest_colors(crop_rgb, crop_core)
    _checkpoint()
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * BAND_PX + 1, 2 * BAND_PX + 1))
    grown = cv2.dilate(crop_core.astype(np.uint8), kernel).astype(bool)
    band = grown & ~crop_core
    outside = ~grown
    alpha = crop_core.astype(np.float32)
    if band.any() and outside.any():
        near_b, _ = _nearest_colors(crop_rgb, outside)
        _checkpoint()
        f = near_f[band].astype(np.float32)
        b = near_b[band].astype(np.float32)
        i = crop_rgb[band].astype(np.float32)
        fb = f - b
        denom = (fb * fb).sum(axis=1)
        projected = ((i - b) * fb).sum(axis=1) / np.maximum(denom, 1e-6)
        # Where F and B are nearly the same colour the projection is noise: decide by distance instead.
        fallback = (np.linalg.norm(i - f, axis=1) < np.linalg.norm(i - b, axis=1)).astype(np.float32)
        alpha[band] = np.where(denom > 15.0 ** 2, np.clip(projected, 0.0, 1.0), fallback)
    elif band.any():
        alpha[band] = 1.0
    if translucent:
        # Over B the observed colour is B + a·(F − B): the projection already is the alpha, up to the opacity.
        alpha = np.minimum(alpha, element.opacity)
    # Complete the element under what covers it, inside its own hulls.
    completion = element.hull[box] & covering[box] & ~crop_core
    alpha[completion] = element.opacity
    # A layer is never more opaque than the input there (RGBA inputs).
    alpha = np.minimum(alpha, alpha_in[box])
    out = np.zeros(crop_rgb.shape[:2] + (4,), np.uint8)
    # Near its edge (the soft band and a little beyond) the element's own colour, so a soft edge resampled in
    # straight alpha does not pick up the colour of what lies behind it; farther out, the input's colour.
    near = cv2.dilate(grown.astype(np.uint8), kernel).astype(bool) | (alpha > 0)
    out[..., :3] = np.where(near[..., None], np.clip(np.rint(near_f), 0, 255), crop_rgb).astype(np.uint8)
    out[..., 3] = np.clip(np.rint(alpha * 255.0), 0, 255).astype(np.uint8)
    rgba[box] = out
    return rgba


# ---------------------------------------------------------------------------------------------- fill


def _fill_background(rgb: np.ndarray, background: _Element, hole: np.ndarray,
                     smooth_within: np.ndarray | None = None) -> np.ndarray:
    """The background's colour everywhere, including in ``hole`` (under the layers above); float RGB.
    A photo's hole gets a smooth fill away from its edge inside ``smooth_within`` (the subject's layer)."""
    import cv2

    height_px, width_px = rgb.shape[:2]
    if not hole.any():
        return rgb.astype(np.float64)
    known = ~hole
    if not known.any():
        return np.broadcast_to(background.color_rgb, rgb.shape).astype(np.float64).copy()
    regions = getattr(background, "regions", [])
    if regions:
        # Flat or gradient: fit one quadratic model over the background's own pixels, evaluate everywhere.
        sample = background.mask & known
        if sample.sum() < 12:
            sample = known
        picks = np.flatnonzero(sample.ravel())
        picks = picks[:: max(1, picks.size // 50_000)]  # 50k pixels pin a 6-term model down
        design = _features_at(picks // width_px, picks % width_px, height_px, width_px)
        coef, *_ = np.linalg.lstsq(design, rgb.reshape(-1, 3)[picks].astype(np.float64), rcond=None)
        _checkpoint()
        out = rgb.astype(np.float64).copy()
        ys, xs = np.nonzero(hole)
        out[ys, xs] = _features_at(ys, xs, height_px, width_px) @ coef
        return np.clip(out, 0, 255)
    # Texture (a photo): Telea inpainting, which continues the surrounding texture across a shape or a word laid
    # over the photo (and scores better there against the true background: bench_decompose's photo set). Deep
    # inside a subject's big hole it smears the rim inward into radial streaks: there a smooth pull-push fill
    # takes over, which reads as the out-of-focus background a subject usually hides. Both run at reduced size
    # when the image is big.
    hole_u8 = cv2.dilate(hole.astype(np.uint8), np.ones((3, 3), np.uint8))
    scale = min(1.0, INPAINT_MAX_SIDE_PX / max(height_px, width_px))
    src = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    if scale < 1.0:
        size = (max(1, round(width_px * scale)), max(1, round(height_px * scale)))
        small = cv2.resize(src, size, interpolation=cv2.INTER_AREA)
        small_hole = cv2.resize(hole_u8, size, interpolation=cv2.INTER_NEAREST)
        small_hole = cv2.dilate(small_hole, np.ones((3, 3), np.uint8))
        filled = cv2.inpaint(small, small_hole, 3, cv2.INPAINT_TELEA)
        filled = cv2.resize(filled, (width_px, height_px), interpolation=cv2.INTER_LINEAR)
    else:
        filled = cv2.inpaint(src, hole_u8, 3, cv2.INPAINT_TELEA)
    _checkpoint()
    depth_px = cv2.distanceTransform(hole_u8, cv2.DIST_L2, 3)
    band_px = TELEA_BAND_PX / scale
    smooth_share = np.clip(depth_px / band_px - 1.0, 0.0, 1.0)  # 0 within one band of the edge, 1 past two
    out = rgb.astype(np.float64).copy()
    inside = hole_u8 > 0
    out[inside] = filled[inside]
    if smooth_within is None:
        smooth_within = np.zeros_like(hole)
    smooth_share[~smooth_within] = 0.0
    if smooth_share.any():
        _checkpoint()
        deep = smooth_share > 0
        smooth = _smooth_fill(rgb.astype(np.float64), hole)
        share = smooth_share[deep][:, None]
        out[deep] = (1.0 - share) * out[deep] + share * smooth[deep]
    return out


def _smooth_fill(rgb: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """``rgb`` with ``hole`` filled by pull-push (normalised convolution over an image pyramid) at reduced size,
    upsampled, with grain of the surroundings' fine-detail strength added back (fixed seed: reproducible)."""
    import cv2

    height_px, width_px = rgb.shape[:2]
    # Everything a few pixels into the known side of the rim is anti-aliased subject edge: not a fill source.
    hole = cv2.dilate(hole.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    scale = min(1.0, INPAINT_MAX_SIDE_PX / max(height_px, width_px))
    size = (max(1, round(width_px * scale)), max(1, round(height_px * scale)))
    known = (~hole).astype(np.float32)
    small_known = cv2.resize(known, size, interpolation=cv2.INTER_AREA)
    small_premul = cv2.resize(rgb.astype(np.float32) * known[..., None], size, interpolation=cv2.INTER_AREA)
    # Pull: halve while any level still has unknown pixels; push: fill each level's gaps from the coarser one.
    pyramid = [(small_premul, small_known)]
    while min(pyramid[-1][1].shape) > 2 and (pyramid[-1][1] < 0.999).any():
        premul, weight = pyramid[-1]
        pyramid.append((cv2.pyrDown(premul), cv2.pyrDown(weight)))
    premul, weight = pyramid[-1]
    fallback = premul.reshape(-1, 3).sum(axis=0) / max(float(weight.sum()), 1e-6)
    estimate = np.where(weight[..., None] > 1e-3, premul / np.maximum(weight, 1e-3)[..., None], fallback)
    for premul, weight in reversed(pyramid[:-1]):
        _checkpoint()
        coarse = cv2.resize(estimate.astype(np.float32), (weight.shape[1], weight.shape[0]),
                            interpolation=cv2.INTER_LINEAR)
        coarse = cv2.GaussianBlur(coarse, (0, 0), 1.0)
        trust = np.clip(weight * 2.0, 0.0, 1.0)[..., None]
        estimate = trust * premul / np.maximum(weight, 1e-3)[..., None] + (1.0 - trust) * coarse
        # Relax towards the membrane (harmonic) fill: smooth inside, meeting the rim's colours without a seam.
        fixed = weight > 0.999
        for _ in range(FILL_RELAX_STEPS):
            estimate = np.where(fixed[..., None], estimate, cv2.blur(estimate.astype(np.float32), (3, 3)))
    smooth = cv2.resize(estimate.astype(np.float32), (width_px, height_px), interpolation=cv2.INTER_LINEAR)
    _checkpoint()
    # Grain: the surroundings' fine detail (image minus its blur) has some strength; the fill gets as much noise.
    detail = rgb.astype(np.float32) - cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), 2.0)
    ring = cv2.dilate(hole.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool) & ~hole
    strength = float(np.sqrt(np.mean(detail[ring] ** 2))) if ring.any() else 0.0
    noise = np.random.default_rng(0).standard_normal((height_px, width_px)).astype(np.float32)
    grain = cv2.GaussianBlur(noise, (0, 0), 0.8)
    grain *= 0.3 * strength / max(float(grain.std()), 1e-6)
    out = rgb.copy()
    out[hole] = smooth[hole] + grain[hole][:, None]
    return np.clip(out, 0, 255)


def _over_shares(layers_rgba: list[np.ndarray]) -> np.ndarray:
    """(L, H, W) float32: how much of each layer shows in the straight-alpha "over" composite,
    q_k = α_k · Π_{j>k} (1 − α_j). The composite's premultiplied colour is Σ q_k · colour_k, its alpha Σ q_k.
    (The pixel-exact composite lives in layers.composite_over; these shares are what the solves need.)"""
    shares = []
    transmit = None
    for rgba in reversed(layers_rgba):
        _checkpoint()
        alpha = rgba[..., 3].astype(np.float32) / 255.0
        shares.append(alpha if transmit is None else alpha * transmit)
        transmit = (1.0 - alpha) if transmit is None else transmit * (1.0 - alpha)
    return np.stack(shares[::-1])


def _over_premul(layers_rgba: list[np.ndarray], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Premultiplied colour (0–255) and alpha (0–1) of the layers' composite, float32; zeros for no layers."""
    premul = np.zeros(shape + (3,), np.float32)
    if not layers_rgba:
        return premul, np.zeros(shape, np.float32)
    shares = _over_shares(layers_rgba)
    for share, rgba in zip(shares, layers_rgba, strict=False):
        _checkpoint()
        premul += share[..., None] * rgba[..., :3]
    return premul, shares.sum(axis=0)


def _solve_bottom(target: np.ndarray, top_premul: np.ndarray, top_alpha: np.ndarray, fill_rgb: np.ndarray,
                  opaque: bool) -> np.ndarray:
    """Bottom layer such that it, under the layers above (``top_*``), equals the target where they leave it
    visible; elsewhere it keeps ``fill_rgb``."""
    out_alpha = target[..., 3].astype(np.float32) / 255.0
    out_premul = target[..., :3].astype(np.float32) * out_alpha[..., None]
    visible = 1.0 - top_alpha
    if opaque:
        bottom_alpha = np.ones_like(out_alpha)
    else:
        bottom_alpha = np.clip((out_alpha - top_alpha) / np.maximum(visible, 1e-6), 0.0, 1.0)
        bottom_alpha[visible < 1e-6] = 0.0
    weight = visible * bottom_alpha
    _checkpoint()
    solved = (out_premul - top_premul) / np.maximum(weight, 1e-6)[..., None]
    _checkpoint()
    # Solve only where the bottom shows enough for the division to be stable; elsewhere keep the fill.
    use_solved = weight > 0.1
    color = np.where(use_solved[..., None], solved, fill_rgb)
    _checkpoint()
    bottom = np.zeros(target.shape, np.uint8)
    bottom[..., :3] = np.clip(np.rint(color), 0, 255).astype(np.uint8)
    bottom[..., 3] = np.clip(np.rint(bottom_alpha * 255.0), 0, 255).astype(np.uint8)
    return bottom


def _correct_residual(layers: list[Layer], target: np.ndarray, tolerance: float = 0.5) -> None:
    """Put what the composite still misses into the colour of the layer that contributes most at each pixel.

    With straight-alpha "over", the composite's premultiplied colour is Σ_k colour_k · q_k where
    q_k = α_k · Π_{j>k} (1 − α_j); changing colour_k by err · out_α / q_k fixes the pixel exactly (until clipping).
    """
    shares = _over_shares([layer.rgba for layer in layers])
    composite_premul = np.zeros(target.shape[:2] + (3,), np.float32)
    for share, layer in zip(shares, layers, strict=False):
        _checkpoint()
        composite_premul += share[..., None] * layer.rgba[..., :3]
    error_premul = (target[..., :3].astype(np.float32) * (target[..., 3:4].astype(np.float32) / 255.0)
                    - composite_premul)
    _checkpoint()
    bad = np.abs(error_premul).max(axis=2) > tolerance
    if not bad.any():
        return
    best = np.argmax(shares, axis=0)
    _checkpoint()
    for index, layer in enumerate(layers):
        _checkpoint()
        pixels = bad & (best == index) & (shares[index] > 0.02)
        if not pixels.any():
            continue
        color = layer.rgba[..., :3][pixels].astype(np.float32)
        fixed = color + error_premul[pixels] / shares[index][pixels][:, None]
        layer.rgba[..., :3][pixels] = np.clip(np.rint(fixed), 0, 255).astype(np.uint8)
