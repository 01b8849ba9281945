# SPDX-License-Identifier: GPL-3.0-or-later
"""Step 3's engine, run faster: rapidocr's ONNX Runtime sessions rebuilt with the memory arena on and their PP-OCRv4
graphs' scalar affines folded into the convolutions around them.

PP-OCRv4's PP-LCNetV3 backbone follows each convolution with a learnable scalar scale and shift, a hard-swish
exported as four element-wise operators (``x · clip(x + 3, 0, 6) / 6``) and another scalar scale and shift: nine passes
over a 48 × 2000 px text line's activations for one convolution's, and ONNX Runtime fuses none of them. Folding the
affines into the convolutions' weights (exact algebra) and writing the hard-swish as ``x · HardSigmoid(x)`` leaves
two or four passes and halves the recognizer's time; the probabilities move by ~2e-6 (float rounding), far below what
turns a character or a 0.5 score threshold.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np

logger = logging.getLogger(__name__)


class FastSession:
    """An ONNX Runtime session with its memory arena on, handed back to the system after every run.

    rapidocr builds its sessions with the arena off, so every run allocates its activations afresh: the recognizer's
    run on six 48 × 2000 px text lines spent three quarters of its time (seconds) faulting in new pages. With the
    arena each run reuses its own buffers; shrinking it after the run keeps an idle server at its size without one
    (about 300 MB less)."""

    def __init__(self, session) -> None:
        import onnxruntime

        self._session = session
        self._run_options = onnxruntime.RunOptions()
        self._run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    @classmethod
    def of(cls, session, threads: int | None = None):
        """``session`` (one of rapidocr's) rebuilt with the arena on and its graph folded, and running ``threads``
        threads per run when given; ``session`` itself where that cannot be done (another rapidocr or ONNX Runtime
        than we know: slower, never wrong)."""
        try:
            import onnxruntime

            model = session._model_path  # rapidocr opens its sessions from the model files inside its wheel
            options = session.get_session_options()
            options.enable_cpu_mem_arena = True
            if threads is not None:
                options.intra_op_num_threads = threads
            # Its threads sleep between operators instead of spinning: the detector runs beside the regions, and
            # spinning threads take the cores that the regions need (the same numbers; its CPU time on a 736 × 960
            # page 0.31 → 0.23 s).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            rebuilt = onnxruntime.InferenceSession(folded_model(model), options, providers=session.get_providers())
        except Exception as error:  # noqa: BLE001 - the speed-up is optional
            logger.info("text detector: kept rapidocr's own session (%s: %s)", type(error).__name__, error)
            return session
        return cls(rebuilt)

    def run(self, output_names, input_feed):
        return self._session.run(output_names, input_feed, self._run_options)

    def __getattr__(self, name):
        return getattr(self._session, name)


class ParallelRecognizer:
    """rapidocr's text recognizer with its batches run side by side, each on one thread, instead of one after the
    other on all of them.

    A batch is a few text lines (48 px high, up to a few thousand wide): too little work per operator for ONNX
    Runtime's threads, which spent ~40 % more CPU time than one thread (waiting for each other, spinning), and a
    page of text is a dozen batches. The batches are exactly rapidocr's (its order by aspect ratio, its batch size,
    each padded to its widest line), so each line reads the same, to the bit: the recognizer's kernels give the
    same numbers on one thread as on several. The widest batches start first (they take longest)."""

    # What __call__ reads of rapidocr's TextRecognizer (rapidocr-onnxruntime 1.4's names)
    USES = ("rec_batch_num", "rec_image_shape", "resize_norm_img", "postprocess_op", "session")

    def __init__(self, recognizer, workers: int) -> None:
        self.recognizer = recognizer  # rapidocr's TextRecognizer, its session running one thread per call
        self.workers = workers

    @classmethod
    def of(cls, recognizer, workers: int):
        """``recognizer`` with its batches side by side; ``recognizer`` itself when it is another rapidocr's than we
        know (one batch after the other: slower, never wrong)."""
        missing = [name for name in cls.USES if not hasattr(recognizer, name)]
        if missing:
            logger.info("text recognizer: kept rapidocr's own batching (no %s)", ", ".join(missing))
            return recognizer
        return cls(recognizer, workers)

    def __call__(self, img_list, return_word_box: bool = False):
        from concurrent.futures import ThreadPoolExecutor

        from .cancel import running_token

        recognizer = self.recognizer
        # rapidocr's batching (TextRecognizer.__call__ of rapidocr-onnxruntime 1.4), batch by batch the same
        order = np.argsort(np.array([img.shape[1] / float(img.shape[0]) for img in img_list]))
        size = recognizer.rec_batch_num
        batches = [order[start:start + size] for start in range(0, len(order), size)]
        token = running_token()  # the reading's: a batch not yet begun is not begun after a cancel

        def read(batch: np.ndarray) -> list:
            if token is not None:
                token.raise_if_canceled()
            _, height_px, width_px = recognizer.rec_image_shape[:3]
            ratios = [img_list[index].shape[1] * 1.0 / img_list[index].shape[0] for index in batch]
            max_ratio = max([width_px / height_px, *ratios])
            images = np.concatenate([recognizer.resize_norm_img(img_list[index], max_ratio)[np.newaxis, :]
                                     for index in batch]).astype(np.float32)
            preds = recognizer.session(images)[0]
            return recognizer.postprocess_op(preds, return_word_box, wh_ratio_list=ratios, max_wh_ratio=max_ratio)

        results: list = [("", 0.0)] * len(img_list)
        with ThreadPoolExecutor(max(1, min(self.workers, len(batches))), "cpu-text-recognizer") as pool:
            widest_first = list(reversed(batches))
            for batch, batch_results in zip(widest_first, pool.map(read, widest_first), strict=True):
                for index, result in zip(batch, batch_results, strict=True):
                    results[index] = result
        return results, 0.0  # (rapidocr also returns its elapsed time, which nothing here reads)


def folded_model(path: str) -> bytes:
    """The ONNX model at ``path`` with its scalar affines folded into the adjacent convolutions and its hard-swishes as
    HardSigmoid · x (serialized)."""
    import onnx

    model = onnx.load(path)
    graph = model.graph
    _hard_swish(graph)
    _fold_affine_after_conv(graph)
    _fold_affine_before_pointwise_conv(graph)
    _affine_as_depthwise_conv(model)
    _drop_unused_constants(graph)
    return model.SerializeToString()


class _Graph:
    """Who produces and who reads each tensor, and the constant tensors' values, of a graph as it is now."""

    def __init__(self, graph) -> None:
        from onnx import numpy_helper

        self.producer = {name: node for node in graph.node for name in node.output}
        self.readers: dict[str, list] = defaultdict(list)
        for node in graph.node:
            for name in node.input:
                self.readers[name].append(node)
        self.values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)

    def scalar(self, name: str) -> float | None:
        value = self.values.get(name)
        return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None

    def only_reader(self, name: str, op_type: str):
        readers = self.readers.get(name, [])
        return readers[0] if len(readers) == 1 and readers[0].op_type == op_type else None

    def scalar_affine(self, name: str):
        """(Mul node, Add node, scale, shift) when ``name`` is read only by ``Mul(name, s)`` whose result is read
        only by ``Add(·, t)``, with s and t scalar constants; else None."""
        mul = self.only_reader(name, "Mul")
        if mul is None:
            return None
        scale = self.scalar(mul.input[1] if mul.input[0] == name else mul.input[0])
        add = self.only_reader(mul.output[0], "Add")
        if scale is None or add is None:
            return None
        shift = self.scalar(add.input[1] if add.input[0] == mul.output[0] else add.input[0])
        return None if shift is None else (mul, add, scale, shift)

    def own_weights(self, conv) -> tuple[np.ndarray, np.ndarray] | None:
        """A convolution's weight and bias when both are constants read by it alone (so they can be rewritten)."""
        if len(conv.input) < 3 or any(len(self.readers[name]) != 1 for name in conv.input[1:3]):
            return None
        weight, bias = self.values.get(conv.input[1]), self.values.get(conv.input[2])
        return None if weight is None or bias is None else (weight, bias)


