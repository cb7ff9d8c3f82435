"""int8 inference (issue 23): the kernels of src/cpp/kernels/quantized.h against integer and
float64 references, and cnnfast.quantize end to end (predict, the model file, accuracy).

The integer part of every int8 product is exact, so the int32 sums must equal the int64 NumPy
product to the bit, on every GEMM path; the fast and naive kernels share the float epilogue, so
their float outputs agree to the bit too; against float64 the epilogue carries float32 rounding,
bounded below where it is checked."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import test_capi
import test_gemm_u8s8
from conftest import SHARED_DATASETS

import cnnfast as cf
from cnnfast import _core
from cnnfast import layers as L
from cnnfast.datasets import mnist as mnist_data

# The int8 GEMM paths this CPU runs, and the fixture running a test on each (test_gemm_u8s8).
PATHS = test_gemm_u8s8.PATHS
path = test_gemm_u8s8.path


# -- references -----------------------------------------------------------------------------

def quantize_ref(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """The spec of quantize_u8: round half to even of x * (1 / scale) (float32), clamped."""
    inv = np.float32(1) / np.float32(scale)
    t = np.clip(np.rint(x.astype(np.float32) * inv), -zero_point, 255 - zero_point)
    return (t + zero_point).astype(np.uint8)


def conv_sums_ref(xq, w, zero_point, stride, pad, out_hw, dilation=(1, 1)) -> np.ndarray:
    """sum (xq - zero_point) * w over each window, in int64; padding reads zero_point."""
    n, h, wd, c = xq.shape
    kh, kw, _, k = w.shape
    oh, ow = out_hw
    ph, pw = pad
    full_h = max(h + ph, (oh - 1) * stride[0] + (kh - 1) * dilation[0] + 1)
    full_w = max(wd + pw, (ow - 1) * stride[1] + (kw - 1) * dilation[1] + 1)
    x = np.zeros((n, full_h, full_w, c), np.int64)
    x[:, ph:ph + h, pw:pw + wd] = xq.astype(np.int64) - zero_point
    out = np.zeros((n, oh, ow, k), np.int64)
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dilation[0], j * dilation[1]
            patch = x[:, r0:r0 + (oh - 1) * stride[0] + 1:stride[0],
                      c0:c0 + (ow - 1) * stride[1] + 1:stride[1]]
            out += patch @ w[i, j].astype(np.int64)
    return out


def epilogue_ref(sums, w_scale, bias, x_scale, relu) -> np.ndarray:
    """The requantization in float64."""
    y = sums.astype(np.float64) * (np.float64(np.float32(x_scale)) * w_scale.astype(np.float64))
    if bias is not None:
        y = y + bias.astype(np.float64)
    return np.maximum(y, 0) if relu else y


# -- kernels --------------------------------------------------------------------------------

@pytest.mark.parametrize("scale,zero_point", [(0.02, 128), (0.0039, 0), (1.0, 255), (0.5, 3)])
def test_quantize_u8_matches_reference(scale, zero_point):
    rng = np.random.default_rng(zero_point)
    x = (rng.standard_normal(70_001) * 3).astype(np.float32)
    # Exact ties (k + 0.5) * scale round half to even, and the clamps at both ends.
    x[:8] = np.float32([0.5, 1.5, 2.5, -0.5, -1.5, 1e9, -1e9, 0.0]) * np.float32(scale)
    x[8:10] = [np.inf, -np.inf]
    q = np.empty(x.shape, np.uint8)
    _core.quantize_u8(q, x, scale, zero_point)
    np.testing.assert_array_equal(q, quantize_ref(x, scale, zero_point))
    naive = np.empty(x.shape, np.uint8)
    _core.quantize_u8(naive, x, scale, zero_point, naive=True)
    np.testing.assert_array_equal(naive, q)
    assert q[7] == zero_point  # 0.0 is exactly the zero point


def _conv_case(rng, n, h, w, c, k, kh, kw, stride, pad, dilation=(1, 1)):
    span_h, span_w = (kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1
    oh = (h + 2 * pad[0] - span_h) // stride[0] + 1
    ow = (w + 2 * pad[1] - span_w) // stride[1] + 1
    xq = rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)
    wq = rng.integers(-127, 128, (kh, kw, c, k), dtype=np.int8)
    return xq, wq, (oh, ow)


CONV_SHAPES = [
    # n, h, w, c, k, kh, kw, stride, pad, dilation
    (2, 7, 9, 3, 5, (3, 3), (1, 1), (1, 1), (1, 1)),
    (3, 28, 28, 1, 64, (3, 3), (1, 1), (0, 0), (1, 1)),      # Keras MNIST CNN, first layer
    (2, 13, 13, 64, 64, (3, 3), (1, 1), (0, 0), (1, 1)),     # its second layer
    (1, 28, 28, 1, 6, (5, 5), (1, 1), (2, 2), (1, 1)),       # LeNet-5 C1 on MNIST
    (2, 11, 10, 7, 33, (2, 3), (2, 3), (1, 2), (1, 1)),
    (2, 9, 9, 5, 17, (3, 3), (1, 1), (2, 2), (2, 2)),        # dilated
    (4, 6, 5, 19, 40, (1, 1), (1, 1), (0, 0), (1, 1)),       # 1x1: the input is the columns
    (1, 5, 5, 3, 3, (5, 5), (1, 1), (0, 0), (1, 1)),         # one output pixel
    (64, 8, 8, 16, 32, (3, 3), (1, 1), (1, 1), (1, 1)),      # several row chunks and threads
    # At most 16 filters: the narrow-layer sums on AVX512-VNNI (conv2d_int8_narrow.h)
    (2, 14, 14, 6, 16, (5, 5), (1, 1), (0, 0), (1, 1)),      # LeNet-5 C3
    (3, 12, 37, 20, 12, (3, 3), (2, 1), (1, 1), (2, 1)),     # 16 + 16 + 5 pixels, dilated rows
    (2, 9, 9, 5, 8, (3, 3), (1, 1), (2, 2), (1, 2)),         # dilated across rows: the GEMM
    # Pixels at most 4 bytes apart and at most 8 filters: the pixels-in-lanes form, for each
    # pixel step (C * stride_w = 1 .. 4; C1 above is 1), short last segments (8, 5, 2 pixels).
    (2, 9, 40, 2, 8, (3, 3), (1, 1), (1, 1), (1, 1)),        # step 2, 16 + 16 + 8 pixels
    (2, 8, 23, 1, 1, (2, 5), (1, 3), (0, 2), (1, 1)),        # step 3 (stride 3), 8 pixels
    (1, 6, 70, 4, 7, (3, 2), (1, 1), (1, 0), (1, 1)),        # step 4, 4 x 16 + 5 pixels
    (1, 4, 18, 1, 1, (1, 3), (1, 1), (0, 1), (1, 1)),        # 16 + 2 pixels, one filter
]


@pytest.mark.parametrize("n,h,w,c,k,kernel,stride,pad,dilation", CONV_SHAPES)
def test_conv2d_int8_sums_are_exact(path, n, h, w, c, k, kernel, stride, pad, dilation):
    rng = np.random.default_rng(n * 131 + h * 17 + c * 3 + k)
    xq, wq, out_hw = _conv_case(rng, n, h, w, c, k, *kernel, stride, pad, dilation)
    zero_point = int(rng.integers(0, 256))
    want = conv_sums_ref(xq, wq, zero_point, stride, pad, out_hw, dilation)
    args = (np.ones(k, np.float32), None, 1.0, zero_point, *stride, *pad, *dilation)
    for naive in (False, True):
        got = np.full((n, *out_hw, k), -7, np.int32)
        _core.conv2d_forward_int8(got, xq, wq, *args, sums=True, naive=naive)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("n,h,w,c,k,kernel,stride,pad,dilation", CONV_SHAPES[:6])
@pytest.mark.parametrize("relu", [False, True])
def test_conv2d_int8_epilogue(path, n, h, w, c, k, kernel, stride, pad, dilation, relu):
    rng = np.random.default_rng(n + h + c * 7 + k * 11 + relu)
    xq, wq, out_hw = _conv_case(rng, n, h, w, c, k, *kernel, stride, pad, dilation)
    zero_point, x_scale = int(rng.integers(0, 256)), 0.0123
    w_scale = rng.uniform(1e-3, 2e-2, k).astype(np.float32)
    bias = rng.standard_normal(k).astype(np.float32)
    args = (w_scale, bias, x_scale, zero_point, *stride, *pad, *dilation)
    fast = np.empty((n, *out_hw, k), np.float32)
    naive = np.empty_like(fast)
    _core.conv2d_forward_int8(fast, xq, wq, *args, relu=relu)
    _core.conv2d_forward_int8(naive, xq, wq, *args, relu=relu, naive=True)
    # Same exact sums, same float epilogue code: equal to the bit.
    np.testing.assert_array_equal(fast, naive)
    want = epilogue_ref(conv_sums_ref(xq, wq, zero_point, stride, pad, out_hw, dilation),
                        w_scale, bias, x_scale, relu)
    # float32 epilogue: float(sum) rounds once (sums < 2^24 here are exact), the multiplier
    # x_scale * w_scale once, the product and the bias add once each: <= 3 float32 roundings of
    # values bounded by |sum * mult| + |bias|, so 4 ulp of that bound.
    bound = np.abs(want) + np.abs(bias)
    assert np.all(np.abs(fast - want) <= 4 * np.finfo(np.float32).eps * bound)


@pytest.mark.parametrize("n,i,o", [(1, 1, 1), (3, 5, 7), (128, 576, 10), (37, 9216, 128),
                                   (300, 84, 120), (2, 65, 33)])
def test_dense_int8_sums_and_epilogue(path, n, i, o):
    rng = np.random.default_rng(n * 7 + i + o)
    xq = rng.integers(0, 256, (n, i), dtype=np.uint8)
    wq = rng.integers(-127, 128, (i, o), dtype=np.int8)
    zero_point = int(rng.integers(0, 256))
    want = (xq.astype(np.int64) - zero_point) @ wq.astype(np.int64)
    for naive in (False, True):
        got = np.zeros((n, o), np.int32)
        _core.dense_forward_int8(got, xq, wq, np.ones(o, np.float32), None, 1.0, zero_point,
                                 sums=True, naive=naive)
        np.testing.assert_array_equal(got, want)
    w_scale = rng.uniform(1e-3, 2e-2, o).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32)
    fast, naive_y = np.empty((n, o), np.float32), np.empty((n, o), np.float32)
    _core.dense_forward_int8(fast, xq, wq, w_scale, bias, 0.02, zero_point, relu=True)
    _core.dense_forward_int8(naive_y, xq, wq, w_scale, bias, 0.02, zero_point, relu=True,
                             naive=True)
    np.testing.assert_array_equal(fast, naive_y)
    ref = epilogue_ref(want, w_scale, bias, 0.02, True)
    # As for the convolution, plus the int32 -> float32 rounding of sums above 2^24 (IN = 9216
    # reaches 9216 * 255 * 127 ~ 3e8): one more ulp of the bound.
    bound = np.abs(ref) + np.abs(bias)
    assert np.all(np.abs(fast - ref) <= 5 * np.finfo(np.float32).eps * bound)


@pytest.mark.parametrize("c,k,kernel,pad", [(64, 64, 3, 1),   # the GEMM on both paths
                                         (6, 16, 5, 0),    # the narrow sums on AVX512-VNNI
                                         (1, 6, 5, 2)])    # their pixels-in-lanes form
def test_every_int8_path_agrees_to_the_bit(c, k, kernel, pad):
    if len(PATHS) < 2:
        pytest.skip(f"this CPU or build has only the {PATHS} int8 GEMM path")
    rng = np.random.default_rng(5)
    xq, wq, out_hw = _conv_case(rng, 8, 13, 13, c, k, kernel, kernel, (1, 1), (pad, pad))
    args = (rng.uniform(1e-3, 1e-2, k).astype(np.float32), rng.standard_normal(k)
            .astype(np.float32), 0.01, 17, 1, 1, pad, pad, 1, 1)
    outs = {}
    for p in PATHS:
        assert _core.set_gemm_u8s8_path(p)
        outs[p] = np.empty((8, *out_hw, k), np.float32)
        _core.conv2d_forward_int8(outs[p], xq, wq, *args, relu=True)
    _core.set_gemm_u8s8_path("auto")
    for p in PATHS[1:]:
        np.testing.assert_array_equal(outs["portable"], outs[p])


# 40 filters: whole vectors and a masked tail per row; 6 (dense: 5): rows narrower than a
# vector, written back to back (the narrow sums for the convolution; on one input channel their
# pixels-in-lanes form, whose sum tiles leave the lanes past K undefined).
@pytest.mark.parametrize("c,k,o", [(9, 40, 21), (9, 6, 5), (1, 6, 5)])
def test_uint8_outputs_equal_quantized_float_outputs(c, k, o):
    """The kernels that write the next int8 layer's uint8 input directly, and max pooling on
    uint8: the same bits as the float output quantized afterwards (same float operations;
    quantization is non-decreasing, so it commutes with the maximum)."""
    rng = np.random.default_rng(21)
    xq, wq, out_hw = _conv_case(rng, 3, 14, 13, c, k, 3, 3, (1, 1), (1, 1))
    args = (rng.uniform(1e-3, 1e-2, k).astype(np.float32),
            rng.standard_normal(k).astype(np.float32), 0.02, 11, 1, 1, 1, 1)
    paths = [p for p in ("baseline", "avx512") if _core.set_int8_elementwise_path(p)]
    try:
        for p in paths:
            assert _core.set_int8_elementwise_path(p)
            y = np.empty((3, *out_hw, k), np.float32)
            _core.conv2d_forward_int8(y, xq, wq, *args, relu=True)
            yq = np.empty(y.shape, np.uint8)
            _core.conv2d_forward_int8(yq, xq, wq, *args, relu=True, y_scale=0.05, y_zero_point=0)
            np.testing.assert_array_equal(yq, quantize_ref(y, 0.05, 0))
            pooled = np.empty((3, 7, 7, k), np.uint8)
            _core.max_pool2d_u8_forward(pooled, yq, 2, 2, 2, 2, 0, 1)
            y_pad = np.pad(y, ((0, 0), (0, 0), (1, 0), (0, 0)), constant_values=-np.inf)
            want = y_pad[:, :14, :14].reshape(3, 7, 2, 7, 2, k).max(axis=(2, 4))
            np.testing.assert_array_equal(pooled, quantize_ref(want, 0.05, 0))
            xd = rng.integers(0, 256, (33, 70), dtype=np.uint8)
            wd = rng.integers(-127, 128, (70, o), dtype=np.int8)
            dargs = (rng.uniform(1e-3, 1e-2, o).astype(np.float32), None, 0.03, 5)
            yd = np.empty((33, o), np.float32)
            _core.dense_forward_int8(yd, xd, wd, *dargs)
            yqd = np.empty((33, o), np.uint8)
            _core.dense_forward_int8(yqd, xd, wd, *dargs, y_scale=0.01, y_zero_point=128)
            np.testing.assert_array_equal(yqd, quantize_ref(yd, 0.01, 128))
    finally:
        _core.set_int8_elementwise_path("auto")


ELEMENTWISE = [p for p in ("baseline", "avx512") if _core.set_int8_elementwise_path(p)]
_core.set_int8_elementwise_path("auto")


def test_elementwise_paths_agree_to_the_bit():
    """quantize_u8 and the epilogue on every element-wise path (AVX-512 where the CPU has it,
    the portable loops everywhere): the same float operations in the same order."""
    rng = np.random.default_rng(9)
    x = (rng.standard_normal(100_003) * 4).astype(np.float32)
    x[:4] = [np.nan, np.inf, -np.inf, 0.0]
    xq, wq, out_hw = _conv_case(rng, 4, 12, 12, 16, 37, 3, 3, (1, 1), (1, 1))
    args = (rng.uniform(1e-3, 1e-2, 37).astype(np.float32),
            rng.standard_normal(37).astype(np.float32), 0.01, 31, 1, 1, 1, 1)
    got = {}
    try:
        for p in ELEMENTWISE:
            assert _core.set_int8_elementwise_path(p)
            q = np.empty(x.shape, np.uint8)
            _core.quantize_u8(q, x, 0.03, 77)
            y = np.empty((4, *out_hw, 37), np.float32)
            _core.conv2d_forward_int8(y, xq, wq, *args, relu=True)
            got[p] = (q, y)
    finally:
        _core.set_int8_elementwise_path("auto")
    np.testing.assert_array_equal(got[ELEMENTWISE[0]][0][1:], quantize_ref(x[1:], 0.03, 77))
    assert got[ELEMENTWISE[0]][0][0] == 0  # NaN -> the lowest level, on every path
    for p in ELEMENTWISE[1:]:
        np.testing.assert_array_equal(got[p][0], got[ELEMENTWISE[0]][0])
        np.testing.assert_array_equal(got[p][1], got[ELEMENTWISE[0]][1])


def test_kernel_arguments_are_checked():
    xq = np.zeros((1, 5, 5, 3), np.uint8)
    wq = np.zeros((3, 3, 3, 4), np.int8)
    ones = np.ones(4, np.float32)
    with pytest.raises(ValueError, match=r"w must be \(KH, KW, C, K\) with C = 3"):
        _core.conv2d_forward_int8(np.zeros((1, 3, 3, 4), np.float32), xq,
                                  np.zeros((3, 3, 2, 4), np.int8), ones, None, 1.0, 0)
    with pytest.raises(ValueError, match="xq: expected dtype uint8"):
        _core.conv2d_forward_int8(np.zeros((1, 3, 3, 4), np.float32), xq.astype(np.int8), wq,
                                  ones, None, 1.0, 0)
    with pytest.raises(ValueError, match=r"w_scale: expected shape \(4,\), got \(3,\)"):
        _core.conv2d_forward_int8(np.zeros((1, 3, 3, 4), np.float32), xq, wq,
                                  np.ones(3, np.float32), None, 1.0, 0)
    with pytest.raises(ValueError, match=r"x_zero_point must be in \[0, 255\], got 256"):
        _core.conv2d_forward_int8(np.zeros((1, 3, 3, 4), np.float32), xq, wq, ones, None, 1.0,
                                  256)
    with pytest.raises(ValueError, match=r"got xq \(2, 3\), w \(4, 5\), out \(2, 5\)"):
        _core.dense_forward_int8(np.zeros((2, 5), np.float32), np.zeros((2, 3), np.uint8),
                                 np.zeros((4, 5), np.int8), np.ones(5, np.float32), None, 1.0, 0)
    with pytest.raises(ValueError, match=r"q \(3,\) and x \(4,\) differ in size"):
        _core.quantize_u8(np.zeros(3, np.uint8), np.zeros(4, np.float32), 1.0, 0)


# -- cnnfast.quantize -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def sample():
    """The MNIST sample shipped in the package, scaled to [0, 1]."""
    (x, y), (xt, yt) = mnist_data.load_data(sample=True)
    scale = lambda a: (a.astype(np.float32) / 255.0)[..., None]
    return scale(x), y.astype(np.int64), scale(xt), yt.astype(np.int64)


def _train(model, x, y, epochs=1):
    cf.set_seed(0)
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def trained(sample):
    x, y, _, _ = sample
    return {"keras_mnist_cnn": _train(cf.models.keras_mnist_cnn(), x[:4000], y[:4000]),
            "lenet5": _train(cf.models.lenet5((28, 28, 1)), x[:4000], y[:4000])}


def _int8_layer_reference(q, layer, h: np.ndarray, act: str) -> np.ndarray:
    """One int8 layer on the naive kernels: h quantized by its input scale and zero point, the
    int32 sums and epilogue, then `act`."""
    xq = np.empty(h.shape, np.uint8)
    _core.quantize_u8(xq, np.ascontiguousarray(h, np.float32), q.input_scale,
                      q.input_zero_point, naive=True)
    if type(layer) is L.Dense:
        out = np.empty((len(h), q.kernel.shape[1]), np.float32)
        _core.dense_forward_int8(out, xq, q.kernel, q.kernel_scale, q.bias, q.input_scale,
                                 q.input_zero_point, naive=True)
    else:
        in_shape = h.shape[1:]
        out_shape = layer.output_shape(in_shape)
        pads = [(o - 1) * s + (k - 1) * d + 1 - n for o, s, k, d, n in zip(
            out_shape[:2], layer.strides, layer.kernel_size, layer.dilation_rate, in_shape[:2])]
        out = np.empty((len(h), *out_shape), np.float32)
        _core.conv2d_forward_int8(out, xq, q.kernel, q.kernel_scale, q.bias, q.input_scale,
                                  q.input_zero_point, *layer.strides,
                                  *[max(p, 0) // 2 for p in pads], *layer.dilation_rate,
                                  naive=True)
    if act == "softmax":
        out = np.exp(out - out.max(-1, keepdims=True))
        return out / out.sum(-1, keepdims=True)
    if act == "relu":
        return np.maximum(out, 0)
    if act == "tanh":
        return np.tanh(out)
    if act != "linear":
        raise AssertionError(act)
    return out


def _int8_reference(qmodel, model, x):
    """The quantized model walked in Python: the naive int8 kernels for the quantized layers,
    the float layers' own forward for the rest (the spec the executor must follow)."""
    h = x
    for layer in model.layers:
        q = qmodel.int8_layers.get(layer.name)
        if q is None:
            if layer.name not in {p.folded_batchnorm for p in qmodel.int8_layers.values()}:
                h = layer.forward(h, False)
            continue
        folded = q.folded_batchnorm
        act = layer.act.kind
        if folded is not None:  # the activation after the folded batch norm, if one follows
            nxt = model.layers[[m.name for m in model.layers].index(folded) + 1:]
            act = nxt[0].act.kind if nxt and type(nxt[0]) is L.Activation else \
                "relu" if nxt and type(nxt[0]) is L.ReLU else "linear"
        # (The activation layer after a folded batch norm then runs again: ReLU is idempotent.)
        h = _int8_layer_reference(q, layer, h, act)
    return h


