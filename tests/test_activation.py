"""Activations, PReLU and softmax against the float64 reference (tests/reference.py)."""

from __future__ import annotations

import numpy as np
import pytest
import reference as R
from gradcheck import assert_gradient

from cnnfast import _core
from cnnfast.ops import activation as A

KINDS = ["relu", "sigmoid", "tanh", "elu", "swish", "leaky_relu", "linear"]
# 1, odd, and larger than the 32K-element threading grain (several chunks, odd tail).
SIZES = [1, 7, 1001, 100_003]
# Float32 results: the polynomial exp/tanh/expm1 measure <= 3.3 ulp (3.9e-7 relative) against
# float64, so 1e-6 relative (~8 ulp) bounds them; atol only absorbs results that underflow:
# exp(x) is flushed to 0 below x = -87.3 (e^x < FLT_MIN = 1.2e-38), times |x| <= 100 for swish.
FWD_RTOL, FWD_ATOL = 1e-6, 2e-36


def _inputs(n: int, rng) -> np.ndarray:
    """Normal values plus the awkward ones: 0, tiny, branch boundaries, and |x| up to 100."""
    special = np.array([0.0, -0.0, 1e-8, -1e-8, 0.624, 0.626, -0.624, -1.249, -1.251, 1.25,
                        20.0, -20.0, 87.0, -87.0, 88.5, -88.5, 89.0, -89.0, 100.0, -100.0])
    x = rng.standard_normal(n) * 3.0
    x[: min(n, special.size)] = special[: min(n, special.size)]
    if n > 100:
        x[100: 100 + n // 10] = rng.uniform(-100.0, 100.0, len(x[100: 100 + n // 10]))
    return x.astype(np.float32)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", SIZES)
def test_activation_forward_matches_reference(kind, n, simd_path, rng):
    x = _inputs(n, rng)
    alpha = {"elu": 0.7, "leaky_relu": 0.3}.get(kind, 1.0)
    y = np.empty_like(x)
    _core.activation_forward(y, x, kind, alpha)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y, R.activation(x, kind, alpha), rtol=FWD_RTOL, atol=FWD_ATOL)


def _dense_sweep() -> np.ndarray:
    """Every float32 step of 2^-16 over [-12, 12] (past tanh's saturation at 9.01), plus
    magnitudes from 1e-40 (subnormal) to 1e4 on a log grid, both signs."""
    lin = np.arange(-12.0, 12.0, 2.0**-16)
    mags = np.logspace(-40, 4, 200_001)
    return np.concatenate([lin, mags, -mags]).astype(np.float32)


# tanh and sigmoid run a degree-6 exp polynomial (1.7e-8 relative) and, on AVX-512, a 14-bit
# reciprocal with one Newton step instead of a division. Measured over every float32 on every
# path: <= 2.6e-7 relative (3.3 ulp) for tanh, <= 2.1e-7 (2.8 ulp) for sigmoid; 4e-7 leaves
# headroom below FWD_RTOL for a compiler's different FMA contraction. Below 1e-36 (sigmoid of
# x < -83, flushed to 0 past -87.3) only FWD_ATOL applies.
SWEEP_RTOL = 4e-7


@pytest.mark.parametrize("kind", ["tanh", "sigmoid"])
def test_tanh_sigmoid_dense_sweep(kind, simd_path):
    x = _dense_sweep()
    y = np.empty_like(x)
    _core.activation_forward(y, x, kind, 1.0)
    ref = R.activation(x, kind)
    err = np.abs(y - ref)
    bad = err > SWEEP_RTOL * np.abs(ref) + FWD_ATOL
    assert not bad.any(), (x[bad][:5], y[bad][:5], ref[bad][:5])
    assert np.all(np.abs(y) <= 1.0) and (kind == "tanh" or np.all(y >= 0.0))
    # The backward pass uses 1 - y^2 (tanh) and y (1 - y) (sigmoid): where |y| ~ 1 those need
    # y's absolute error near ulp(1)/2, the bound test_activation_backward_matches_reference
    # allows (2e-7 absolute); measured <= 0.45 of that bound on every float32.
    dy = np.ones_like(x)
    dx = np.empty_like(x)
    _core.activation_backward(dx, x, y, dy, kind)
    dref = R.activation_derivative(x, kind)
    assert np.all(np.abs(dx - dref) <= 2e-6 * np.abs(dref) + 2e-7)


