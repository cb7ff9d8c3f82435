"""max/avg pooling forward/backward (fast and naive) against the float64 reference."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from gradcheck import assert_gradient

from cnnfast import _core
from cnnfast.ops.pool import (
    avg_pool2d,
    avg_pool2d_backward,
    max_pool2d,
    max_pool2d_backward,
    pool2d_geometry,
)
from cnnfast.shapes import conv_padding, pair

U32 = 2.0**-24  # unit roundoff of float32


def assert_sum_close(got, want, abs_terms, factor=32):
    """|got - want| <= factor * u * sum(|terms|): see tests/test_conv2d.py for the reasoning
    (averages also round the 1/count scale, one more u)."""
    got = np.asarray(got, np.float64)
    assert got.shape == want.shape and np.all(np.isfinite(got))
    np.testing.assert_array_less(np.abs(got - want), factor * U32 * abs_terms + 1e-30)


def geometry(case):
    """(reference pads per side, pool, strides, core geometry args) of a case."""
    N, H, W, C, pool, strides, padding = case
    ph, pw = pair(pool, "pool")
    sh, sw = (ph, pw) if strides is None else pair(strides, "strides")
    p_h, p_w = (padding, padding) if isinstance(padding, str) else pair(padding, "padding")
    t, b, OH = conv_padding(H, ph, sh, p_h)
    le, r, OW = conv_padding(W, pw, sw, p_w)
    return ((t, b), (le, r)), (ph, pw), (sh, sw), (ph, pw, sh, sw, t, le), (N, OH, OW, C)


# (N, H, W, C, pool_size, strides, padding)
HAND_CASES = [
    (2, 4, 4, 3, 2, None, "valid"),  # Keras default MaxPooling2D()
    (3, 5, 7, 5, 2, None, "valid"),  # odd sizes: last row/column ignored
    (2, 5, 7, 9, 2, None, "same"),  # odd sizes, "same": windows clipped at bottom/right
    (1, 6, 6, 17, 3, 1, "same"),  # overlapping windows (stride < pool)
    (2, 7, 8, 4, (3, 2), (2, 3), "valid"),  # rectangular pool, mixed strides
    (2, 6, 6, 3, 3, 2, 1),  # explicit padding, overlapping
    (4, 9, 9, 2, (2, 4), 3, (1, 2)),  # stride > pool: skipped input rows
    (1, 1, 1, 1, 1, None, "valid"),
    (2, 26, 26, 32, 2, None, "valid"),  # Keras MNIST CNN pooling shape (smaller batch)
]


def random_cases(count, seed):
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        pool = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
        strides = None if rng.random() < 0.3 else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        padding = [
            "valid",
            "same",
            int(rng.integers(0, 3)),
            (int(rng.integers(0, 3)), int(rng.integers(0, 3))),
        ][int(rng.integers(0, 4))]
        case = (
            int(rng.integers(1, 5)),
            int(rng.integers(1, 11)),
            int(rng.integers(1, 11)),
            int(rng.integers(1, 10)),
            pool,
            strides,
            padding,
        )
        try:
            pool2d_geometry(case[:4], pool, strides, padding)
        except ValueError:
            continue
        cases.append(case)
    return cases


ALL_CASES = HAND_CASES + random_cases(40, seed=11)


def run_max(x, dy, case, naive):
    _, _, _, geo, y_shape = geometry(case)
    y = np.full(y_shape, np.nan, np.float32)
    am = np.full(y_shape, -1, np.int32)
    _core.max_pool2d_forward(y, am, x, *geo, naive=naive)
    y2 = np.full(y_shape, np.nan, np.float32)
    _core.max_pool2d_forward(y2, None, x, *geo, naive=naive)
    np.testing.assert_array_equal(y, y2)  # with or without argmax: same values
    dx = np.full_like(x, np.nan)
    _core.max_pool2d_backward(dx, dy, am, *geo, naive=naive)
    return y, dx


@pytest.mark.parametrize("values", ["normal", "ties"])
@pytest.mark.parametrize("naive", [False, True], ids=["fast", "naive"])
@pytest.mark.parametrize("case", ALL_CASES, ids=str)
def test_max_pool2d_matches_reference(case, naive, values, rng):
    pads, pool, strides, _, y_shape = geometry(case)
    shape = case[:4]
    if values == "ties":  # few distinct values: ties decide which input gets the gradient
        x = rng.integers(0, 3, size=shape).astype(np.float32)
    else:
        x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(y_shape).astype(np.float32)
    y, dx = run_max(x, dy, case, naive)
    np.testing.assert_array_equal(y, ref.max_pool2d_forward(x, pool, strides, pads))  # exact
    want = ref.max_pool2d_backward(x, dy, pool, strides, pads)
    # Overlapping windows add several dy into one dx: a float32 sum of few terms.
    assert_sum_close(dx, want, ref.max_pool2d_backward(x, np.abs(dy), pool, strides, pads))
    if not naive:
        _, _, _, _, pool_size, st, padding = case
        np.testing.assert_array_equal(max_pool2d(x, pool_size, st, padding), y)
        dx2 = max_pool2d_backward(x, dy, pool_size, st, padding)
        np.testing.assert_array_equal(dx2, dx)


@pytest.mark.parametrize("naive", [False, True], ids=["fast", "naive"])
@pytest.mark.parametrize("case", ALL_CASES, ids=str)
def test_avg_pool2d_matches_reference(case, naive, rng):
    pads, pool, strides, geo, y_shape = geometry(case)
    x = rng.standard_normal(case[:4]).astype(np.float32)
    dy = rng.standard_normal(y_shape).astype(np.float32)
    y = np.full(y_shape, np.nan, np.float32)
    _core.avg_pool2d_forward(y, x, *geo, naive=naive)
    want = ref.avg_pool2d_forward(x, pool, strides, pads)
    assert_sum_close(y, want, ref.avg_pool2d_forward(np.abs(x), pool, strides, pads))
    dx = np.full_like(x, np.nan)
    _core.avg_pool2d_backward(dx, dy, *geo, naive=naive)
    want_dx = ref.avg_pool2d_backward(x.shape, dy, pool, strides, pads)
    abs_dx = ref.avg_pool2d_backward(x.shape, np.abs(dy), pool, strides, pads)
    assert_sum_close(dx, want_dx, abs_dx)
    if not naive:
        _, _, _, _, pool_size, st, padding = case
        assert_sum_close(
            avg_pool2d(x, pool_size, st, padding),
            want,
            ref.avg_pool2d_forward(np.abs(x), pool, strides, pads),
        )
        assert_sum_close(avg_pool2d_backward(x, dy, pool_size, st, padding), want_dx, abs_dx)


def test_avg_pool2d_same_excludes_padding_from_count():
    x = np.ones((1, 3, 3, 1), np.float32)
    # "same" with pool 2, stride 2 on 3x3: the last window row/column is half padding; Keras
    # averages over the in-input positions only, so every output is exactly 1.
    np.testing.assert_array_equal(avg_pool2d(x, 2, padding="same"), np.ones((1, 2, 2, 1)))


@pytest.mark.parametrize("naive", [False, True], ids=["fast", "naive"])
def test_max_pool2d_propagates_nan(naive):
    x = np.zeros((1, 2, 4, 3), np.float32)
    x[0, 1, 1, 0] = np.nan  # window 0, channel 0: NaN after the maximum position
    x[0, 0, 2, 1] = np.nan  # window 1, channel 1: NaN first, then larger values
    x[0, 1, 3, 1] = 5.0
    y = np.empty((1, 1, 2, 3), np.float32)
    am = np.empty((1, 1, 2, 3), np.int32)
    _core.max_pool2d_forward(y, am, x, 2, 2, 2, 2, 0, 0, naive=naive)
    assert np.isnan(y[0, 0, 0, 0]) and np.isnan(y[0, 0, 1, 1])
    assert not np.isnan(y[0, 0, 0, 1:]).any() and not np.isnan(y[0, 0, 1, [0, 2]]).any()
    assert am[0, 0, 0, 0] == (1 * 4 + 1) * 3 + 0  # the NaN's own index
    assert am[0, 0, 1, 1] == (0 * 4 + 2) * 3 + 1


def test_max_pool2d_gradients_match_finite_differences(rng):
    # Distinct values spaced 0.1 apart: no two inputs of a window come within eps = 1e-2.
    x = (rng.permutation(2 * 6 * 6 * 3).reshape(2, 6, 6, 3) * 0.1).astype(np.float64)
    r = rng.standard_normal((2, 3, 3, 3))  # loss = sum(y * r), pool 3 stride 2 "same"

    def loss():
        return float(np.sum(max_pool2d(x, 3, 2, "same").astype(np.float64) * r))

    # Default gradcheck tolerances (rtol 2e-2, atol 2e-3): see tests/gradcheck.py.
    assert_gradient(loss, x, max_pool2d_backward(x, r, 3, 2, "same"), max_points=None)


def test_avg_pool2d_gradients_match_finite_differences(rng):
    x = rng.standard_normal((2, 5, 7, 3))
    r = rng.standard_normal((2, 3, 4, 3))  # loss = sum(y * r), pool (2, 3), stride 2, "same"

    def loss():
        return float(np.sum(avg_pool2d(x, (2, 3), 2, "same").astype(np.float64) * r))

    # Default gradcheck tolerances (rtol 2e-2, atol 2e-3): see tests/gradcheck.py.
    assert_gradient(loss, x, avg_pool2d_backward(x, r, (2, 3), 2, "same"), max_points=None)


# ---- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [max_pool2d, avg_pool2d], ids=["max", "avg"])
@pytest.mark.parametrize(
    "shape, kwargs, match",
    [
        ((4, 4, 3), {}, r"rank 4.*\(4, 4, 3\)"),
        ((1, 1, 4, 3), {}, r"pool2d with x \(1, 1, 4, 3\).*larger"),
        ((1, 4, 4, 3), {"strides": 0}, r"pool2d with x \(1, 4, 4, 3\).*positive"),
        ((1, 4, 4, 3), {"pool_size": (2, 0)}, r"pool2d.*positive"),
        ((1, 4, 4, 3), {"padding": 2}, r"pool2d.*smaller than the pool"),
        ((1, 4, 4, 3), {"padding": "full"}, r"pool2d.*padding"),
    ],
)
def test_pool2d_rejects_bad_arguments(fn, shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fn(np.zeros(shape, np.float32), **kwargs)


def test_pool2d_backward_rejects_bad_dy_and_core_checks():
    x = np.zeros((2, 4, 4, 3), np.float32)
    with pytest.raises(ValueError, match=r"max_pool2d_backward: dy must have shape \(2, 2, 2, 3\)"):
        max_pool2d_backward(x, np.zeros((2, 2, 2, 4)))
    with pytest.raises(ValueError, match=r"avg_pool2d_backward: dy must have shape \(2, 2, 2, 3\)"):
        avg_pool2d_backward(x, np.zeros((2, 3, 2, 3)))
    y = np.zeros((2, 2, 2, 3), np.float32)
    with pytest.raises(ValueError, match=r"y must be \(N, OH, OW, C\)"):
        _core.max_pool2d_forward(np.zeros((2, 2, 2, 4), np.float32), None, x, 2, 2, 2, 2, 0, 0)
    with pytest.raises(ValueError, match="argmax: expected dtype int32"):
        _core.max_pool2d_forward(y, np.zeros(y.shape, np.int64), x, 2, 2, 2, 2, 0, 0)
    with pytest.raises(ValueError, match=r"height output size 3 does not fit"):
        _core.avg_pool2d_forward(np.zeros((2, 3, 2, 3), np.float32), x, 2, 2, 2, 2, 0, 0)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        _core.avg_pool2d_backward(x.copy(), y, 2, 2, 0, 2, 0, 0)
    bad = np.full(y.shape, 48, np.int32)  # one past the last index of a (4, 4, 3) sample
    with pytest.raises(ValueError, match="24 argmax entries lie outside"):
        _core.max_pool2d_backward(x.copy(), y, bad, 2, 2, 2, 2, 0, 0)


# ---- fast paths: every compiled SIMD copy, full 2x2 / 3x3 windows, tails, threads --------


# Shapes that reach each loop: full 2x2 / 3x3 windows with C a multiple of every vector width,
# C with a scalar tail (17, 35), C below one vector (3, 6), windows clipped by "same" padding,
# stride > pool (uncovered rows/columns of dx must be zeroed), overlapping 3x3 stride 2; and the
# narrow-channel 2x2 average kernels (AVX-512, C < 16): LeNet's S2, C = 1, 8 (a window pair per
# vector) and 15, odd sizes whose last row and column no window reaches.
FAST_CASES = [
    (2, 28, 28, 6, 2, None, "valid"),
    (3, 9, 11, 5, 2, None, "valid"),
    (1, 6, 5, 1, 2, None, "valid"),
    (2, 7, 6, 8, 2, None, "valid"),
    (2, 8, 10, 15, 2, None, "valid"),
    (2, 8, 8, 64, 2, None, "valid"),
    (2, 9, 7, 17, 2, None, "valid"),
    (2, 9, 7, 35, 2, None, "same"),
    (2, 6, 6, 6, 2, None, "valid"),
    (2, 9, 9, 32, 3, None, "valid"),
    (1, 10, 11, 19, 3, None, "same"),
    (2, 11, 11, 48, 3, 2, "valid"),
    (2, 12, 12, 17, 3, 2, "same"),
    (2, 11, 10, 16, 2, 3, "valid"),
    (2, 12, 12, 32, (2, 3), (3, 4), "same"),
    (3, 7, 9, 3, 3, 2, 1),
]


@pytest.mark.parametrize("case", FAST_CASES, ids=str)
def test_pool2d_fast_paths_match_naive_on_every_simd_path(case, pool_simd_path, rng):
    _, _, _, geo, y_shape = geometry(case)
    x = rng.standard_normal(case[:4]).astype(np.float32)
    x[x > 2.5] = np.nan  # a few NaNs: the first NaN of a window must win and stay
    x[:, ::3, ::2, ::4] = 0.5  # ties between positions: the first in row-major order wins
    dy = rng.standard_normal(y_shape).astype(np.float32)
    got, want = {}, {}
    for naive, out in ((False, got), (True, want)):
        y = np.full(y_shape, -7.0, np.float32)
        am = np.full(y_shape, -1, np.int32)
        _core.max_pool2d_forward(y, am, x, *geo, naive=naive)
        y_only = np.full(y_shape, -7.0, np.float32)
        _core.max_pool2d_forward(y_only, None, x, *geo, naive=naive)
        dx = np.full_like(x, np.nan)
        _core.max_pool2d_backward(dx, dy, am, *geo, naive=naive)
        ya = np.full(y_shape, -7.0, np.float32)
        _core.avg_pool2d_forward(ya, np.nan_to_num(x), *geo, naive=naive)
        dxa = np.full_like(x, np.nan)
        _core.avg_pool2d_backward(dxa, dy, *geo, naive=naive)
        out.update(y=y, am=am, y_only=y_only, dx=dx, ya=ya, dxa=dxa)
    # Max pooling selects and copies: bit-identical to the naive loops, NaNs and ties included.
    for k in ("y", "am", "y_only", "dx"):
        np.testing.assert_array_equal(got[k], want[k], err_msg=f"{k} on {pool_simd_path}")
    # Averages: a sum of <= 9 terms times 1/count (naive divides): a few ulps of the |terms|.
    pads, pool, strides, _, _ = geometry(case)
    xa = np.nan_to_num(x)
    assert_sum_close(got["ya"], ref.avg_pool2d_forward(xa, pool, strides, pads),
                     ref.avg_pool2d_forward(np.abs(xa), pool, strides, pads))
    assert_sum_close(got["dxa"], ref.avg_pool2d_backward(x.shape, dy, pool, strides, pads),
                     ref.avg_pool2d_backward(x.shape, np.abs(dy), pool, strides, pads))


def test_max_pool2d_backward_accepts_argmax_outside_its_window():
    # argmax need not come from forward: an in-range index in another window still receives its
    # gradient (the disjoint fast path notices and falls back to the plain scatter).
    x_shape, geo = (1, 4, 4, 16), (2, 2, 2, 2, 0, 0)
    am = np.zeros((1, 2, 2, 16), np.int32)
    am[...] = np.arange(16, dtype=np.int32)  # every window points at input (0, 0)
    dy = np.ones((1, 2, 2, 16), np.float32)
    for naive in (False, True):
        dx = np.full(x_shape, np.nan, np.float32)
        _core.max_pool2d_backward(dx, dy, am, *geo, naive=naive)
        want = np.zeros(x_shape, np.float32)
        want[0, 0, 0, :] = 4.0
        np.testing.assert_array_equal(dx, want)


@pytest.mark.parametrize("pool, stride", [(2, 2), (3, 2)])
def test_pool2d_threaded_equals_single_thread(pool, stride, rng):
    # Large enough for two threads (> 2 x 64K floats); results must not depend on the split.
    x = rng.standard_normal((16, 26, 26, 64)).astype(np.float32)
    case = (16, 26, 26, 64, pool, stride, "valid")
    _, _, _, geo, y_shape = geometry(case)
    dy = rng.standard_normal(y_shape).astype(np.float32)
    saved = _core.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            _core.set_num_threads(threads)
            y, am = np.empty(y_shape, np.float32), np.empty(y_shape, np.int32)
            _core.max_pool2d_forward(y, am, x, *geo)
            dx = np.empty_like(x)
            _core.max_pool2d_backward(dx, dy, am, *geo)
            ya, dxa = np.empty(y_shape, np.float32), np.empty_like(x)
            _core.avg_pool2d_forward(ya, x, *geo)
            _core.avg_pool2d_backward(dxa, dy, *geo)
            results.append((y, am, dx, ya, dxa))
    finally:
        _core.set_num_threads(saved)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