def _assert_follows_int8_spec(got: np.ndarray, ref: np.ndarray) -> None:
    """The executor against the Python walk of the same int8 layers: identical integer sums and
    epilogues, but the float steps between them (pooling, tanh, softmax) are other kernels
    (SIMD tanh and exp against NumPy's), a few float32 ulp apart on probabilities <= 1 (2e-5).
    A value that lands within an ulp of a rounding boundary before the next quantization can
    take the neighbouring uint8 level: one level of one activation moves the probabilities by
    about x_scale * |w| (< 5e-3), in a handful of samples (1 in 1000 seen on LeNet-5's tanh)."""
    diff = np.abs(got - ref)
    exact = np.all(diff <= 2e-5, axis=1)
    assert exact.mean() >= 0.99, exact.mean()
    assert diff.max() < 5e-3, diff.max()


@pytest.mark.parametrize("name", ["keras_mnist_cnn", "lenet5"])
def test_quantized_predictions_follow_the_int8_spec_and_fp32(trained, sample, name):
    model = trained[name]
    _, _, xt, _ = sample
    q = cf.quantize(model, sample[0][:500])
    assert set(q.int8_layers) == {layer.name for layer in model.layers
                                  if type(layer) in (L.Conv2D, L.Dense)}
    got = q.predict(xt[:1000], batch_size=128)
    _assert_follows_int8_spec(got, _int8_reference(q, model, xt[:1000]))
    # The executor joins int8 layers through max pooling (uint8 between them; a 2x2 pooling
    # inside the convolution before it, on the largest sums of each window): the same bits as
    # with float32 activations quantized by the next layer.
    plain = cf._core.Network.from_config(
        json.dumps(q.config), q.float_weights,
        {n: layer.network_entry() for n, layer in q.int8_layers.items()}, int8_chains=False)
    unchained = np.empty_like(got)
    for start in range(0, 1000, 128):
        plain.forward(unchained[start:start + 128], xt[start:min(start + 128, 1000)])
    np.testing.assert_array_equal(got, unchained)
    lines = q.describe()
    if name == "keras_mnist_cnn":
        assert sum("2x2 max pooling fused in" in line for line in lines) == 2, lines
        assert not any(line.startswith("max_pool2d") for line in lines), lines
    else:  # LeNet-5: tanh and the 2x2 average pooling after C1 and C3 inside the convolution
        assert sum("2x2 average pooling fused in" in line for line in lines) == 2, lines
        assert not any(line.startswith("avg_pool2d") for line in lines), lines
        assert sum("writes uint8 for the next int8 step" in line for line in lines) == 4, lines
    want = model.predict(xt[:1000], batch_size=128)
    agree = np.mean(got.argmax(1) == want.argmax(1))
    # int8 noise (activations on 255 levels, weights on 255) moves only near-ties between the
    # two most probable classes: 99.7% agreement here; 98% fails on a broken scale or zero
    # point (which scramble far more) without catching on honest rounding.
    assert agree >= 0.98, agree
    # Probabilities move by at most a few percent on the same int8 noise.
    assert np.abs(got - want).max() < 0.15