@pytest.mark.parametrize("kind", ["tanh", "sigmoid"])
def test_tanh_sigmoid_special_values(kind, simd_path):
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 9.5, -9.5, 10.0, 1e30,
                  -1e30, 88.0, -88.0, -104.0], np.float32)
    y = np.empty_like(x)
    _core.activation_forward(y, x, kind, 1.0)
    assert np.isnan(y[4])
    if kind == "tanh":
        # Odd, signed zeros and subnormals kept, exactly +-1 once tanh rounds to 1 (|x| > 9.01).
        assert y[0] == 0.0 and not np.signbit(y[0]) and y[1] == 0.0 and np.signbit(y[1])
        np.testing.assert_array_equal(y[[2, 3, 7, 8, 9, 10, 11, 12, 13, 14]],
                                      [1, -1, 1, -1, 1, 1, -1, 1, -1, -1])
        np.testing.assert_array_equal(y[[5, 6]], x[[5, 6]])
    else:
        np.testing.assert_array_equal(y[[0, 1, 2, 3, 5, 6, 10, 11, 12, 14]],
                                      [0.5, 0.5, 1, 0, 0.5, 0.5, 1, 0, 1, 0])
        assert 0.0 <= y[13] < 1e-37  # e^-88 = 6e-39: flushed to 0 or a subnormal


@pytest.mark.parametrize("kind", KINDS)
def test_activation_naive_matches_reference(kind, rng):
    x = _inputs(1001, rng)
    y = np.empty_like(x)
    _core.activation_forward(y, x, kind, 1.0, naive=True)
    # libm expf/tanhf are within 1-2 ulp; the textbook sigmoid adds one division.
    np.testing.assert_allclose(y, R.activation(x, kind), rtol=FWD_RTOL, atol=FWD_ATOL)
    dy = rng.standard_normal(x.size).astype(np.float32)
    dx_fast, dx_naive = np.empty_like(x), np.empty_like(x)
    _core.activation_backward(dx_fast, x, y, dy, kind)
    _core.activation_backward(dx_naive, x, y, dy, kind, naive=True)
    # Same formulas on the same y; only swish recomputes sigmoid (<= 4 ulp apart).
    np.testing.assert_allclose(dx_fast, dx_naive, rtol=2e-6, atol=1e-7)


