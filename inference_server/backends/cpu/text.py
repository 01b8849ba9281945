# SPDX-License-Identifier: GPL-3.0-or-later
"""Step 3, text: word boxes from rapidocr's PP-OCR detector, whose weights ship inside its wheel."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..base import CancelToken
from .cancel import cancel_scope, checkpoint
from .ocr_runtime import FastSession, ParallelRecognizer
from .tuning import OCR_DET_MAX_SIDE_PX, OCR_DET_SIDE_PX, OCR_MAX_SIDE_PX


@dataclass(frozen=True)
class Word:
    """One detected word (or line): its box's 4 corner points (x, y) in image pixels, and what it reads."""

    box_px: np.ndarray  # 4×2 float
    text: str


class TextDetector:
    """rapidocr, loaded on first use (thread-safe); without it (missing wheel, broken onnxruntime) no words."""

    def __init__(self, enabled: bool = True, threads: int | None = None) -> None:
        self.enabled = enabled
        self.threads = threads  # ONNX Runtime's; None: one per core
        self._engine = None
        self.failure = ""  # why the engine could not load ("" while it could, or was not tried yet)
        self._lock = threading.Lock()
        self._run_lock = threading.Lock()

    @property
    def available(self) -> bool:
        return self.enabled and not self.failure

    def detect(self, rgb_u8: np.ndarray, notes: list[str]) -> list[Word]:
        """The image's words; [] without the OCR engine (and then a note says why)."""
        if not self.enabled:
            return []
        engine = self._load(notes)
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

        # rapidocr's detector scales the copy up until its shorter side is 736 px, whatever the longer one becomes:
        # a 1024 × 163 banner becomes a 4600 px strip, most of a second's work for a few words. Its limit is
        # lowered for such long thin images only, so that the longer side stays within OCR_DET_MAX_SIDE_PX.
        det_side_px = min(OCR_DET_SIDE_PX, OCR_DET_MAX_SIDE_PX * min(small.shape[:2]) / max(small.shape[:2]))
        with self._run_lock:  # the limit, and the thresholds rapidocr's call sets, live on the shared engine
            checkpoint()  # (a reading abandoned while it waited for the engine does not start)
            if hasattr(engine.text_det, "limit_side_len"):  # rapidocr-onnxruntime 1.4's detector
                engine.text_det.limit_side_len = det_side_px
            result, _ = engine(np.ascontiguousarray(cv2.cvtColor(small, cv2.COLOR_RGB2BGR)), use_cls=False)
        words = []
        for box, text, score in result or []:
            if float(score) < 0.5:
                continue
            # One "character" is most often a shape read as a glyph (a star as '★', a bitten disc as 'D');
            # a real single letter still comes back as its own layer, as a shape.
            if sum(ch.isalnum() for ch in str(text)) < 2:
                continue
            words.append(Word(np.asarray(box, np.float64) / scale, str(text).strip()))
        return words

    def detect_async(self, rgb_u8: np.ndarray) -> Reading:
        """``detect`` started on a thread of its own. ONNX Runtime leaves the GIL while it runs, and part of the cores
        between and inside its passes: the caller's other work (the regions, which need no words) fills them."""
        return Reading(self, rgb_u8)

    def _load(self, notes: list[str]):
        with self._lock:
            if self._engine is None and not self.failure:
                try:
                    from rapidocr_onnxruntime import RapidOCR

                    options = {} if self.threads is None else {"intra_op_num_threads": self.threads,
                                                                "inter_op_num_threads": 1}
                    engine = RapidOCR(**options)
                    # (the classifier is unused)
                    engine.text_det.infer.session = FastSession.of(engine.text_det.infer.session)
                    recognizer = ParallelRecognizer.of(engine.text_rec, self.threads or os.cpu_count() or 1)
                    # side by side, each batch runs on one thread; rapidocr's own batching keeps its threads
                    engine.text_rec.session.session = FastSession.of(
                        engine.text_rec.session.session,
                        threads=1 if isinstance(recognizer, ParallelRecognizer) else None)
                    engine.text_rec = recognizer
                    self._engine = engine
                except Exception as error:  # missing wheel or broken onnxruntime: decompose without text cues
                    self.failure = f"{type(error).__name__}: {error}"
            if self.failure:
                notes.append(f"text detector unavailable ({self.failure}); text is treated as shapes")
            return self._engine


class Reading:
    """One image's words, read by ``TextDetector.detect`` on a thread of its own."""

    def __init__(self, detector: TextDetector, rgb_u8: np.ndarray) -> None:
        self._stop = CancelToken()  # the reading's own: set when its words are no longer wanted
        self._outcome: dict = {}
        self._thread = threading.Thread(target=self._read, args=(detector, rgb_u8), name="cpu-text-detector",
                                        daemon=True)
        self._thread.start()

    def _read(self, detector: TextDetector, rgb_u8: np.ndarray) -> None:
        own_notes: list[str] = []
        try:
            with cancel_scope(self._stop):
                self._outcome["words"] = detector.detect(rgb_u8, own_notes)
        except BaseException as error:  # noqa: BLE001 - handed to the caller, raised there
            self._outcome["error"] = error
        self._outcome["notes"] = own_notes

    def words(self, notes: list[str], cancel: CancelToken) -> list[Word]:
        """Wait for the words (adding detect's notes to ``notes``, raising what detect raised); JobCanceled as soon
        as ``cancel`` is set (call ``abandon`` then)."""
        while self._thread.is_alive():
            self._thread.join(0.02)
            cancel.raise_if_canceled()
        notes.extend(self._outcome["notes"])
        if "error" in self._outcome:
            raise self._outcome["error"]
        return self._outcome["words"]

    def abandon(self) -> None:
        """Stop the reading at the end of its running ONNX Runtime pass (the detector's, or a batch of the
        recognizer's: tenths of a second) and wait for that, so that nothing of a canceled job goes on running
        after it; nothing to do once the reading ended."""
        self._stop.cancel()
        self._thread.join()
