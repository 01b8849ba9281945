# SPDX-License-Identifier: GPL-3.0-or-later
"""The CPU decomposer's one call: the numbered steps of the package docstring, in order."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from PIL import Image

from ...errors import InvalidInput
from ...layers import Layer, LayerStack, OverCompositor, Stopwatch, alpha_bbox_px
from ...params import MAX_LAYERS, DecomposeParams
from ..base import CancelToken, ProgressCallback, no_progress
from .build import build_elements
from .cancel import cancel_scope
from .compositing import correct_alpha, correct_residual, over_premul, solve_bottom
from .depths import merge_phrases, split_depths, split_phrases, split_pieces, split_strokes
from .elements import Element, ElementKind, color_name
from .fill import fill_background
from .glows import find_glows
from .holes import join_outlines, lift_hole_marks
from .leftovers import join_leftovers
from .lineart import find_line_art, inked_drawing
from .order import fit_count, group_name, order_elements
from .peel import Claims, blank_layer, peel
from .regions import find_regions
from .shadows import split_shadow
from .subject import find_label_boxes, find_pictures, find_subject, is_backdrop
from .text import TextDetector
from .threads import thread_budget
from .tiles import find_photo_tiles, tile_elements
from .translucent import find_translucent
from .tuning import AUTO_LAYER_AREA, AUTO_MAX_DEPTH, PAPER_PLAIN_SHARE, PAPER_WHITE_TOLERANCE


class CpuDecomposer:
    """Embedded classical decomposer (backend ``cpu``). Thread-safe; the OCR engine loads on first use."""

    name = "cpu"
    chooses_layer_count = True  # layers: "auto" reaches decompose(): a layer per element big enough, up to MAX_LAYERS

    def __init__(self, use_ocr: bool = True) -> None:
        self.use_ocr = use_ocr
        self.threads = thread_budget()
        if self.threads is not None:
            import cv2

            cv2.setNumThreads(self.threads)
        self.text_detector = TextDetector(enabled=use_ocr, threads=self.threads)

    def describe(self) -> dict:
        return {"backend": self.name, "device": "cpu", "model_loaded": True,
                "text_detector": "rapidocr" if self.text_detector.available else None}

    def decompose(self, image: Image.Image, params: DecomposeParams,
                  progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> LayerStack:
        cancel = cancel or CancelToken()
        with cancel_scope(cancel):
            return self._decompose(image, params, progress, cancel)

    def _decompose(self, image: Image.Image, params: DecomposeParams, progress: ProgressCallback,
                   cancel: CancelToken, under_shadow: bool = False) -> LayerStack:
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
        # "auto": up to the most the API allows; step 6 gives a layer to each element big enough (auto_budget).
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
            key_rgb = key_color(rgb[visible])
            rgb[~visible] = key_rgb
        rgb_u8 = np.clip(rgb, 0, 255).astype(np.uint8)
        progress("check", 1, 1)
        if requested == 1:
            watch.stop()
            return self._stack([Layer(target.copy(), "Background")], params, watch, notes)
        if not opaque and not under_shadow:
            # A cut-out over its translucent shadow (see-through at one opacity away from its solid body: a drop
            # shadow, a tinted backdrop) has the shadow as its bottom layer, going on under the body, and the body
            # decomposed above it with the rest of the count.
            split = split_shadow(target)
            if split is not None:
                body_params = params if params.auto_layers else replace(params, layers=requested - 1)
                body = self._decompose(Image.fromarray(split[1], "RGBA"), body_params, progress, cancel, True)
                # The body's bottom layer is the cut-out's solid part, not the picture's background.
                body_layers = list(body.layers)
                if body_layers[0].name == "Background":
                    body_layers[0] = Layer(body_layers[0].rgba, "Image")
                layers = [Layer(split[0], "Shadow")] + body_layers
                correct_residual(layers, target)
                watch.stop()
                # The body's own count notes speak of its count; this one is said again for the whole stack.
                notes = [note for note in body.notes if not note.startswith(("found ", "layers: auto"))]
                stack = self._counted(layers, requested, params, watch, notes)
                for stage, seconds in body.timings_s.items():
                    stack.timings_s[stage] = stack.timings_s.get(stage, 0.0) + seconds
                return stack

        # 2. Regions, while step 3's detector reads the words on a thread of its own: the regions need no words,
        # and the detector leaves part of the cores idle (its Python pre- and post-processing, its serial passes).
        # Not when the thread budget is one thread (a 1-CPU replica): then the two run one after the other.
        begin("regions")
        reading = self.text_detector.detect_async(rgb_u8) if self.threads is None or self.threads > 1 else None
        try:
            regions = find_regions(rgb)
            progress("regions", 1, 1)

            # 3. Text
            begin("text")
            words = reading.words(notes, cancel) if reading is not None else self.text_detector.detect(rgb_u8, notes)
        finally:
            if reading is not None:
                reading.abandon()  # a cancel (or an error) in the regions or while waiting: no reading goes on
        progress("text", 1, 1)

        # 4. Elements
        begin("elements")
        background, elements = build_elements(rgb, regions, words)
        # An RGBA input's transparent surround is the "background" here; it ends up empty and is dropped, so it
        # does not take a place in the layer budget: the elements get every layer asked for.
        surround = not opaque and float(np.abs(background.color_rgb - key_rgb).max()) < 24.0
        budget = requested - (0 if surround else 1)  # elements the layer count has room for
        elements = find_translucent(rgb, background, elements)
        elements = split_depths(background, elements)
        elements = merge_phrases(elements)
        tiles, page_rgb = find_photo_tiles(rgb, regions, cut_seams=opaque)
        if tiles:
            elements = tile_elements(rgb, background, elements, tiles, page_rgb)
        elements = find_line_art(rgb, background, elements)
        join_leftovers(rgb, background, elements)
        elements = join_outlines(rgb, elements)
        # A photo ground (no flat ground, no photo grid): what lies on it comes next.
        on_photo = not background.regions and not tiles
        if on_photo:
            # The boxes words are set in on a photo (buttons) are shapes under their words.
            for button in find_label_boxes(regions, elements):
                elements.append(button)
                background.mask &= ~button.mask
        if on_photo and (len(elements) < budget or budget >= 2):
            # A photo: pictures and sprites placed on it (closed, sharp outlines the photo's texture does not make)
            # get layers, on a backdrop of words too (a portrait on a banner). With no room left in the layer budget,
            # still the biggest one: a designer places a portrait as a layer of its own, where the count's other
            # layers are small marks and words (step 6 merges those); not with one layer above the background,
            # which would fold the picture in with the words.
            for picture in find_pictures(rgb, elements, max(1, budget - len(elements))):
                elements.append(picture)
                background.mask &= ~picture.mask
        if on_photo and len(elements) < budget and not is_backdrop(regions, elements):
            # A photo with room left in the layer budget: split off its main subject. (Not a picture that is the
            # backdrop of words or graphics set on it: that stays one background layer under them.)
            subject = find_subject(rgb, background, elements)
            if subject is not None:
                elements.append(subject)
                background.mask &= ~subject.mask
        if not params.auto_layers:
            # Room left in a layer count the user chose: shapes made of separate pieces get a layer per piece, then
            # phrases go back to their words. (In that order: a designer sets a title of two lines as one text and
            # each of two buttons on a panel as a shape of its own; the other order spends the room on the title's
            # lines and leaves the buttons in one layer. "auto" keeps phrases: a designer sets a line as one text.)
            elements = split_pieces(elements, budget)
            elements = split_phrases(elements, budget)
            elements = split_strokes(elements, budget)
        progress("elements", 1, 1)

        # 5. Order
        begin("order")
        elements = order_elements(elements)
        if lift_hole_marks(rgb, background, elements):
            elements = order_elements(elements)  # glyphs that filled a disc's holes moved from the panel to the disc
        progress("order", 1, 1)

        # 6. Layer count
        begin("count")
        if params.auto_layers:
            budget = min(budget, auto_budget(elements))
        # An inked drawing made to fit a short count the user chose keeps its figure whole (see fit_count); only
        # then is the ink measured (one morphology pass over the canvas). Not with "auto": its count gives a
        # layer to each piece big enough, which merging the biggest pieces first would undo.
        drawing = not params.auto_layers and len(elements) > budget and inked_drawing(rgb, background, elements)
        # A short count the user chose leaves the pieces of an RGBA input's transparent surround in the background
        # (order.surround_pieces; no layer holds them, so the bottom layer is solved from the input there); where
        # the surround is the background, it has none.
        see_through = None if opaque or surround or params.auto_layers else alpha_in < 0.1
        groups = fit_count(elements, budget, AUTO_MAX_DEPTH if params.auto_layers else None, drawing, see_through)
        progress("count", 1, 1)

        # 7. Peel (front to back, so each element knows what covers it)
        watch.start("peel")
        element_layers: dict[int, np.ndarray] = {}
        covering = np.zeros((height_px, width_px), bool)
        claims = Claims.of(elements, background)
        blank = blank_layer(rgb_u8)
        for step, element in enumerate(reversed(elements), start=1):
            cancel.raise_if_canceled()
            rgba, box = peel(rgb, blank, element, covering, alpha_in, claims, len(elements) - step + 1)
            element_layers[id(element)] = rgba
            covering[box] |= rgba[box][..., 3] > 0
            progress("peel", step, len(elements))
        upper = [Layer(merge_group([element_layers[id(e)] for e in group]), group_name(group)) for group in groups]

        # 8. Fill the background
        begin("fill")
        top_premul, top_alpha = over_premul([layer.rgba for layer in upper], (height_px, width_px))
        subject_layer = [element_layers[id(e)] for e in elements if e.kind is ElementKind.IMAGE and e.text == "Subject"]
        fill_rgb = fill_background(rgb, background, top_alpha > 0,
                                    subject_layer[0][..., 3] > 0 if subject_layer else None)
        progress("fill", 1, 1)
        bottom = solve_bottom(target, top_premul, top_alpha, fill_rgb, opaque, complete_under=not surround)
        layers = [Layer(bottom, "Background")] + upper

        # 9. Residual correction
        begin("residual")
        if not opaque:
            correct_alpha(layers, target)
        correct_residual(layers, target)
        if surround and len(layers) > 1:
            if layers[0].coverage < 0.001:
                layers = layers[1:]  # nothing left in the transparent surround
            else:
                layers[:2] = [Layer(merge_group([layers[0].rgba, layers[1].rgba]), layers[1].name)]
            correct_residual(layers, target)
        if len(layers) == 1 and opaque:
            # Nothing came apart: an image with no edges at all may be soft glows over a flat ground.
            layers = glow_layers(target, rgb, requested - 1) or layers
        if len(layers) == 1:
            # Nothing came apart: the one layer is the input itself, not a rebuild of it (which drifts in the
            # straight colour and alpha of faint pixels the residual correction leaves alone).
            layers = [Layer(target.copy(), layers[0].name)]
        if not params.auto_layers and opaque:
            layers = paper_under(layers, requested, notes)
        progress("residual", 1, 1)
        watch.stop()
        return self._counted(layers, requested, params, watch, notes)

    def _counted(self, layers: list[Layer], requested: int, params: DecomposeParams, watch: Stopwatch,
                 notes: list[str]) -> LayerStack:
        """The stack, with a note saying how many layers came out when that is not the count asked for."""
        if params.auto_layers:
            notes.append(f"layers: auto; found {len(layers)} distinct layer(s) in the image")
        elif len(layers) < requested:
            notes.append(f"found {len(layers)} distinct layer(s) in the image, fewer than the {requested} "
                         f"requested; returned {len(layers)}")
        return self._stack(layers, params, watch, notes)

    def _stack(self, layers, params, watch, notes) -> LayerStack:
        return LayerStack(layers, backend=self.name, params=params.to_dict(), seed=params.seed,
                          timings_s=watch.timings_s, notes=notes)


def auto_budget(elements: list[Element]) -> int:
    """The layer count "auto" gives the elements: one per element whose outline takes AUTO_LAYER_AREA of the canvas
    or more (a designer's layer is a thing seen at a glance: a photo, a panel, a heading, a badge); the smaller
    ones (a menu's words, a caption, the dots of a pager) join their neighbours as a short count merges them."""
    if not elements:
        return 0
    least_px = AUTO_LAYER_AREA * elements[0].mask.size
    return max(1, sum(1 for element in elements if np.count_nonzero(element.hull) >= least_px))


def paper_under(layers: list[Layer], requested: int, notes: list[str]) -> list[Layer]:
    """The layers, with a plain white "Paper" layer under them when the user chose more layers than the picture
    came apart into (two at least) and its bottom layer is an opaque ground of one plain colour other than white.

    That is how a design made in Photoshop is built: the document starts on a white "Background" layer, and a
    coloured ground is a fill layer laid over all of it (of the real sets' files, 7 of 44, 5 of 83 and 10 of 56
    have that hidden white sheet at the bottom; among the short counts, 10 of 31). The paper is hidden under the
    ground, so the composite is unchanged; the note says so. Not under a photo, a gradient or a texture (a
    picture's own ground as often as not, and a layer count short of it most often misses elements, not the
    sheet), nor under a ground that is white itself (the sheet), nor when nothing came apart."""
    if len(layers) >= requested or len(layers) < 2:
        return layers
    ground = layers[0].rgba
    if not (ground[..., 3] == 255).all():
        return layers
    median_rgb = np.median(ground[..., :3].reshape(-1, 3), axis=0)
    if float((255.0 - median_rgb).max()) <= PAPER_WHITE_TOLERANCE:
        return layers
    plain = np.abs(ground[..., :3].astype(np.float32) - median_rgb).max(axis=2) <= PAPER_WHITE_TOLERANCE
    if float(plain.mean()) < PAPER_PLAIN_SHARE:
        return layers
    notes.append("the bottom layer is a plain white paper under the picture's ground (hidden by it), as a "
                 "Photoshop document starts: the picture has fewer elements than the layers asked for")
    return [Layer(np.full(ground.shape, 255, np.uint8), "Paper")] + layers


def glow_layers(target: np.ndarray, rgb: np.ndarray, max_glows: int) -> list[Layer] | None:
    """The ground and one layer per soft glow (its colour throughout, its alpha fitted), composite exact; None
    when the image is not glows over a flat ground."""
    glows = find_glows(rgb, max_glows)
    if glows is None:
        return None
    height_px, width_px = target.shape[:2]
    upper: list[Layer] = []
    in_front = np.ones((height_px, width_px), np.float32)  # how much the glows in front leave of each pixel
    for color_rgb, weight in zip(reversed(glows.colors_rgb), reversed(glows.alphas), strict=True):
        # The fit is linear (ground + Σ wₖ·(Fₖ − ground)); in the "over" composite a glow shows through the glows
        # in front of it, so its alpha is its weight over what they leave.
        alpha = np.clip(weight / np.maximum(in_front, 1e-3), 0.0, 1.0)
        in_front *= 1.0 - alpha
        rgba = np.zeros((height_px, width_px, 4), np.uint8)
        rgba[..., :3] = np.clip(np.rint(color_rgb), 0, 255).astype(np.uint8)
        rgba[..., 3] = np.clip(np.rint(alpha * 255.0), 0, 255).astype(np.uint8)
        upper.insert(0, Layer(rgba, f"{color_name(color_rgb)} glow"))
    top_premul, top_alpha = over_premul([layer.rgba for layer in upper], (height_px, width_px))
    fill_rgb = np.broadcast_to(glows.ground_rgb.astype(np.float32), rgb.shape)
    layers = [Layer(solve_bottom(target, top_premul, top_alpha, fill_rgb, True), "Background")] + upper
    correct_residual(layers, target)
    return layers


def key_color(visible_rgb: np.ndarray) -> np.ndarray:
    """Of the 27 colours {0, 128, 255}³, the one farthest from (nearly) all of the visible colours."""
    candidates = np.stack(np.meshgrid([0, 128, 255], [0, 128, 255], [0, 128, 255], indexing="ij"), -1)
    candidates = candidates.reshape(-1, 3).astype(np.float32)
    if visible_rgb.size == 0:
        return candidates[-1]
    sample = visible_rgb[:: max(1, len(visible_rgb) // 5000)]
    distance = np.linalg.norm(sample[:, None, :] - candidates[None], axis=2)
    return candidates[int(np.argmax(np.percentile(distance, 1, axis=0)))]


def merge_group(rgba_list: list[np.ndarray]) -> np.ndarray:
    """One layer of a group's element layers (back to front): their "over" composite where any of them has alpha,
    the front element's colour under zero alpha. Composited only inside the box their alphas span."""
    if len(rgba_list) == 1:
        return rgba_list[0]
    merged = rgba_list[-1].copy()
    merged[..., 3] = 0
    placed = [(rgba, box) for rgba, box in ((rgba, alpha_bbox_px(rgba[..., 3])) for rgba in rgba_list)
              if box is not None]
    if not placed:
        return merged
    x0, y0 = min(b[0] for _, b in placed), min(b[1] for _, b in placed)
    x1, y1 = max(b[0] + b[2] for _, b in placed), max(b[1] + b[3] for _, b in placed)
    # Each element is laid over only inside its own box (zero alpha changes nothing): 46 lines of a menu's text
    # cost their lines, not 46 times the page.
    compositor = OverCompositor(x1 - x0, y1 - y0)
    for rgba, (left_px, top_px, width_px, height_px) in placed:
        compositor.add(rgba[top_px:top_px + height_px, left_px:left_px + width_px], left_px - x0, top_px - y0)
    inside = compositor.result()
    # The compositor leaves colour 0 where all alphas are 0: keep the front element's colour there.
    np.copyto(inside[..., :3], merged[y0:y1, x0:x1, :3], where=(inside[..., 3] == 0)[..., None])
    merged[y0:y1, x0:x1] = inside
    return merged
