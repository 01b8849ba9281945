# SPDX-License-Identifier: GPL-3.0-or-later
"""The CPU decomposer's text detector runs rapidocr's PP-OCRv4 graphs folded into fewer operators, with ONNX Runtime's
memory arena on: it must read exactly what rapidocr's own engine reads (the speed: scripts/bench_decompose.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from inference_server.backends.cpu.ocr_runtime import FastSession, ParallelRecognizer, folded_model
from inference_server.backends.cpu.text import TextDetector

rapidocr = pytest.importorskip("rapidocr_onnxruntime")
onnxruntime = pytest.importorskip("onnxruntime")
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
LINES = ("Fresh pizza every day", "Order online at ordermeal.example", "Open 11:00 - 23:00, closed on Mondays")


def poster() -> np.ndarray:
    image = Image.new("RGB", (900, 420), (250, 244, 230))
    draw = ImageDraw.Draw(image)
    draw.rectangle((40, 300, 860, 390), fill=(180, 30, 40))
    for row, line in enumerate(LINES):
        size = (44, 26, 22)[row]
        color = (255, 255, 255) if row == 2 else (30, 30, 30)
        draw.text((60, (40, 150, 330)[row]), line, font=ImageFont.truetype(FONT, size), fill=color)
    return np.asarray(image)


def test_reads_what_rapidocrs_own_engine_reads():
    detector = TextDetector()
    rgb = poster()
    words = detector.detect(rgb, [])
    engine = detector._engine
    assert isinstance(engine.text_rec, ParallelRecognizer)
    assert isinstance(engine.text_rec.recognizer.session.session, FastSession)
    assert isinstance(engine.text_det.infer.session, FastSession)
    # rapidocr's own engine, graphs and sessions as it builds them, on the same input
    plain = TextDetector()
    plain._engine = rapidocr.RapidOCR()
    plain_words = plain.detect(rgb, [])
    assert [w.text for w in words] == [w.text for w in plain_words]
    assert len(words) >= 3 and any("pizza" in w.text for w in words)
    for word, plain_word in zip(words, plain_words, strict=True):
        assert np.array_equal(word.box_px, plain_word.box_px)


def test_folded_recognizer_gives_the_same_probabilities_with_fewer_operators():
    import onnx

    path = str(rapidocr.__path__[0]) + "/models/ch_PP-OCRv4_rec_infer.onnx"
    folded = folded_model(path)
    before, after = onnx.load(path), onnx.load_from_string(folded)
    assert len(after.graph.node) < len(before.graph.node) * 0.6
    assert not [node for node in after.graph.node if node.op_type == "Clip"]  # every hard-swish rewritten

    # a text line as the recognizer sees it: 48 px high, normalised to [-1, 1]
    line = Image.new("L", (960, 48), 255)
    ImageDraw.Draw(line).text((8, 6), LINES[1], font=ImageFont.truetype(FONT, 30), fill=0)
    batch = np.repeat((np.asarray(line, np.float32) / 127.5 - 1.0)[None, None], 3, axis=1)
    sessions = [onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"]) for model in (path, folded)]
    outputs = [session.run(None, {session.get_inputs()[0].name: batch})[0] for session in sessions]
    assert np.abs(outputs[0] - outputs[1]).max() < 1e-4
    assert np.array_equal(outputs[0].argmax(-1), outputs[1].argmax(-1))


def test_no_scalar_affine_is_left_between_the_convolutions():
    """Every scalar scale-and-shift of PP-OCRv4's backbone is folded into a convolution or is one itself (a 1 × 1
    depthwise Conv): ONNX Runtime then keeps its blocked layout from one convolution to the next."""
    import onnx

    from inference_server.backends.cpu.ocr_runtime import _Graph

    for name in ("rec", "det"):
        path = str(rapidocr.__path__[0]) + f"/models/ch_PP-OCRv4_{name}_infer.onnx"
        graph = onnx.load_from_string(folded_model(path)).graph
        g = _Graph(graph)
        assert not [node for node in graph.node for x in node.output if g.scalar_affine(x)], name


def test_batches_side_by_side_read_exactly_what_one_after_the_other_reads():
    """The recognizer's batches run on two threads (one ONNX Runtime thread each): every line must come back with
    the same text and the same score, to the bit, as rapidocr's own loop over the same batches gives; lines of one
    width (ties in its order by aspect ratio) included."""
    detector = TextDetector()
    detector.detect(poster(), [])
    parallel = detector._engine.text_rec
    font = ImageFont.truetype(FONT, 20)
    lines = []
    for index in range(15):
        text = LINES[index % 3][: 8 + 2 * (index % 7)]
        line = Image.new("RGB", (12 * len(text) + 10, 30), (250, 244, 230))
        ImageDraw.Draw(line).text((5, 3), text, font=font, fill=(30, 30, 30))
        lines.append(np.asarray(line)[..., ::-1].copy())
    side_by_side, _ = ParallelRecognizer(parallel.recognizer, 2)(lines)
    one_after_the_other, _ = parallel.recognizer(lines)  # rapidocr's own loop (the same one-thread session)
    assert side_by_side == one_after_the_other
    assert any("pizza" in text for text, _ in side_by_side)


def test_a_recognizer_of_another_rapidocr_keeps_its_own_batching():
    class OtherRecognizer:  # a rapidocr whose recognizer lacks the names the side-by-side batching reads
        def __call__(self, img_list, return_word_box=False):
            return [("", 0.0)] * len(img_list), 0.0

    other = OtherRecognizer()
    assert ParallelRecognizer.of(other, workers=2) is other