def _set_weights(graph, conv, weight: np.ndarray, bias: np.ndarray) -> None:
    from onnx import numpy_helper

    for index, value in ((1, weight), (2, bias)):
        name = f"{conv.input[index]}_folded"
        graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), name))
        conv.input[index] = name


def _remove(graph, nodes: list, renames: dict[str, str]) -> None:
    """Drop ``nodes`` and let their readers read ``renames[output]`` instead."""
    dropped = {id(node) for node in nodes}
    kept = [node for node in graph.node if id(node) not in dropped]
    for node in kept:
        for index, name in enumerate(node.input):
            while name in renames:
                name = renames[name]
            node.input[index] = name
    del graph.node[:]
    graph.node.extend(kept)


def _hard_swish(graph) -> None:
    """``Div(Mul(x, Clip(Add(x, 3), 0, 6)), 6)`` → ``Mul(x, HardSigmoid(x; 1/6, 0.5))`` (the HardSwish operator itself
    needs opset 14; these models are opset 12)."""
    from onnx import helper

    g = _Graph(graph)
    replaced: dict[int, list] = {}
    for div in graph.node:
        if div.op_type != "Div" or g.scalar(div.input[1]) != 6.0:
            continue
        mul = g.producer.get(div.input[0])
        if mul is None or mul.op_type != "Mul" or len(g.readers[mul.output[0]]) != 1:
            continue
        for x, clipped in (tuple(mul.input), tuple(reversed(mul.input))):
            clip = g.producer.get(clipped)
            if clip is None or clip.op_type != "Clip":
                continue
            add = g.producer.get(clip.input[0])
            if (add is None or add.op_type != "Add" or len(clip.input) != 3 or g.scalar(clip.input[1]) != 0.0
                    or g.scalar(clip.input[2]) != 6.0 or x not in add.input
                    or g.scalar(add.input[1] if add.input[0] == x else add.input[0]) != 3.0
                    or len(g.readers[add.output[0]]) != 1 or len(g.readers[clip.output[0]]) != 1):
                continue
            sigmoid = helper.make_node("HardSigmoid", [x], [f"{div.output[0]}_gate"], alpha=1.0 / 6.0, beta=0.5)
            replaced[id(div)] = [sigmoid, helper.make_node("Mul", [x, sigmoid.output[0]], [div.output[0]])]
            replaced[id(add)] = replaced[id(clip)] = replaced[id(mul)] = []
            break
    nodes = [new for node in graph.node for new in replaced.get(id(node), [node])]
    del graph.node[:]
    graph.node.extend(nodes)