def test_elu_is_accurate_near_zero():
    # expm1 via tanh(x/2): full relative accuracy where exp(x) - 1 would cancel.
    x = np.array([-1e-3, -1e-5, -1e-7, -3e-2], np.float32)
    np.testing.assert_allclose(A.elu(x), np.expm1(x.astype(np.float64)), rtol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", SIZES)
def test_activation_backward_matches_reference(kind, n, simd_path, rng):
    x = _inputs(n, rng)
    alpha = {"elu": 1.3, "leaky_relu": 0.3}.get(kind, 1.0)
    dy = rng.standard_normal(n).astype(np.float32)
    y = np.empty_like(x)
    _core.activation_forward(y, x, kind, alpha)
    dx = np.empty_like(x)
    _core.activation_backward(dx, x, y, dy, kind, alpha)
    ref = R.activation_derivative(x, kind, alpha) * dy
    # sigmoid/tanh/elu derive from the float32 output y (as TF's SigmoidGrad/TanhGrad/EluGrad):
    # 1 - y, 1 - y^2 and y + alpha lose up to ulp(1)/2 = 6e-8 (times alpha) absolutely where
    # |y| ~ 1, hence the absolute term scaled by |dy|; elsewhere a few ulp relative.
    atol = 2e-7 * alpha * np.abs(dy.astype(np.float64)) + FWD_ATOL
    assert np.all(np.abs(dx - ref) <= 2e-6 * np.abs(ref) + atol)


@pytest.mark.parametrize("kind", KINDS)
def test_activation_backward_finite_differences(kind, rng):
    x = rng.uniform(-4.0, 4.0, 200)
    x = x[np.abs(x) > 0.05][:64]  # keep the relu/elu kink at 0 out of the +-eps stencil
    alpha = 0.8
    w = rng.standard_normal(x.size)

    def f() -> float:
        y = np.empty(x.shape, np.float32)
        _core.activation_forward(y, x.astype(np.float32), kind, alpha)
        return float(np.dot(w, y))

    _fwd, bwd = A.ACTIVATIONS[kind]
    dx = {"elu": lambda: A.elu_backward(x, w, alpha),
          "leaky_relu": lambda: A.leaky_relu_backward(x, w, alpha)}.get(kind, lambda: bwd(x, w))()
    assert_gradient(f, x, dx)  # gradcheck's default tolerances, justified there


@pytest.mark.parametrize("kind", KINDS)
def test_activation_in_place(kind, rng):
    x = _inputs(70_001, rng)
    dy = rng.standard_normal(x.size).astype(np.float32)
    y = np.empty_like(x)
    _core.activation_forward(y, x, kind, 0.5)
    dx = np.empty_like(x)
    _core.activation_backward(dx, x, y, dy, kind, 0.5)
    y_inplace = x.copy()
    _core.activation_forward(y_inplace, y_inplace, kind, 0.5)  # y aliases x
    np.testing.assert_array_equal(y_inplace, y)
    dx_inplace = dy.copy()
    _core.activation_backward(dx_inplace, x, y, dx_inplace, kind, 0.5)  # dx aliases dy
    np.testing.assert_array_equal(dx_inplace, dx)


@pytest.mark.parametrize("kind", ["sigmoid", "swish", "elu"])
def test_activation_identical_for_1_and_2_threads(kind, rng, restore_threads):
    x = _inputs(100_003, rng)
    out = []
    for t in (1, 2):
        _core.set_num_threads(t)
        y = np.empty_like(x)
        _core.activation_forward(y, x, kind, 1.0)
        dx = np.empty_like(x)
        _core.activation_backward(dx, x, y, x, kind, 1.0)
        out.append((y, dx))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])


def test_nan_propagates(rng):
    x = np.array([np.nan, 1.0], np.float32)
    for kind in ["relu", "sigmoid", "tanh", "elu", "swish", "leaky_relu"]:
        assert np.isnan(A.ACTIVATIONS[kind][0](x)[0]), kind