def test_only_2x2_stride_2_poolings_run_inside_the_int8_convolution(sample):
    # 26x26 -> 2x2 pooling (fused), 11x11 -> 3x3 stride-2 pooling (a uint8 step), 5x5 "same"
    # 2x2 pooling after a "same" convolution: padded windows, a uint8 step too.
    cf.set_seed(5)
    model = cf.Sequential([
        L.Input((28, 28, 1)), L.Conv2D(8, 3, activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(12, 3, activation="relu"), L.MaxPooling2D(3, strides=2),
        L.Conv2D(16, 3, padding="same", activation="relu"), L.MaxPooling2D(2, padding="same"),
        L.Conv2D(6, 3), L.Flatten(), L.Dense(10)])
    model.build()
    xt = sample[2][:200]
    q = cf.quantize(model, sample[0][:200])
    lines = q.describe()
    assert [("2x2 max pooling fused in" in line) for line in lines if "conv2d_int8" in line] == \
        [True, False, False, False], lines
    assert sum(line.startswith("max_pool2d_u8") for line in lines) == 2, lines
    plain = cf._core.Network.from_config(
        json.dumps(q.config), q.float_weights,
        {n: layer.network_entry() for n, layer in q.int8_layers.items()}, int8_chains=False)
    want = np.empty((len(xt), 10), np.float32)
    plain.forward(want, xt)
    np.testing.assert_array_equal(q.predict(xt), want)


def _chained_and_unchained(q, x):
    plain = cf._core.Network.from_config(
        json.dumps(q.config), q.float_weights,
        {n: layer.network_entry() for n, layer in q.int8_layers.items()}, int8_chains=False)
    want = np.empty((len(x), *q.predict(x[:1]).shape[1:]), np.float32)
    plain.forward(want, x)
    return q.predict(x), want


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "relu", "linear", "elu", "swish"])
def test_average_pooling_and_activations_run_inside_int8_chains(path, sample, act):
    """Any activation but softmax joins two int8 layers (ReLU in the requantization, the others
    on float tiles in L1, or in registers for tanh and sigmoid on the narrow layers), and a 2x2
    stride-2 average pooling right after a convolution runs inside it: the same bits as the
    float steps between the layers, on every int8 GEMM path. 6 filters on one channel and 16 on
    6 (the narrow-layer forms, on VNNI and AMX), 24 filters (the GEMM rows window by window);
    odd maps (13x13: the last row and column dropped); a padded average pooling and a 3x3 one
    stay float32 steps (an average of uint8 values is not that of the floats)."""
    cf.set_seed(11)
    model = cf.Sequential([
        L.Input((28, 28, 1)), L.Conv2D(6, 5, padding="same", activation=act),
        L.AveragePooling2D(2),
        L.Conv2D(16, 3, activation=act), L.AveragePooling2D(2),   # 12x12 -> 6x6
        L.Conv2D(24, 3, padding="same", activation=act), L.AveragePooling2D(2),  # 6x6 -> 3x3
        L.Conv2D(8, 2, activation=act),                            # 3x3 -> 2x2 (no pooling)
        L.Flatten(), L.Dense(10, activation="softmax")])
    model.build()
    xt = sample[2][:150]
    q = cf.quantize(model, sample[0][:200])
    lines = q.describe()
    assert sum("2x2 average pooling fused in" in line for line in lines) == 3, lines
    assert not any(line.startswith("avg_pool2d") for line in lines), lines
    got, want = _chained_and_unchained(q, xt)
    np.testing.assert_array_equal(got, want)
    # 13x13 maps, a padded pooling and a 3x3 one.
    odd = cf.Sequential([
        L.Input((27, 27, 1)), L.Conv2D(6, 3, strides=2, activation=act), L.AveragePooling2D(2),
        L.Conv2D(12, 2, activation=act),                           # 6x6 -> 5x5
        L.AveragePooling2D(2, padding="same"),                     # 5x5 -> 3x3, padded
        L.Conv2D(16, 1, activation=act), L.AveragePooling2D(3, strides=1),
        L.Flatten(), L.Dense(5)])
    odd.build()
    xo = np.ascontiguousarray(sample[2][:60, :27, :27])
    qo = cf.quantize(odd, np.ascontiguousarray(sample[0][:100, :27, :27]))
    lines = qo.describe()
    assert sum("2x2 average pooling fused in" in line for line in lines) == 1, lines
    assert sum(line.startswith("avg_pool2d") for line in lines) == 2, lines
    got, want = _chained_and_unchained(qo, xo)
    np.testing.assert_array_equal(got, want)