def _fold_affine_after_conv(graph) -> None:
    """``Conv → Mul(s) → Add(t)`` → one Conv with weight·s and bias·s + t."""
    g = _Graph(graph)
    removed, renames = [], {}
    for conv in graph.node:
        affine = g.scalar_affine(conv.output[0]) if conv.op_type == "Conv" else None
        weights = g.own_weights(conv) if affine else None
        if affine is None or weights is None:
            continue
        mul, add, scale, shift = affine
        _set_weights(graph, conv, weights[0] * scale, weights[1] * scale + shift)
        removed += [mul, add]
        renames[add.output[0]] = conv.output[0]
    _remove(graph, removed, renames)


def _fold_affine_before_pointwise_conv(graph) -> None:
    """``Mul(s) → Add(t) → Conv 1×1`` → one Conv with weight·s and bias + t·Σweight. Only a 1×1 convolution without
    padding: a wider kernel would also sum the zero padding, which the shift never reached."""
    from onnx import helper

    g = _Graph(graph)
    removed, renames = [], {}
    for mul in list(graph.node):
        if mul.op_type != "Mul":
            continue
        for x in mul.input:
            affine = g.scalar_affine(x) if g.scalar(x) is None else None
            if affine is None or affine[0] is not mul:
                continue
            _, add, scale, shift = affine
            conv = g.only_reader(add.output[0], "Conv")
            weights = g.own_weights(conv) if conv is not None else None
            attributes = {a.name: helper.get_attribute_value(a) for a in conv.attribute} if conv is not None else {}
            if (weights is None or weights[0].shape[2:] != (1, 1) or attributes.get("group", 1) != 1
                    or any(attributes.get("pads", [])) or attributes.get("auto_pad", b"NOTSET") != b"NOTSET"):
                continue
            weight, bias = weights
            _set_weights(graph, conv, weight * scale, bias + shift * weight.sum(axis=(1, 2, 3)))
            removed += [mul, add]
            renames[add.output[0]] = x
            break
    _remove(graph, removed, renames)


def _affine_as_depthwise_conv(model) -> None:
    """The scalar affines left (after a hard-swish, before a padded depthwise convolution, so neither fold applies)
    → one 1 × 1 depthwise Conv (weight s, bias t per channel). The same arithmetic, but ONNX Runtime runs it in its
    blocked (NCHWc) layout between the convolutions around it, where a Mul and an Add cost a reorder out of that
    layout, two passes and a reorder back: a third of the recognizer's time."""
    from onnx import helper, numpy_helper, shape_inference

    graph = model.graph
    channels = {}
    for info in shape_inference.infer_shapes(model).graph.value_info:
        dims = info.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].HasField("dim_value"):
            channels[info.name] = dims[1].dim_value
    g = _Graph(graph)
    replaced: dict[int, list] = {}
    for mul in graph.node:
        if mul.op_type != "Mul" or id(mul) in replaced:
            continue
        for x in mul.input:
            affine = g.scalar_affine(x) if g.scalar(x) is None else None
            if affine is None or affine[0] is not mul or x not in channels:
                continue
            _, add, scale, shift = affine
            count = channels[x]
            weight, bias = f"{add.output[0]}_dw_weight", f"{add.output[0]}_dw_bias"
            graph.initializer.append(numpy_helper.from_array(np.full((count, 1, 1, 1), scale, np.float32), weight))
            graph.initializer.append(numpy_helper.from_array(np.full(count, shift, np.float32), bias))
            conv = helper.make_node("Conv", [x, weight, bias], [add.output[0]], group=count, kernel_shape=[1, 1])
            replaced[id(mul)], replaced[id(add)] = [conv], []
            break
    nodes = [new for node in graph.node for new in replaced.get(id(node), [node])]
    del graph.node[:]
    graph.node.extend(nodes)


def _drop_unused_constants(graph) -> None:
    """The constants the folds left unread (ONNX Runtime would warn about each)."""
    read = {name for node in graph.node for name in node.input} | {output.name for output in graph.output}
    nodes = [node for node in graph.node if node.op_type != "Constant" or node.output[0] in read]
    del graph.node[:]
    graph.node.extend(nodes)
    initializers = [init for init in graph.initializer if init.name in read]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
