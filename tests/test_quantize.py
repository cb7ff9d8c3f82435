"""int8 inference (issue 23): the kernels of src/cpp/kernels/quantized.h against integer and
float64 references, and cnnfast.quantize end to end (predict, the model file, accuracy).

The integer part of every int8 product is exact, so the int32 sums must equal the int64 NumPy
product to the bit, on every GEMM path; the fast and naive kernels share the float epilogue, so
their float outputs agree to the bit too; against float64 the epilogue carries float32 rounding,
bounded below where it is checked."""

from __future__ import annotations

import numpy as np
import pytest

from cnnfast import _core

PATHS = [p for p in ("portable", "avx512_vnni") if _core.set_gemm_u8s8_path(p)]
_core.set_gemm_u8s8_path("auto")


@pytest.fixture(params=PATHS)
def path(request):
    assert _core.set_gemm_u8s8_path(request.param)
    yield request.param
    _core.set_gemm_u8s8_path("auto")


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


def test_vnni_and_portable_paths_agree_to_the_bit():
    if len(PATHS) < 2:
        pytest.skip(f"this CPU or build has only the {PATHS} int8 GEMM path")
    rng = np.random.default_rng(5)
    xq, wq, out_hw = _conv_case(rng, 8, 13, 13, 64, 64, 3, 3, (1, 1), (1, 1))
    args = (rng.uniform(1e-3, 1e-2, 64).astype(np.float32), rng.standard_normal(64)
            .astype(np.float32), 0.01, 17, 1, 1, 1, 1)
    outs = {}
    for p in PATHS:
        assert _core.set_gemm_u8s8_path(p)
        outs[p] = np.empty((8, *out_hw, 64), np.float32)
        _core.conv2d_forward_int8(outs[p], xq, wq, *args, relu=True)
    _core.set_gemm_u8s8_path("auto")
    np.testing.assert_array_equal(outs["portable"], outs["avx512_vnni"])


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