def test_skipped_layers_stay_float32(trained, sample, tmp_path):
    model = trained["lenet5"]
    xt = sample[2][:300]
    q = cf.quantize(model, sample[0][:300], skip=["c1"])
    assert "c1" not in q.int8_layers and "c3" in q.int8_layers
    assert q.describe()[0].startswith("conv2d (28, 28, 1)"), q.describe()
    got = q.predict(xt)
    # As the fully quantized model: int8 noise moves only near-ties.
    assert np.mean(got.argmax(1) == model.predict(xt).argmax(1)) >= 0.97
    q.save(tmp_path / "q.cnnfast")  # the float kernel of c1 is saved as F32
    np.testing.assert_array_equal(cf.load_model(tmp_path / "q.cnnfast").predict(xt), got)
    # A grouped convolution, which int8 does not take, can stay float32.
    grouped = cf.Sequential([L.Input((8, 8, 4)), L.Conv2D(4, 3, groups=2, name="g"),
                             L.Flatten(), L.Dense(2, name="d")])
    grouped.build()
    qg = cf.quantize(grouped, np.random.default_rng(0).random((8, 8, 8, 4), np.float32),
                     skip=["g"])
    assert list(qg.int8_layers) == ["d"]


def test_batchnorm_is_folded_into_the_int8_convolution(sample):
    x, y, xt, _ = sample
    cf.set_seed(1)
    model = cf.Sequential([
        L.Input((28, 28, 1)), L.Conv2D(8, 3, padding="same", use_bias=False, name="conv"),
        L.BatchNormalization(name="bn"), L.ReLU(name="relu"), L.MaxPooling2D(2),
        L.Conv2D(16, 3, strides=2, padding="same", name="conv2"), L.BatchNormalization(name="bn2"),
        L.Flatten(), L.Dense(10, activation="softmax", name="out")])
    _train(model, x[:2000], y[:2000])
    q = cf.quantize(model, x[:300])
    assert q.int8_layers["conv"].folded_batchnorm == "bn"
    assert q.int8_layers["conv2"].folded_batchnorm == "bn2"
    assert q.int8_layers["out"].folded_batchnorm is None
    plan = q.describe()
    assert not any("batchnorm" in line for line in plan), plan
    assert "relu in the kernel epilogue" in plan[0], plan
    got = q.predict(xt[:500])
    # As above: the executor follows the Python walk, and the top-1 stays that of fp32.
    _assert_follows_int8_spec(got, _int8_reference(q, model, xt[:500]))
    assert np.mean(got.argmax(1) == model.predict(xt[:500]).argmax(1)) >= 0.97


