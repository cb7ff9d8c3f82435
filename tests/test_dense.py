"""dense forward/backward (sgemm path and naive loops) against the float64 reference."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from gradcheck import assert_gradient

from cnnfast import _core
from cnnfast.ops.fc import dense, dense_backward

U32 = 2.0**-24  # unit roundoff of float32


def assert_sum_close(got, want, abs_terms, factor=32):
    """|got - want| <= factor * u * sum(|terms|): see tests/test_conv2d.py for the reasoning."""
    got = np.asarray(got, np.float64)
    assert got.shape == want.shape and np.all(np.isfinite(got))
    np.testing.assert_array_less(np.abs(got - want), factor * U32 * abs_terms + 1e-30)


def random_shapes(count, seed):
    rng = np.random.default_rng(seed)
    return [
        tuple(int(v) for v in (rng.integers(1, 9), rng.integers(1, 70), rng.integers(1, 40)))
        for _ in range(count)
    ]


SHAPES = [(1, 1, 1), (128, 1600, 10), (3, 5, 7), (64, 9216, 128)] + random_shapes(20, seed=3)


@pytest.mark.parametrize("naive", [False, True], ids=["fast", "naive"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_dense_matches_reference(shape, naive, rng):
    N, IN, OUT = shape
    x = rng.standard_normal((N, IN)).astype(np.float32)
    w = rng.standard_normal((IN, OUT)).astype(np.float32)
    b = rng.standard_normal(OUT).astype(np.float32)
    dy = rng.standard_normal((N, OUT)).astype(np.float32)

    y = np.full((N, OUT), np.nan, np.float32)
    _core.dense_forward(y, x, w, b, naive=naive)
    assert_sum_close(y, ref.dense_forward(x, w, b), ref.dense_forward(abs(x), abs(w), abs(b)))
    _core.dense_forward(y, x, w, None, naive=naive)
    assert_sum_close(y, ref.dense_forward(x, w), ref.dense_forward(abs(x), abs(w)))

    dx = np.full((N, IN), np.nan, np.float32)
    dw = np.full((IN, OUT), np.nan, np.float32)
    db = np.full(OUT, np.nan, np.float32)
    _core.dense_backward(dx, dw, db, x, w, dy, naive=naive)
    want = ref.dense_backward(x, w, dy)
    abs_terms = ref.dense_backward(abs(x), abs(w), abs(dy))
    for g, wnt, a in zip((dx, dw, db), want, abs_terms):
        assert_sum_close(g, wnt, a)
    # dx and db are optional outputs.
    dw2 = np.full((IN, OUT), np.nan, np.float32)
    _core.dense_backward(None, dw2, None, x, w, dy, naive=naive)
    assert_sum_close(dw2, want[1], abs_terms[1])


def test_dense_public_op_flattens_leading_axes(rng):
    x = rng.standard_normal((2, 3, 5)).astype(np.float32)
    w = rng.standard_normal((5, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    dy = rng.standard_normal((2, 3, 4)).astype(np.float32)
    y = dense(x, w, b)
    assert y.shape == (2, 3, 4) and y.dtype == np.float32
    x2, dy2 = x.reshape(6, 5), dy.reshape(6, 4)
    assert_sum_close(
        y.reshape(6, 4), ref.dense_forward(x2, w, b), ref.dense_forward(abs(x2), abs(w), abs(b))
    )
    dx, dw, db = dense_backward(x, w, dy)
    assert dx.shape == x.shape
    want = ref.dense_backward(x2, w, dy2)
    abs_terms = ref.dense_backward(abs(x2), abs(w), abs(dy2))
    for g, wnt, a in zip((dx.reshape(6, 5), dw, db), want, abs_terms):
        assert_sum_close(g, wnt, a)


@pytest.mark.parametrize("naive", [False, True], ids=["fast", "naive"])
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 7), (128, 1600, 10), (64, 300, 70)], ids=str)
def test_dense_fused_relu_matches_reference(shape, naive, rng):
    N, IN, OUT = shape
    x = rng.standard_normal((N, IN)).astype(np.float32)
    w = rng.standard_normal((IN, OUT)).astype(np.float32)
    b = rng.standard_normal(OUT).astype(np.float32)
    want = ref.dense_forward(x, w, b)
    abs_terms = ref.dense_forward(abs(x), abs(w), abs(b))
    for bias in (b, None):
        y = np.full((N, OUT), np.nan, np.float32)
        _core.dense_forward(y, x, w, bias, naive=naive, activation="relu")
        wnt = want if bias is not None else ref.dense_forward(x, w, None)
        # ReLU of a value within the sum bound is within the same bound of the true ReLU.
        assert_sum_close(y, np.maximum(wnt, 0.0), abs_terms)
        assert np.all(y >= 0.0)
    with pytest.raises(ValueError, match="activation must be"):
        _core.dense_forward(y, x, w, b, activation="tanh")


def test_dense_bias_grad_over_many_rows(rng):
    # Long column sums (db over a big batch) stay accurate: float blocks, double partials.
    dy = (rng.standard_normal((20000, 3)) + 100.0).astype(np.float32)
    x = np.ones((20000, 1), np.float32)
    dw = np.empty((1, 3), np.float32)
    db = np.empty(3, np.float32)
    _core.dense_backward(None, dw, db, x, np.ones((1, 3), np.float32), dy)
    want = dy.astype(np.float64).sum(axis=0)
    # All-positive terms: a plain sequential float32 sum is off by ~4e-7 relative here
    # (measured); 32-row float blocks summed in double leave ~u/2 from the final rounding.
    np.testing.assert_allclose(db, want, rtol=2 * U32)


def test_dense_gradients_match_finite_differences(rng):
    x = rng.standard_normal((4, 6))
    w = rng.standard_normal((6, 3))
    b = rng.standard_normal(3)
    r = rng.standard_normal((4, 3))  # loss = sum(y * r)

    def loss():
        return float(np.sum(dense(x, w, b).astype(np.float64) * r))

    dx, dw, db = dense_backward(x, w, r)
    # Default gradcheck tolerances (rtol 2e-2, atol 2e-3): see tests/gradcheck.py.
    assert_gradient(loss, x, dx, max_points=None)
    assert_gradient(loss, w, dw, max_points=None)
    assert_gradient(loss, b, db, max_points=None)


def test_dense_rejects_bad_arguments():
    x = np.zeros((2, 5), np.float32)
    w = np.zeros((5, 3), np.float32)
    with pytest.raises(ValueError, match=r"dense: x must have rank.*\(5,\)"):
        dense(np.zeros(5), w)
    with pytest.raises(ValueError, match=r"dense: w must have rank 2.*\(5,\)"):
        dense(x, np.zeros(5))
    with pytest.raises(ValueError, match=r"dense: x \(2, 4\) has 4 features but w \(5, 3\)"):
        dense(np.zeros((2, 4)), w)
    with pytest.raises(ValueError, match=r"dense: b must have shape \(3,\)"):
        dense(x, w, np.zeros(4))
    with pytest.raises(ValueError, match=r"dense_backward: dy must have shape \(2, 3\)"):
        dense_backward(x, w, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="real numeric"):
        dense(x.astype(object), w)
    with pytest.raises(ValueError, match=r"dense_forward y: expected shape \(2, 3\)"):
        _core.dense_forward(np.zeros((2, 4), np.float32), x, w, None)
    with pytest.raises(ValueError, match=r"dense_backward: x \(2, 5\) and w \(4, 3\)"):
        _core.dense_backward(
            None,
            np.zeros((4, 3), np.float32),
            None,
            x,
            np.zeros((4, 3), np.float32),
            np.zeros((2, 3), np.float32),
        )


def test_fused_relu_propagates_nan():
    from cnnfast import _core

    x = np.ones((3, 5), np.float32)
    x[1, 2] = np.nan
    w = -np.ones((5, 4), np.float32)
    y = np.empty((3, 4), np.float32)
    _core.dense_forward(y, x, w, None, activation="relu")
    assert np.all(y[[0, 2]] == 0) and np.all(np.isnan(y[1]))