def test_python_api_shapes_and_dtypes(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    for name, (fwd, bwd) in A.ACTIVATIONS.items():
        y = fwd(x)
        assert y.shape == x.shape and y.dtype == np.float32, name
        dx = bwd(y if name in A.BACKWARD_TAKES_OUTPUT else x, np.ones_like(x))
        assert dx.shape == x.shape and dx.dtype == np.float32, name
    assert A.relu(np.arange(-2, 3)).tolist() == [0, 0, 0, 1, 2]  # int input converted


# ---- PReLU -------------------------------------------------------------------------------

PRELU_CASES = [
    ((1, 1, 1, 1), (1, 1, 1)),
    ((2, 3, 5, 7), (3, 5, 7)),        # Keras default: alpha of shape input_shape[1:]
    ((2, 3, 5, 7), (1, 1, 7)),        # shared_axes=[1, 2]
    ((3, 40, 40, 16), (1, 1, 16)),    # > 32K elements, narrow alpha: row-block partials
    ((5, 30, 30, 3), (30, 30, 3)),    # > 32K elements, wide alpha (2700 > 1024): column chunks
    ((4, 9), (9,)),                   # dense input
]


@pytest.mark.parametrize("xshape,ashape", PRELU_CASES)
def test_prelu_matches_reference(xshape, ashape, rng):
    x = rng.standard_normal(xshape).astype(np.float32)
    alpha = rng.uniform(-0.5, 0.5, ashape).astype(np.float32)
    dy = rng.standard_normal(xshape).astype(np.float32)
    # y and dx are one float32 product each: exact up to a single rounding.
    np.testing.assert_allclose(A.prelu(x, alpha), R.prelu(x, alpha), rtol=1e-7, atol=0)
    dx, dalpha = A.prelu_backward(x, alpha, dy)
    rdx, rdalpha = R.prelu_backward(x, alpha, dy)
    np.testing.assert_allclose(dx, rdx, rtol=1e-7, atol=0)
    assert dalpha.shape == alpha.shape
    # dalpha is summed in double and rounded once to float32.
    np.testing.assert_allclose(dalpha, rdalpha, rtol=2e-7, atol=1e-12)


@pytest.mark.parametrize("xshape,ashape", [PRELU_CASES[3], PRELU_CASES[4]])
def test_prelu_backward_identical_for_1_and_2_threads(xshape, ashape, rng, restore_threads):
    x = rng.standard_normal(xshape).astype(np.float32)
    alpha = rng.uniform(-0.5, 0.5, ashape).astype(np.float32)
    dy = rng.standard_normal(xshape).astype(np.float32)
    res = []
    for t in (1, 2):
        _core.set_num_threads(t)
        res.append(A.prelu_backward(x, alpha, dy))
    np.testing.assert_array_equal(res[0][0], res[1][0])
    np.testing.assert_array_equal(res[0][1], res[1][1])


def test_prelu_finite_differences(rng):
    x = rng.standard_normal((2, 3, 3, 4))
    x[np.abs(x) < 0.05] = 0.3  # away from the kink at 0
    alpha = rng.uniform(0.1, 0.4, (1, 1, 4))
    w = rng.standard_normal(x.shape)

    def f() -> float:
        return float(np.sum(w * A.prelu(x, alpha)))

    dx, dalpha = A.prelu_backward(x, alpha, w)
    assert_gradient(f, x, dx)
    assert_gradient(f, alpha, dalpha)


def test_prelu_in_place(rng):
    x = rng.standard_normal((4, 6, 6, 3)).astype(np.float32)
    alpha = rng.uniform(0.1, 0.3, (1, 1, 3)).astype(np.float32)
    y = A.prelu(x, alpha)
    buf = x.copy()
    _core.prelu_forward(buf, buf, alpha)
    np.testing.assert_array_equal(buf, y)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx, dalpha = A.prelu_backward(x, alpha, dy)
    dbuf, da = dy.copy(), np.full_like(alpha, np.nan)  # dalpha is overwritten, not accumulated
    _core.prelu_backward(dbuf, da, x, alpha, dbuf)
    np.testing.assert_array_equal(dbuf, dx)
    np.testing.assert_array_equal(da, dalpha)


# ---- softmax -----------------------------------------------------------------------------

# (3, 4099): rows wider than the 2048-element exp batches take the per-row path.
SOFTMAX_SHAPES = [(1, 1), (1, 5), (3, 10), (513, 7), (40, 1000), (3, 4099), (2, 3, 5)]
# Softmax subtracts the row max in float32: x - max is rounded to ulp(|x - max|)/2, up to
# 7.6e-6 for |x - max| <= 200, and that absolute error becomes relative error of exp.
SOFTMAX_RTOL = 2e-5


@pytest.mark.parametrize("shape", SOFTMAX_SHAPES)
@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_softmax_matches_reference(shape, scale, simd_path, rng):
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    ref = R.softmax(x)
    y = A.softmax(x)
    np.testing.assert_allclose(y, ref, rtol=SOFTMAX_RTOL, atol=1e-37)
    yn = np.empty_like(x)
    _core.softmax_forward(yn, x, naive=True)
    np.testing.assert_allclose(yn, ref, rtol=SOFTMAX_RTOL, atol=1e-37)


def test_softmax_extreme_logits_do_not_overflow():
    x = np.array([[100.0, -100.0, 0.0], [-100.0, -100.0, -100.0], [1e30, 0.0, -1e30],
                  [88.9, 89.0, 89.1]], np.float32)
    y = A.softmax(x)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(y[:2], R.softmax(x[:2]), rtol=SOFTMAX_RTOL, atol=1e-37)
    assert y[2].tolist() == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("shape", SOFTMAX_SHAPES)
def test_softmax_backward_matches_reference(shape, rng):
    y = A.softmax(rng.standard_normal(shape) * 3)
    dy = rng.standard_normal(shape).astype(np.float32)
    dx = A.softmax_backward(y, dy)
    ref = R.softmax_backward(y, dy)
    # dot(dy, y) is summed in double; dy - dot cancels to ~ulp(max|dy|), scaled by y <= 1.
    np.testing.assert_allclose(dx, ref, rtol=1e-5, atol=5e-7 * np.abs(dy).max())


def test_softmax_backward_finite_differences(rng):
    x = rng.standard_normal((3, 6))
    w = rng.standard_normal((3, 6))

    def f() -> float:
        return float(np.sum(w * A.softmax(x)))

    assert_gradient(f, x, A.softmax_backward(A.softmax(x), w))


def test_softmax_in_place_and_threads(rng, restore_threads):
    x = (rng.standard_normal((700, 100)) * 5).astype(np.float32)  # 70K elements: threaded
    y1 = A.softmax(x)
    _core.set_num_threads(2)
    y2 = A.softmax(x)
    np.testing.assert_array_equal(y1, y2)
    buf = x.copy()
    _core.softmax_forward(buf, buf)
    np.testing.assert_array_equal(buf, y1)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx = A.softmax_backward(y1, dy)
    _core.softmax_backward(dy, y1, dy)
    np.testing.assert_array_equal(dy, dx)


# ---- errors ------------------------------------------------------------------------------


def test_errors_name_op_and_shapes():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"activation_forward y \(3, 2\) and x \(2, 3\)"):
        _core.activation_forward(np.zeros((3, 2), np.float32), x, "relu")
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        _core.activation_forward(x.copy(), x, "gelu")
    with pytest.raises(ValueError, match="float32"):
        _core.activation_forward(np.zeros((2, 3)), x, "relu")
    with pytest.raises(ValueError, match="dy"):
        _core.activation_backward(x.copy(), x, x, np.zeros((2, 4), np.float32), "relu")
    with pytest.raises(ValueError, match=r"relu_backward: dy \(3,\) and x \(2, 3\)"):
        A.relu_backward(x, np.zeros(3))
    with pytest.raises(ValueError, match="real numeric"):
        A.sigmoid(np.array(["a"]))
    with pytest.raises(ValueError, match=r"prelu.*alpha \(4,\).*\(2, 3\)"):
        A.prelu(x, np.zeros(4))
    with pytest.raises(ValueError, match=r"dalpha"):
        _core.prelu_backward(x.copy(), np.zeros(2, np.float32), x, np.zeros(3, np.float32), x)
    with pytest.raises(ValueError, match=r"softmax_backward: dy \(2, 4\) and y \(2, 3\)"):
        A.softmax_backward(x, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="rank >= 1"):
        A.softmax(np.float32(1.0))
    with pytest.raises(ValueError, match="read-only"):
        ro = np.zeros((2, 3), np.float32)
        ro.setflags(write=False)
        _core.softmax_forward(ro, x)