class _Custom(L.Layer):
    def forward(self, x, training=False):
        return x

    def output_shape(self, input_shape):
        return input_shape


def test_bad_input_is_refused_naming_the_layer_and_shapes(trained, sample):
    model = trained["keras_mnist_cnn"]
    x = sample[0]
    with pytest.raises(ValueError, match=r"calibration_x must be numeric of shape \(N, 28, 28, 1\)"
                                         r".*got \(10, 32, 32, 1\).*layer 'conv2d'"):
        cf.quantize(model, np.zeros((10, 32, 32, 1), np.float32))
    with pytest.raises(ValueError, match=r"got \(0, 28, 28, 1\)"):
        cf.quantize(model, x[:0])
    with pytest.raises(ValueError, match="non-finite"):
        cf.quantize(model, np.full((2, 28, 28, 1), np.nan, np.float32))
    unbuilt = cf.Sequential([L.Conv2D(4, 3), L.Flatten(), L.Dense(2)])
    with pytest.raises(ValueError, match="is not built"):
        cf.quantize(unbuilt, x[:4])
    grouped = cf.Sequential([L.Input((8, 8, 4)), L.Conv2D(4, 3, groups=2, name="g"),
                             L.Flatten(), L.Dense(2)])
    with pytest.raises(ValueError, match=r"layer 'g' is a grouped Conv2D \(groups=2\)"):
        cf.quantize(grouped, np.zeros((2, 8, 8, 4), np.float32))
    custom = cf.Sequential([L.Input((4,)), _Custom(name="mine"), L.Dense(2)])
    custom.build()
    with pytest.raises(ValueError, match=r"layer 'mine' \(_Custom\) is not a built-in layer"):
        cf.quantize(custom, np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="skip names 'max_pooling2d', which is not a Conv2D"):
        cf.quantize(model, x[:4], skip=["max_pooling2d"])
    with pytest.raises(ValueError, match="skip names 'nope'"):
        cf.quantize(model, x[:4], skip="nope")
    q = cf.quantize(model, x[:50])
    with pytest.raises(ValueError, match=r"expected x of shape \(None, 28, 28, 1\), got \(3, 28, 28\)"):
        q.predict(np.zeros((3, 28, 28), np.float32))


