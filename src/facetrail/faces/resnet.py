"""dlib's face descriptor ResNet, read from its ``.dat`` file and run with onnxruntime.

dlib's ``face_recognition_model_v1.compute_face_descriptor`` maps a 150x150 aligned RGB
face chip to a 128-d descriptor with a 29-conv ResNet.  The PyPI build of dlib has no
BLAS, so it spends ~80 ms per chip.  This module reads the weights out of
``dlib_face_recognition_resnet_model_v1.dat``, writes the same network as an ONNX graph
and runs it with onnxruntime, which gives the same numbers (float32 rounding aside) an
order of magnitude faster.

The ``.dat`` format
-------------------
The file is ``dlib::serialize(net)`` of the network type ``anet_type`` defined in dlib's
``examples/dnn_face_recognition_ex.cpp`` (also ``tools/python/src/face_recognition.cpp``).
dlib's primitive encodings (``dlib/serialize.h``, ``dlib/float_details.h``,
``dlib/cuda/tensor.h``):

* integer: a control byte (low 4 bits: number of following bytes; bit 0x80: negative),
  then the absolute value, little endian, in that many bytes;
* bool: the ASCII byte ``'1'`` or ``'0'``;
* string: integer length, then the bytes;
* float/double: ``float_details``: integer mantissa, then integer exponent; the value is
  ``mantissa * 2**exponent`` (exponents 32000/32001/32002 mean +inf/-inf/NaN);
* ``resizable_tensor``: integer version (2), integers num_samples, k, nr, nc, then
  ``num_samples*k*nr*nc`` raw little-endian float32 values in (n, k, r, c) order;
* ``alias_tensor`` (a shape only): integer version (1), then n, k, nr, nc.

A network is nested templates, each serializing its *subnetwork before its own fields*
(``dlib/dnn/core.h``):

* ``add_loss_layer``: version (1), loss details, subnetwork;
* ``add_layer``: version, subnetwork, layer details, three bools, then training-time
  tensors (non-input layer: version 1 has x_grad and cached_output, version 2 also
  params_grad; layer on the input: version 2 has x_grad, cached_output, grad_final and
  version 3 adds an integer sample_expansion_factor);
* ``add_tag_layer`` / ``add_skip_layer``: version (1), subnetwork, nothing else.

So the file is: the loss details, one version integer per layer from the top of the
network down to the bottom, the input layer's details, then each ``add_layer``'s
details and trailer from the bottom up.  Tag and skip layers record neither their kind
nor their tag id, so the layer sequence cannot be recovered from the file alone: it is
written out below (``_FACE_RESNET``) from the C++ type, and the file's layer names
(``con_4``, ``affine_``, ``relu_``, ...) and version numbers are checked against it.

Layer details (``dlib/dnn/layers.h``, ``input.h``, ``loss.h``), as read here:

* ``loss_metric_2``: margin and distance threshold (floats, unused at inference);
* ``input_rgb_image_sized``: per-channel means (floats), then nr, nc; a pixel ``v`` of
  channel c becomes ``(v - mean[c]) / 256`` in a (N, 3, nr, nc) tensor;
* ``con_4``/``con_5``: params tensor (filters then biases), num_filters, nr, nc,
  stride_y, stride_x, padding_y, padding_x, filters and biases alias shapes, four
  doubles (learning-rate/weight-decay multipliers), ``con_5`` adds a use_bias bool;
* ``affine_``/``affine_2``: params tensor (gamma then beta), gamma and beta alias
  shapes, integer mode (0: per channel, 1: per element), ``affine_2`` adds is_disabled;
  it computes ``x * gamma + beta`` (batch norm folded at training end);
* ``relu_``, ``add_prev_``: nothing;
* ``max_pool_2``/``avg_pool_2``: nr, nc, stride_y, stride_x, padding_y, padding_x
  (a window of 0 means the whole input);
* ``fc_2``/``fc_3``: num_outputs, num_inputs, params tensor ((num_inputs, num_outputs)
  weights, then biases), weights and biases alias shapes, integer bias mode (1: none),
  four doubles, ``fc_3`` adds a use_bias bool.

``add_prev`` adds the tagged tensor to its input; when their shapes differ dlib's
``tt::add`` zero-pads both to the elementwise maximum shape (extra channels, rows and
columns at the end).  This net relies on it: each downsampling block adds its
average-pooled input (32, 64 or 128 channels) to a block output with twice the channels,
and at 8x8 and 4x4 inputs the stride-2 conv gives 3x3 and 1x1 where the 2x2 average pool
gives 4x4 and 2x2.  The descriptor is the raw fc output (not normalised).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

__all__ = ["CHIP_SIZE", "DESCRIPTOR_DIM", "ResnetDescriptor", "load_dlib_resnet"]

CHIP_SIZE = 150
"""Side in pixels of the aligned face chips the network takes."""

DESCRIPTOR_DIM = 128
"""Length of a face descriptor."""

_OPSET = 17
_IR_VERSION = 8
_BUILDER_VERSION = "1"
"""Bump when the graph this module builds changes, so cached .onnx files are rebuilt."""
_META_SOURCE = "facetrail.dlib_sha256"
_META_BUILDER = "facetrail.builder_version"


# ----------------------------------------------------------------------------------------
# Network structure (dlib's examples/dnn_face_recognition_ex.cpp, anet_type)


def _face_resnet_layers() -> tuple[tuple[str, int], ...]:
    """The layers of dlib's ``anet_type``, input side first, as (kind, tag id) pairs.

    ``block`` is ``affine<con<relu<affine<con(stride)>>>>``; ``ares`` adds its input
    back (``add_prev1`` over ``tag1``); ``ares_down`` adds an average-pooled copy of its
    input to a stride-2 block (``add_prev2<avg_pool<skip1<tag2<block<tag1>>>>>``).
    """
    block = [("con", 0), ("affine", 0), ("relu", 0), ("con", 0), ("affine", 0)]
    ares = [("tag", 1), *block, ("add_prev", 1), ("relu", 0)]
    ares_down = [("tag", 1), *block, ("tag", 2), ("skip", 1), ("avg_pool", 0), ("add_prev", 2), ("relu", 0)]
    layers = [("con", 0), ("affine", 0), ("relu", 0), ("max_pool", 0)]
    layers += ares * 3  # alevel4: 32 filters, 35x35
    layers += ares_down + ares * 3  # alevel3: 64 filters, 17x17
    layers += ares_down + ares * 2  # alevel2: 128 filters, 8x8
    layers += ares_down + ares * 2  # alevel1: 256 filters, 4x4
    layers += ares_down  # alevel0: 256 filters, 2x2
    layers += [("avg_pool", 0), ("fc", 0)]  # avg_pool_everything, fc_no_bias<128>
    return tuple(layers)


_FACE_RESNET = _face_resnet_layers()


# ----------------------------------------------------------------------------------------
# Parsed layers


@dataclass(frozen=True)
class _Conv:
    weight: np.ndarray  # (filters, in channels, rows, cols)
    bias: np.ndarray | None
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class _Affine:
    gamma: np.ndarray  # (channels,) per channel, or (channels, rows, cols) per element
    beta: np.ndarray


@dataclass(frozen=True)
class _Relu:
    pass


@dataclass(frozen=True)
class _Pool:
    op: str  # "max" or "avg"
    window: tuple[int, int]  # (0, 0): the whole input
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class _Fc:
    weight: np.ndarray  # (inputs, outputs)
    bias: np.ndarray | None


@dataclass(frozen=True)
class _Tag:
    tag: int


@dataclass(frozen=True)
class _Skip:
    tag: int


@dataclass(frozen=True)
class _AddPrev:
    tag: int


_Layer = _Conv | _Affine | _Relu | _Pool | _Fc | _Tag | _Skip | _AddPrev


@dataclass(frozen=True)
class _DlibNet:
    input_mean: np.ndarray  # (3,) float32, RGB
    input_size: tuple[int, int]  # (rows, cols)
    layers: tuple[_Layer, ...]  # input side first


# ----------------------------------------------------------------------------------------
# dlib serialization primitives


class _Reader:
    """Sequential reader of dlib's serialization primitives over an in-memory file."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def at_end(self) -> bool:
        return self._pos == len(self._data)

    def _take(self, n: int) -> bytes:
        if n < 0 or self._pos + n > len(self._data):
            raise ValueError(f"dlib file truncated at byte {self._pos} (wanted {n} more bytes)")
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def integer(self) -> int:
        control = self._take(1)[0]
        size = control & 0x0F
        if size > 8:
            raise ValueError(f"bad dlib integer control byte {control:#04x} at byte {self._pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def floating(self) -> float:
        mantissa = self.integer()
        exponent = self.integer()
        if exponent < 32000:
            return math.ldexp(mantissa, exponent)
        return {32000: math.inf, 32001: -math.inf}.get(exponent, math.nan)

    def boolean(self) -> bool:
        byte = self._take(1)
        if byte not in (b"0", b"1"):
            raise ValueError(f"bad dlib bool {byte!r} at byte {self._pos - 1}")
        return byte == b"1"

    def string(self) -> str:
        return self._take(self.integer()).decode("latin-1")

    def version(self, what: str, allowed: set[int]) -> int:
        version = self.integer()
        if version not in allowed:
            raise ValueError(f"unsupported {what} version {version} at byte {self._pos}")
        return version

    def tensor(self) -> np.ndarray:
        self.version("tensor", {2})
        shape = tuple(self.integer() for _ in range(4))
        count = math.prod(shape)
        return np.frombuffer(self._take(4 * count), dtype="<f4").reshape(shape).astype(np.float32)

    def alias_tensor(self) -> tuple[int, ...]:
        self.version("alias_tensor", {1})
        return tuple(self.integer() for _ in range(4))

    def layer_name(self, kind: str, allowed: set[str]) -> str:
        name = self.string()
        if name not in allowed:
            raise ValueError(f"expected a {kind} layer {sorted(allowed)}, found {name!r} at byte {self._pos}")
        return name


# ----------------------------------------------------------------------------------------
# Layer details


def _read_con(r: _Reader) -> _Conv:
    name = r.layer_name("con", {"con_4", "con_5"})
    params = r.tensor().ravel()
    num_filters = r.integer()
    rows, cols = r.integer(), r.integer()
    stride = (r.integer(), r.integer())
    padding = (r.integer(), r.integer())
    filters = r.alias_tensor()
    r.alias_tensor()  # biases shape: (1, num_filters, 1, 1)
    for _ in range(4):
        r.floating()  # learning-rate and weight-decay multipliers
    use_bias = r.boolean() if name == "con_5" else True
    n_weights = math.prod(filters)
    if filters[0] != num_filters or filters[2:] != (rows, cols):
        raise ValueError(f"con filters shape {filters} does not match {num_filters}x{rows}x{cols}")
    if params.size != n_weights + (num_filters if use_bias else 0):
        raise ValueError(f"con has {params.size} parameters, expected {n_weights} weights (+biases)")
    bias = params[n_weights:] if use_bias else None
    return _Conv(params[:n_weights].reshape(filters), bias, stride, padding)


def _read_affine(r: _Reader) -> _Affine:
    name = r.layer_name("affine", {"affine_", "affine_2"})
    params = r.tensor().ravel()
    gamma_shape = r.alias_tensor()
    r.alias_tensor()  # beta shape, same as gamma's
    mode = r.integer()  # 0: CONV_MODE (per channel), 1: FC_MODE (per element)
    if name == "affine_2" and r.boolean():
        raise ValueError("disabled affine layers (folded into a conv by dlib) are not supported")
    n = math.prod(gamma_shape)
    if params.size != 2 * n or mode not in (0, 1):
        raise ValueError(f"affine layer with {params.size} parameters, gamma {gamma_shape}, mode {mode}")
    shape = (gamma_shape[1],) if mode == 0 else gamma_shape[1:]
    return _Affine(params[:n].reshape(shape), params[n:].reshape(shape))


def _read_relu(r: _Reader) -> _Relu:
    r.layer_name("relu", {"relu_"})
    return _Relu()


def _read_pool(r: _Reader, op: str) -> _Pool:
    r.layer_name(f"{op}_pool", {f"{op}_pool_2"})
    window = (r.integer(), r.integer())
    stride = (r.integer(), r.integer())
    padding = (r.integer(), r.integer())
    if op == "avg" and padding != (0, 0):
        raise ValueError("padded average pooling is not supported")
    return _Pool(op, window, stride, padding)


def _read_fc(r: _Reader) -> _Fc:
    name = r.layer_name("fc", {"fc_2", "fc_3"})
    num_outputs, num_inputs = r.integer(), r.integer()
    params = r.tensor().ravel()
    r.alias_tensor()  # weights shape: (num_inputs, num_outputs, 1, 1)
    r.alias_tensor()  # biases shape
    bias_mode = r.integer()  # 0: FC_HAS_BIAS, 1: FC_NO_BIAS
    for _ in range(4):
        r.floating()  # learning-rate and weight-decay multipliers
    use_bias = r.boolean() if name == "fc_3" else True
    n_weights = num_inputs * num_outputs
    has_bias = bias_mode == 0 and use_bias
    if params.size != n_weights + (num_outputs if has_bias else 0):
        raise ValueError(f"fc has {params.size} parameters for {num_inputs} inputs, {num_outputs} outputs")
    bias = params[n_weights:] if has_bias else None
    return _Fc(params[:n_weights].reshape(num_inputs, num_outputs), bias)


_DETAIL_READERS: dict[str, Callable[[_Reader], _Layer]] = {
    "con": _read_con,
    "affine": _read_affine,
    "relu": _read_relu,
    "max_pool": partial(_read_pool, op="max"),
    "avg_pool": partial(_read_pool, op="avg"),
    "fc": _read_fc,
}


def _skip_add_layer_trailer(r: _Reader, version: int, on_input: bool) -> None:
    """Skip what ``add_layer`` writes after its layer details: training state only."""
    for _ in range(3):
        r.boolean()  # setup called, gradient stale, output getters disabled
    for _ in range(3 if on_input or version == 2 else 2):
        r.tensor()  # gradients and cached outputs
    if on_input and version == 3:
        r.integer()  # sample_expansion_factor


def _parse(data: bytes) -> _DlibNet:
    """Read dlib's serialized ``anet_type`` (see the module docstring)."""
    r = _Reader(data)
    r.version("add_loss_layer", {1})
    if r.layer_name("loss", {"loss_metric_", "loss_metric_2"}) == "loss_metric_2":
        for _ in range(2):
            r.floating()  # margin, distance threshold

    # One version integer per layer, top of the network first.
    versions: list[int] = []
    for depth, (kind, _) in enumerate(reversed(_FACE_RESNET)):
        if kind in ("tag", "skip"):
            r.version(f"add_{kind}_layer", {1})
        elif depth == len(_FACE_RESNET) - 1:
            versions.append(r.version("add_layer (on input)", {2, 3}))
        else:
            versions.append(r.version("add_layer", {1, 2}))
    versions.reverse()

    r.layer_name("input", {"input_rgb_image_sized"})
    mean = np.array([r.floating(), r.floating(), r.floating()], dtype=np.float32)
    input_size = (r.integer(), r.integer())

    layers: list[_Layer] = []
    add_layer_versions = iter(versions)
    for index, (kind, tag) in enumerate(_FACE_RESNET):
        if kind == "tag":
            layers.append(_Tag(tag))
            continue
        if kind == "skip":
            layers.append(_Skip(tag))
            continue
        if kind == "add_prev":
            r.layer_name("add_prev", {"add_prev_"})
            layers.append(_AddPrev(tag))
        else:
            layers.append(_DETAIL_READERS[kind](r))
        _skip_add_layer_trailer(r, next(add_layer_versions), on_input=index == 0)
    if not r.at_end():
        raise ValueError("unexpected data after the dlib network")
    return _DlibNet(mean, input_size, tuple(layers))


# ----------------------------------------------------------------------------------------
# ONNX graph


class _Graph:
    """Accumulates ONNX nodes and initializers with generated tensor names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, hint: str, value: np.ndarray) -> str:
        name = self._name(hint)
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: list[str], output: str | None = None, **attrs: object) -> str:
        out = output or self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out


def _out_size(size: int, window: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - window) // stride + 1


def _pad_to(g: _Graph, x: str, shape: tuple[int, int, int], target: tuple[int, int, int]) -> str:
    """Zero-pad a (N, C, H, W) tensor at the end of C, H and W up to ``target``."""
    if shape == target:
        return x
    pads = np.array([0, 0, 0, 0, 0, *(t - s for s, t in zip(shape, target))], dtype=np.int64)
    return g.op("Pad", [x, g.const("pads", pads)])


def _build_onnx(net: _DlibNet) -> onnx.ModelProto:
    """Write ``net`` as an ONNX graph: N x rows x cols x 3 uint8 RGB in, N x 128 float32 out."""
    rows, cols = net.input_size
    g = _Graph()
    x = g.op("Transpose", ["chips"], perm=[0, 3, 1, 2])
    x = g.op("Cast", [x], to=TensorProto.FLOAT)
    x = g.op("Sub", [x, g.const("input_mean", net.input_mean.reshape(1, 3, 1, 1))])
    x = g.op("Mul", [x, g.const("input_scale", np.array(1 / 256, dtype=np.float32))])
    shape = (3, rows, cols)
    tagged: dict[int, tuple[str, tuple[int, int, int]]] = {}
    for layer in net.layers:
        match layer:
            case _Conv(weight, bias, stride, padding):
                if weight.shape[1] != shape[0]:
                    raise ValueError(f"conv expects {weight.shape[1]} channels, gets {shape[0]}")
                inputs = [x, g.const("conv_w", weight)]
                if bias is not None:
                    inputs.append(g.const("conv_b", bias))
                x = g.op("Conv", inputs, kernel_shape=list(weight.shape[2:]), strides=list(stride),
                         pads=[*padding, *padding])
                shape = (
                    weight.shape[0],
                    _out_size(shape[1], weight.shape[2], stride[0], padding[0]),
                    _out_size(shape[2], weight.shape[3], stride[1], padding[1]),
                )
            case _Affine(gamma, beta):
                param_shape = (1, gamma.size, 1, 1) if gamma.ndim == 1 else (1, *gamma.shape)
                x = g.op("Mul", [x, g.const("affine_gamma", gamma.reshape(param_shape))])
                x = g.op("Add", [x, g.const("affine_beta", beta.reshape(param_shape))])
            case _Relu():
                x = g.op("Relu", [x])
            case _Pool(op, window, stride, padding):
                if window == (0, 0):
                    x = g.op("GlobalMaxPool" if op == "max" else "GlobalAveragePool", [x])
                    shape = (shape[0], 1, 1)
                else:
                    x = g.op("MaxPool" if op == "max" else "AveragePool", [x], kernel_shape=list(window),
                             strides=list(stride), pads=[*padding, *padding])
                    shape = (
                        shape[0],
                        _out_size(shape[1], window[0], stride[0], padding[0]),
                        _out_size(shape[2], window[1], stride[1], padding[1]),
                    )
            case _Tag(tag):
                tagged[tag] = (x, shape)
            case _Skip(tag):
                x, shape = tagged[tag]
            case _AddPrev(tag):
                other, other_shape = tagged[tag]
                target = (max(shape[0], other_shape[0]), max(shape[1], other_shape[1]),
                          max(shape[2], other_shape[2]))
                x = g.op("Add", [_pad_to(g, x, shape, target), _pad_to(g, other, other_shape, target)])
                shape = target
            case _Fc(weight, bias):
                if weight.shape[0] != math.prod(shape):
                    raise ValueError(f"fc expects {weight.shape[0]} inputs, gets {math.prod(shape)}")
                x = g.op("Flatten", [x], axis=1)
                x = g.op("MatMul", [x, g.const("fc_w", weight)])
                if bias is not None:
                    x = g.op("Add", [x, g.const("fc_b", bias)])
                shape = (weight.shape[1], 1, 1)
    g.op("Identity", [x], output="descriptors")
    graph = helper.make_graph(
        g.nodes,
        "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info("chips", TensorProto.UINT8, ["N", rows, cols, 3])],
        [helper.make_tensor_value_info("descriptors", TensorProto.FLOAT, ["N", math.prod(shape)])],
        initializer=g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)],
                              producer_name="facetrail")
    model.ir_version = _IR_VERSION
    onnx.checker.check_model(model)
    return model


def _metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {prop.key: prop.value for prop in model.metadata_props}


def load_dlib_resnet(
    dat_path: str | os.PathLike[str], cache_path: str | os.PathLike[str] | None = None
) -> onnx.ModelProto:
    """Build the ONNX model of dlib's face descriptor network from its ``.dat`` file.

    The model takes ``chips``: N x 150 x 150 x 3 uint8 RGB aligned face chips (as made
    by ``dlib.get_face_chip(img, shape, 150, 0.25)``) and returns ``descriptors``:
    N x 128 float32, the values ``compute_face_descriptor`` gives.

    With ``cache_path``, a model saved there from the same ``.dat`` file (same SHA-256)
    by the same builder version is loaded instead of rebuilt; otherwise the built model
    is written there.  Building takes well under a second, so the cache is optional.
    """
    data = Path(dat_path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    expected = {_META_SOURCE: digest, _META_BUILDER: _BUILDER_VERSION}
    if cache_path is not None and Path(cache_path).is_file():
        cached = onnx.load(os.fspath(cache_path))
        if all(_metadata(cached).get(key) == value for key, value in expected.items()):
            return cached
    model = _build_onnx(_parse(data))
    helper.set_model_props(model, expected)
    if cache_path is not None:
        cache = Path(cache_path)
        cache.parent.mkdir(parents=True, exist_ok=True)
        temporary = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
        try:
            onnx.save(model, os.fspath(temporary))
            os.replace(temporary, cache)
        finally:
            temporary.unlink(missing_ok=True)
    return model


def cpu_session(model: onnx.ModelProto, threads: int) -> ort.InferenceSession:
    """An onnxruntime CPU session for one model, `threads` intra-op threads, no spinning."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # With threads > 1, idle pool threads would otherwise busy-wait between calls,
    # taking ~30% more CPU from the rest of the pipeline for no measurable speed-up.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"])


class ResnetDescriptor:
    """Computes dlib's 128-d face descriptors of aligned chips with onnxruntime on the CPU."""

    dim = DESCRIPTOR_DIM

    def __init__(
        self,
        dat_path: str | os.PathLike[str] | onnx.ModelProto,
        threads: int = 1,
        cache_path: str | os.PathLike[str] | None = None,
    ) -> None:
        """Load ``dlib_face_recognition_resnet_model_v1.dat`` (or take the model
        :func:`load_dlib_resnet` made of it); ``threads`` is onnxruntime's intra-op thread count;
        ``cache_path`` is passed to :func:`load_dlib_resnet`."""
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        model = dat_path if isinstance(dat_path, onnx.ModelProto) else load_dlib_resnet(dat_path, cache_path)
        self._session = cpu_session(model, threads)

    def compute(self, chips: np.ndarray) -> np.ndarray:
        """Descriptors (N x 128 float32) of N x 150 x 150 x 3 uint8 RGB aligned face chips.

        The whole batch goes through the network at once (batches of 8 or more are ~20%
        faster per chip than single chips); calls from several threads are safe."""
        chips = np.asarray(chips)
        if chips.dtype != np.uint8 or chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(
                f"expected N x {CHIP_SIZE} x {CHIP_SIZE} x 3 uint8 chips, got {chips.dtype} {chips.shape}"
            )
        if len(chips) == 0:
            return np.empty((0, DESCRIPTOR_DIM), dtype=np.float32)
        (descriptors,) = self._session.run(["descriptors"], {"chips": np.ascontiguousarray(chips)})
        return descriptors