def test_saved_quantized_model_loads_with_bit_identical_predictions(trained, sample, tmp_path):
    from cnnfast import saving

    _, _, xt, _ = sample
    q = cf.quantize(trained["lenet5"], sample[0][:500])
    path = tmp_path / "lenet5-int8.cnnfast"
    q.save(path, metadata={"class_names": '["zero"]'})
    header = saving.read_header(path)
    assert header.metadata["format_version"] == "2"
    assert header.metadata["class_names"] == '["zero"]'  # extra entries travel, as save_model's
    with pytest.raises(ValueError, match="without the keys"):
        q.save(tmp_path / "bad.cnnfast", metadata={"quantization": "{}"})
    assert not (tmp_path / "bad.cnnfast").exists()
    assert header.tensors["c1/kernel"].dtype == "I8"
    assert header.tensors["c1/input_zero_point"].dtype == "I32"
    # Every 4-byte tensor is 4-byte aligned in the file (the int8 kernels come last).
    assert all(e.begin % 4 == 0 for e in header.tensors.values() if e.dtype != "I8")
    loaded = cf.load_model(path)
    assert isinstance(loaded, cf.QuantizedModel)
    assert loaded.calibration == {"method": "minmax", "samples": 500}
    for name, layer in q.int8_layers.items():
        np.testing.assert_array_equal(loaded.int8_layers[name].kernel, layer.kernel)
        assert loaded.int8_layers[name].input_scale == layer.input_scale
    # Same tensors, same executor: equal to the bit.
    np.testing.assert_array_equal(loaded.predict(xt[:300]), q.predict(xt[:300]))
    # The int8 file holds a quarter of the float kernels' bytes.
    float_path = tmp_path / "lenet5.cnnfast"
    trained["lenet5"].save(float_path, include_optimizer=False)
    assert path.stat().st_size < 0.4 * float_path.stat().st_size
    model = cf.models.lenet5((28, 28, 1))
    model.build()
    with pytest.raises(ValueError, match="this is a quantized model"):
        model.load_weights(path)


def test_corrupt_quantized_files_are_refused(trained, sample, tmp_path):
    q = cf.quantize(trained["keras_mnist_cnn"], sample[0][:100])
    path = tmp_path / "q.cnnfast"
    q.save(path)
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = raw[8:8 + n].decode()

    def write(text: str) -> str:
        bad = tmp_path / "bad.cnnfast"
        body = text.encode()
        body += b" " * (len(header) - len(body))
        bad.write_bytes(raw[:8] + body + raw[8 + n:])
        return str(bad)

    with pytest.raises(ValueError, match="format_version '1' does not allow a quantization"):
        cf.load_model(write(header.replace('"format_version":"2"', '"format_version":"1"')))
    with pytest.raises(ValueError, match=r"tensor 'dense/kernel' of shape \[576, 10\] needs "
                                         "23040 bytes"):
        cf.load_model(write(header.replace('"dense/kernel":{"dtype":"I8"',
                                           '"dense/kernel":{"dtype":"F32"')))
    with pytest.raises(ValueError, match="'dense/input_zero_point' has dtype F32, expected I32"):
        cf.load_model(write(header.replace('"dense/input_zero_point":{"dtype":"I32"',
                                           '"dense/input_zero_point":{"dtype":"F32"')))
    with pytest.raises(ValueError, match="names layer 'zzzzz', which is not a Conv2D or Dense"):
        cf.load_model(write(header.replace('\\"dense\\":{\\"folded', '\\"zzzzz\\":{\\"folded')))


def test_int8_accuracy_on_fashion_mnist_within_0_3_points():
    """The same goal on Fashion-MNIST (issue 23 names both), where a local copy exists
    (shared/datasets, or the loader's places such as /usr/share/datasets/fashion-mnist; never
    downloaded)."""
    from cnnfast.datasets import fashion_mnist
    from cnnfast.datasets.store import DatasetNotFoundError

    shared = SHARED_DATASETS / "fashion-mnist"
    try:
        (x, y), (xt, yt) = fashion_mnist.load_data(shared if shared.exists() else None,
                                                   download=False)
    except DatasetNotFoundError as err:
        pytest.skip(f"Fashion-MNIST not on this machine: {str(err).splitlines()[0]}")
    scale = lambda a: (a.astype(np.float32) / 255.0)[..., None]
    x, xt = scale(x[:12000]), scale(xt)
    y, yt = y[:12000].astype(np.int64), yt.astype(np.int64)
    model = _train(cf.models.keras_mnist_cnn(), x[:-500], y[:-500], epochs=2)
    fp32 = np.mean(model.predict(xt, batch_size=256).argmax(1) == yt)
    int8 = np.mean(cf.quantize(model, x[-500:]).predict(xt, batch_size=256).argmax(1) == yt)
    print(f"fashion_mnist keras_mnist_cnn: fp32 {fp32:.2%}, int8 {int8:.2%}")
    # Two epochs on 11.5k images reach 82.1% here (int8: 82.1% too); below 78% training is
    # broken and the comparison would say nothing.
    assert fp32 >= 0.78, fp32
    assert int8 >= fp32 - 0.003, (fp32, int8)


# -- the C API ------------------------------------------------------------------------------

def residual_graph() -> cf.Model:
    """A functional model with ResNet's pieces: Conv2D -> BatchNormalization -> ReLU stems, a
    residual Add whose branch ends in a batch normalization, pooling and a dense head."""
    x = L.Input((28, 28, 1))
    h = L.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(x)
    h = L.ReLU(name="stem_relu")(L.BatchNormalization(name="stem_bn")(h))
    r = L.Conv2D(8, 3, padding="same", name="branch")(h)
    r = L.BatchNormalization(name="branch_bn")(r)
    h = L.ReLU(name="join_relu")(L.Add(name="join")([h, r]))
    h = L.MaxPooling2D(2)(h)
    h = L.Conv2D(16, 3, strides=2, activation="relu", name="down")(h)
    y = L.Dense(10, activation="softmax", name="out")(L.Flatten()(h))
    return cf.Model(x, y, name="residual_graph")


def _int8_reference_walk(qmodel, model, x):
    """The quantized model walked by the float model's own forward (any graph), with each int8
    layer's forward replaced by the naive int8 kernels (and its own activation: linear where a
    batch normalization is folded, whose following layers then run as they are) and each
    folded batch normalization by the identity: the spec the executor must follow."""
    folded = {q.folded_batchnorm for q in qmodel.int8_layers.values()} - {None}
    patched = [layer for layer in model.layers
               if layer.name in qmodel.int8_layers or layer.name in folded]

    def int8_forward(layer):
        q = qmodel.int8_layers[layer.name]
        return lambda h, training=False: _int8_layer_reference(q, layer, h, layer.act.kind)

    for layer in patched:
        layer.forward = (int8_forward(layer) if layer.name in qmodel.int8_layers
                         else (lambda h, training=False: h))
    try:
        return model._forward(np.ascontiguousarray(x, np.float32), False)
    finally:
        for layer in patched:
            del layer.forward


def test_functional_models_are_quantized_like_sequential_ones(sample, tmp_path):
    x, y, xt, _ = sample
    model = _train(residual_graph(), x[:2000], y[:2000])
    q = cf.quantize(model, x[:300])
    assert set(q.int8_layers) == {"stem", "branch", "down", "out"}
    assert q.int8_layers["stem"].folded_batchnorm == "stem_bn"
    assert q.int8_layers["branch"].folded_batchnorm == "branch_bn"
    plan = q.describe()
    assert not any("batchnorm" in line for line in plan), plan
    assert any("merge add" in line for line in plan), plan
    got = q.predict(xt[:500])
    _assert_follows_int8_spec(got, _int8_reference_walk(q, model, xt[:500]))
    assert np.mean(got.argmax(1) == model.predict(xt[:500]).argmax(1)) >= 0.97
    q.save(tmp_path / "graph-int8.cnnfast")
    np.testing.assert_array_equal(cf.load_model(tmp_path / "graph-int8.cnnfast").predict(xt[:500]),
                                  got)


def test_resnet20_quantizes_and_shared_layers_are_refused():
    cf.set_seed(0)
    model = cf.models.resnet20()
    model.build()
    q = cf.quantize(model, np.random.default_rng(0).standard_normal((16, 32, 32, 3),
                                                                    ).astype(np.float32))
    convs = [layer.name for layer in model.layers if type(layer) is L.Conv2D]
    assert set(q.int8_layers) == set(convs) | {"predictions"}
    # Every Conv2D -> BatchNormalization pair folds (the stem and both of each block's); the
    # 1x1 projection shortcuts have no batch normalization.
    unfolded = {c for c in convs if not q.int8_layers[c].folded_batchnorm}
    assert unfolded == {"stage2_block1_shortcut_conv", "stage3_block1_shortcut_conv"}
    assert not any("batchnorm" in line for line in q.describe())
    x = L.Input((6, 6, 2))
    shared = L.Conv2D(2, 3, padding="same", name="shared")
    y = L.Dense(3, name="d")(L.Flatten()(shared(shared(x))))
    twice = cf.Model(x, y)
    with pytest.raises(ValueError, match=r"layer 'shared' is called 2 times \(shared weights\)"):
        cf.quantize(twice, np.zeros((2, 6, 6, 2), np.float32))
    assert list(cf.quantize(twice, np.ones((2, 6, 6, 2), np.float32),
                            skip=["shared"]).int8_layers) == ["d"]


# The C API tests' fixture: examples/classify.c built against libcnnfast (skips without it).
capi_toolchain = test_capi.toolchain


@pytest.mark.parametrize("name", ["keras_mnist_cnn", "lenet5", "batchnorm", "residual_graph"])
def test_c_api_runs_the_quantized_file_like_predict(capi_toolchain, trained, sample, tmp_path,
                                                    name):
    """examples/classify.c on a quantized model file: the same builder and int8 kernels as
    QuantizedModel.predict, so the same scores to the bit (%.9g prints float32 exactly)."""
    if name == "batchnorm":
        model = cf.Sequential([L.Input((28, 28, 1)), L.Conv2D(8, 3, name="conv"),
                               L.BatchNormalization(name="bn"), L.Activation("relu"),
                               L.Flatten(), L.Dense(10, activation="softmax", name="out")])
        model = _train(model, sample[0][:1000], sample[1][:1000])
    elif name == "residual_graph":
        model = _train(residual_graph(), sample[0][:1000], sample[1][:1000])
    else:
        model = trained[name]
    q = cf.quantize(model, sample[0][:200])
    path = tmp_path / f"{name}-int8.cnnfast"
    q.save(path)
    test_capi.assert_classify_equals_predict(capi_toolchain["classify"], path, sample[2][7:8],
                                             q.predict, tmp_path)


def test_c_api_refuses_a_broken_quantized_file(capi_toolchain, trained, sample, tmp_path):
    q = cf.quantize(trained["keras_mnist_cnn"], sample[0][:100])
    path = tmp_path / "q.cnnfast"
    q.save(path)
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = raw[8:8 + n].decode().replace('"dense/input_zero_point":{"dtype":"I32"',
                                           '"dense/input_zero_point":{"dtype":"F32"')
    bad = tmp_path / "bad.cnnfast"
    bad.write_bytes(raw[:8] + header.encode() + raw[8 + n:])
    x = tmp_path / "input.f32"
    sample[2][:1].tofile(x)
    proc = subprocess.run([str(capi_toolchain["classify"]), str(bad), str(x)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    assert 'tensor "dense/input_zero_point" has dtype F32, expected I32' in proc.stderr


# -- accuracy on real MNIST -----------------------------------------------------------------

# (model, epochs, the float accuracy that shows training worked): seed 0 reaches 96.7% and
# 94.1% here; a few points lower and the comparison below would say nothing.
@pytest.mark.parametrize("name,epochs,floor", [("keras_mnist_cnn", 2, 0.95), ("lenet5", 3, 0.92)])
def test_int8_accuracy_on_real_mnist_within_0_3_points(mnist_dir, name, epochs, floor):
    """Issue 23's goal: at most 0.3 points of accuracy lost to int8 (the model trained briefly
    on 11,500 real MNIST images, calibrated on 500 other training images, all 10,000 test
    images). Skips without the dataset (conftest's mnist_dir)."""
    from cnnfast.datasets import read_idx

    scale = lambda a: (a.astype(np.float32) / 255.0)[..., None]
    x = scale(read_idx(mnist_dir / "train-images-idx3-ubyte.gz")[:12000])
    y = read_idx(mnist_dir / "train-labels-idx1-ubyte.gz")[:12000].astype(np.int64)
    xt = scale(read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz"))
    yt = read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    model = _train(cf.models.get(name, input_shape=(28, 28, 1)), x[:-500], y[:-500], epochs)
    fp32 = np.mean(model.predict(xt, batch_size=256).argmax(1) == yt)
    q = cf.quantize(model, x[-500:])
    int8 = np.mean(q.predict(xt, batch_size=256).argmax(1) == yt)
    print(f"{name}: fp32 {fp32:.2%}, int8 {int8:.2%}")
    assert fp32 >= floor, fp32
    # The goal itself: 0.3 points of 10,000 images is 30 images.
    assert int8 >= fp32 - 0.003, (fp32, int8)
