"""conv2d forward/backward (fast im2col+GEMM path and naive loops) against the float64 reference."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from gradcheck import assert_gradient

from cnnfast import _core
from cnnfast.ops.conv import conv2d, conv2d_backward, conv2d_geometry
from cnnfast.shapes import conv_padding, pair

U32 = 2.0**-24  # unit roundoff of float32


def assert_sum_close(got, want, abs_terms, factor=32):
    """|got - want| <= factor * u * sum(|terms|) elementwise.

    A float32 sum of n terms is off by at most ~n*u*sum|terms| (worst case); blocked GEMM
    accumulation with random-sign data stays near u*sum|terms|, so 32u leaves ample margin while
    still catching a single wrong or missing term (which is off by ~|term| >> 32u*sum).
    `abs_terms` is the reference evaluated on absolute values, i.e. sum|terms| per element.
    """
    got = np.asarray(got, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.all(np.isfinite(got))
    err = np.abs(got - want)
    bound = factor * U32 * abs_terms + 1e-30
    worst = np.unravel_index(np.argmax(err / bound), err.shape)
    assert np.all(err <= bound), (
        f"max error/bound {err[worst] / bound[worst]:.3g} at {worst}: got {got[worst]}, "
        f"want {want[worst]}"
    )


def geometry(case):
    """(pads per side for the reference, strides, (pad_top, pad_left), (OH, OW)) of a case."""
    _, H, W, _, KH, KW, _, strides, padding, _ = case
    sh, sw = pair(strides, "strides")
    if isinstance(padding, str):
        ph = pw = padding
    else:
        ph, pw = pair(padding, "padding")
    t, b, OH = conv_padding(H, KH, sh, ph)
    le, r, OW = conv_padding(W, KW, sw, pw)
    return ((t, b), (le, r)), (sh, sw), (t, le), (OH, OW)


def make_inputs(case, rng):
    N, H, W, C, KH, KW, K, _, _, groups = case
    x = rng.standard_normal((N, H, W, C)).astype(np.float32)
    w = rng.standard_normal((KH, KW, C // groups, K)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32)
    return x, w, b


# (N, H, W, C, KH, KW, K, strides, padding, groups)
HAND_CASES = [
    (2, 5, 6, 4, 1, 1, 6, 1, "valid", 1),  # 1x1: plain GEMM, no im2col
    (3, 4, 5, 8, 1, 1, 6, 1, "valid", 2),  # grouped 1x1: strided sub-GEMMs on x itself
    (2, 7, 7, 3, 1, 1, 5, 2, "valid", 1),  # 1x1 strided: needs im2col
    (2, 4, 3, 5, 4, 3, 7, 1, "valid", 1),  # kernel covers the input: x is the column matrix
    (2, 4, 3, 4, 4, 3, 6, 1, "valid", 2),  # same, grouped: im2col path
    (1, 7, 7, 2, 3, 3, 3, 3, "valid", 1),  # (7-3)/3 inexact: last input row/col ignored
    (2, 8, 9, 3, 3, 3, 4, 2, "same", 1),  # same with stride: ceil(n/s) outputs
    (3, 6, 5, 3, 2, 2, 2, 1, "same", 1),  # even kernel: extra pad at bottom/right
    (2, 9, 10, 5, 2, 5, 3, (2, 1), (1, 2), 1),  # rectangular kernel, explicit pair padding
    (1, 6, 6, 4, 3, 3, 8, 2, 1, 4),  # depthwise-style: C/groups = 1, explicit int padding
    (5, 3, 3, 7, 3, 3, 5, 1, "same", 1),  # odd channels, batch 5
    (2, 13, 13, 64, 3, 3, 64, 1, "valid", 1),  # Keras-CNN conv2 shape, small batch
    (1, 1, 1, 3, 1, 1, 2, 1, "valid", 1),  # 1x1 image
    (2, 5, 5, 6, 5, 5, 4, 3, 2, 2),  # padding 2 on a 5x5 kernel with stride 3, groups 2
]


def random_cases(count, seed):
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        groups = int(rng.choice([1, 1, 2, 4]))
        C = groups * int(rng.integers(1, 5))
        K = groups * int(rng.integers(1, 4))
        N = int(rng.integers(1, 6))
        H, W = (int(v) for v in rng.integers(1, 12, size=2))
        KH, KW = (int(v) for v in rng.integers(1, 5, size=2))
        strides = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        padding = [
            "valid",
            "same",
            int(rng.integers(0, 3)),
            (int(rng.integers(0, 3)), int(rng.integers(0, 3))),
        ][int(rng.integers(0, 4))]
        case = (N, H, W, C, KH, KW, K, strides, padding, groups)
        try:
            conv2d_geometry((N, H, W, C), (KH, KW, C // groups, K), strides, padding, groups)
        except ValueError:
            continue  # kernel larger than the padded input, or padding >= kernel
        cases.append(case)
    return cases


ALL_CASES = HAND_CASES + random_cases(40, seed=7)


def core_forward(x, w, b, case, naive):
    _, strides, (pt, pl), (OH, OW) = geometry(case)
    y = np.full((x.shape[0], OH, OW, w.shape[3]), np.nan, np.float32)  # NaN: must be overwritten
    _core.conv2d_forward(y, x, w, b, *strides, pt, pl, case[-1], naive=naive)
    return y


def core_backward(x, w, dy, case, naive):
    _, strides, (pt, pl), _ = geometry(case)
    dx = np.full_like(x, np.nan)
    dw = np.full_like(w, np.nan)
    db = np.full(w.shape[3], np.nan, np.float32)
    _core.conv2d_backward_data(dx, dy, w, *strides, pt, pl, case[-1], naive=naive)
    _core.conv2d_backward_weights(dw, db, x, dy, *strides, pt, pl, case[-1], naive=naive)
    return dx, dw, db


@pytest.mark.parametrize("naive", [False, True], ids=["fast", "naive"])
@pytest.mark.parametrize("case", ALL_CASES, ids=str)
def test_conv2d_forward_matches_reference(case, naive, rng):
    x, w, b = make_inputs(case, rng)
    pads, strides, _, _ = geometry(case)
    groups = case[-1]
    want = ref.conv2d_forward(x, w, b, strides, pads, groups)
    abs_terms = ref.conv2d_forward(np.abs(x), np.abs(w), np.abs(b), strides, pads, groups)
    assert_sum_close(core_forward(x, w, b, case, naive), want, abs_terms)
    # Without bias too, and through the public op.
    want_nb = ref.conv2d_forward(x, w, None, strides, pads, groups)
    assert_sum_close(core_forward(x, w, None, case, naive), want_nb, abs_terms)
    if not naive:
        _, _, _, _, _, _, _, st, padding, _ = case
        got = conv2d(x, w, b, strides=st, padding=padding, groups=groups)
        assert_sum_close(got, want, abs_terms)


@pytest.mark.parametrize("naive", [False, True], ids=["fast", "naive"])
@pytest.mark.parametrize("case", ALL_CASES, ids=str)
def test_conv2d_backward_matches_reference(case, naive, rng):
    x, w, _ = make_inputs(case, rng)
    pads, strides, _, (OH, OW) = geometry(case)
    groups = case[-1]
    dy = rng.standard_normal((x.shape[0], OH, OW, w.shape[3])).astype(np.float32)
    want = ref.conv2d_backward(x, w, dy, strides, pads, groups)
    abs_terms = ref.conv2d_backward(np.abs(x), np.abs(w), np.abs(dy), strides, pads, groups)
    got = core_backward(x, w, dy, case, naive)
    for g, wnt, a in zip(got, want, abs_terms):
        assert_sum_close(g, wnt, a)
    if not naive:
        _, _, _, _, _, _, _, st, padding, _ = case
        got = conv2d_backward(x, w, dy, strides=st, padding=padding, groups=groups)
        for g, wnt, a in zip(got, want, abs_terms):
            assert_sum_close(g, wnt, a)


@pytest.mark.parametrize("threads", [2, 3])
def test_conv2d_chunked_batch_matches_reference(threads, rng):
    # Big enough that the column workspace is split into several chunks, with chunk borders
    # falling inside images (so im2col/col2im and the dw accumulation across chunks are tested).
    # With 3 threads the 11 row blocks are too few to balance, so forward/dw use shared chunks
    # too (2 of them); with 2 threads they use per-thread blocks.
    case = (3, 40, 40, 64, 3, 3, 16, 1, "same", 1)
    _, strides, (pt, pl), (OH, OW) = geometry(case)
    ws = _core.conv2d_workspace_size(3, 40, 40, 64, 3, 3, 16, OH, OW, 1, 1, pt, pl, 1)
    assert ws < 3 * OH * OW * 3 * 3 * 64, "case no longer exercises several chunks"
    x, w, b = make_inputs(case, rng)
    pads = geometry(case)[0]
    dy = rng.standard_normal((3, OH, OW, 16)).astype(np.float32)
    _core.set_num_threads(threads)
    try:
        y = core_forward(x, w, b, case, False)
        got = core_backward(x, w, dy, case, False)
    finally:
        _core.set_num_threads(0)
    assert_sum_close(
        y,
        ref.conv2d_forward(x, w, b, strides, pads),
        ref.conv2d_forward(np.abs(x), np.abs(w), np.abs(b), strides, pads),
    )
    want = ref.conv2d_backward(x, w, dy, strides, pads)
    abs_terms = ref.conv2d_backward(np.abs(x), np.abs(w), np.abs(dy), strides, pads)
    for g, wnt, a in zip(got, want, abs_terms):
        assert_sum_close(g, wnt, a)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize(
    "case",
    [
        # With 2 threads: per-thread row blocks for forward/dw, whole images per thread for dx.
        (12, 24, 24, 32, 3, 3, 8, 1, "same", 1),
        # Too few blocks and images to balance: shared chunks with threaded im2col/col2im.
        (3, 24, 24, 32, 3, 3, 8, 1, "same", 1),
        (5, 17, 19, 8, 3, 2, 4, (2, 1), "valid", 2),
    ],
    ids=str,
)
def test_conv2d_any_thread_count_matches_reference(case, threads, rng):
    x, w, b = make_inputs(case, rng)
    pads, strides, _, (OH, OW) = geometry(case)
    groups = case[-1]
    dy = rng.standard_normal((x.shape[0], OH, OW, w.shape[3])).astype(np.float32)
    _core.set_num_threads(threads)
    try:
        y = core_forward(x, w, b, case, False)
        got = core_backward(x, w, dy, case, False)
    finally:
        _core.set_num_threads(0)
    assert_sum_close(
        y,
        ref.conv2d_forward(x, w, b, strides, pads, groups),
        ref.conv2d_forward(np.abs(x), np.abs(w), np.abs(b), strides, pads, groups),
    )
    want = ref.conv2d_backward(x, w, dy, strides, pads, groups)
    abs_terms = ref.conv2d_backward(np.abs(x), np.abs(w), np.abs(dy), strides, pads, groups)
    for g, wnt, a in zip(got, want, abs_terms):
        assert_sum_close(g, wnt, a)


def test_conv2d_same_padding_puts_extra_row_at_bottom_right():
    # 4x4 input, 2x2 kernel, "same": total padding 1 per axis, all of it after (TensorFlow).
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    w = np.ones((2, 2, 1, 1), np.float32)
    y = conv2d(x, w, padding="same")
    want = ref.conv2d_forward(x, w, pads=((0, 1), (0, 1)))
    np.testing.assert_array_equal(y, want)  # small integer sums are exact in float32
    assert y[0, 3, 3, 0] == 15.0  # bottom-right output sees only x[3, 3]


def test_conv2d_zero_batch():
    x = np.zeros((0, 5, 5, 3), np.float32)
    w = np.ones((3, 3, 3, 2), np.float32)
    assert conv2d(x, w).shape == (0, 3, 3, 2)
    dx, dw, db = conv2d_backward(x, w, np.zeros((0, 3, 3, 2), np.float32))
    assert dx.shape == x.shape and not dw.any() and not db.any()


@pytest.mark.parametrize(
    "case",
    [
        (2, 5, 5, 3, 3, 3, 4, 1, "same", 1),
        (2, 6, 7, 4, 2, 3, 4, (2, 1), "valid", 2),
        (1, 4, 4, 2, 1, 1, 3, 1, "valid", 1),
    ],
    ids=str,
)
def test_conv2d_gradients_match_finite_differences(case, rng):
    x, w, b = make_inputs(case, rng)
    _, _, _, _, _, _, _, strides, padding, groups = case
    OH, OW = geometry(case)[3]
    r = rng.standard_normal((x.shape[0], OH, OW, w.shape[3]))  # loss = sum(y * r)
    x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))

    def loss():
        y = conv2d(x64, w64, b64, strides=strides, padding=padding, groups=groups)
        return float(np.sum(y.astype(np.float64) * r))

    dx, dw, db = conv2d_backward(x, w, r, strides=strides, padding=padding, groups=groups)
    # Default gradcheck tolerances (rtol 2e-2, atol 2e-3): see tests/gradcheck.py.
    assert_gradient(loss, x64, dx, max_points=32)
    assert_gradient(loss, w64, dw, max_points=32)
    assert_gradient(loss, b64, db)


# ---- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x_shape, w_shape, kwargs, match",
    [
        ((5, 5, 3), (3, 3, 3, 4), {}, r"rank 4.*\(5, 5, 3\)"),
        ((1, 5, 5, 3), (3, 3, 4), {}, r"rank 4.*\(3, 3, 4\)"),
        ((1, 5, 5, 3), (3, 3, 2, 4), {}, r"conv2d.*\(1, 5, 5, 3\).*\(3, 3, 2, 4\)"),
        ((1, 2, 5, 3), (3, 3, 3, 4), {}, r"conv2d.*\(1, 2, 5, 3\).*larger"),
        ((1, 5, 5, 3), (3, 3, 3, 4), {"strides": 0}, r"conv2d.*\(1, 5, 5, 3\).*positive"),
        ((1, 5, 5, 3), (3, 3, 3, 4), {"strides": (1, 0)}, r"conv2d.*positive"),
        ((1, 5, 5, 4), (3, 3, 2, 3), {"groups": 2}, r"conv2d.*groups 2 must divide"),
        ((1, 5, 5, 4), (3, 3, 4, 4), {"groups": 0}, r"conv2d.*groups"),
        ((1, 5, 5, 3), (3, 3, 3, 4), {"padding": 3}, r"conv2d.*smaller than the kernel"),
        ((1, 5, 5, 3), (3, 3, 3, 4), {"padding": "full"}, r"conv2d.*padding"),
        ((1, 5, 5, 3), (3, 3, 3, 4), {"padding": -1}, r"conv2d.*non-negative"),
        ((1, 0, 5, 3), (3, 3, 3, 4), {}, r"conv2d.*positive"),
    ],
)
def test_conv2d_rejects_bad_arguments(x_shape, w_shape, kwargs, match):
    x = np.zeros(x_shape, np.float32)
    w = np.zeros(w_shape, np.float32)
    with pytest.raises(ValueError, match=match):
        conv2d(x, w, **kwargs)


def test_conv2d_rejects_bad_bias_dy_and_dtypes():
    x = np.zeros((1, 5, 5, 3), np.float32)
    w = np.zeros((3, 3, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"conv2d: b must have shape \(4,\)"):
        conv2d(x, w, np.zeros(3))
    with pytest.raises(ValueError, match=r"conv2d_backward: dy must have shape \(1, 3, 3, 4\)"):
        conv2d_backward(x, w, np.zeros((1, 3, 3, 5)))
    with pytest.raises(ValueError, match="real numeric"):
        conv2d(x.astype(np.complex64), w)
    with pytest.raises(ValueError, match="real numeric"):
        conv2d(x.astype(bool), w)
    # Integer inputs are converted.
    assert conv2d(x.astype(np.int32), w).dtype == np.float32


def test_core_conv2d_checks_buffers():
    x = np.zeros((2, 5, 5, 3), np.float32)
    w = np.zeros((3, 3, 3, 4), np.float32)
    y = np.zeros((2, 3, 3, 4), np.float32)
    with pytest.raises(ValueError, match="expected dtype float32"):
        _core.conv2d_forward(y, x.astype(np.float64), w, None, 1, 1, 0, 0, 1)
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.conv2d_forward(y, np.asfortranarray(x), w, None, 1, 1, 0, 0, 1)
    # Output height 3..5 fits 5 rows with an implied bottom padding of 0..2; 6 does not.
    with pytest.raises(ValueError, match=r"height output size 6 does not fit.*between 3 and 5"):
        _core.conv2d_forward(np.zeros((2, 6, 3, 4), np.float32), x, w, None, 1, 1, 0, 0, 1)
    with pytest.raises(ValueError, match=r"width output size 2 does not fit"):
        _core.conv2d_forward(np.zeros((2, 3, 2, 4), np.float32), x, w, None, 1, 1, 0, 0, 1)
    with pytest.raises(ValueError, match=r"y must be \(N, OH, OW, K\)"):
        _core.conv2d_forward(np.zeros((1, 3, 3, 4), np.float32), x, w, None, 1, 1, 0, 0, 1)
    with pytest.raises(ValueError, match="padding must be in"):
        _core.conv2d_forward(y, x, w, None, 1, 1, 3, 0, 1)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        _core.conv2d_forward(y, x, w, None, 0, 1, 0, 0, 1)
    with pytest.raises(ValueError, match=r"b: expected shape \(4,\)"):
        _core.conv2d_forward(y, x, w, np.zeros(3, np.float32), 1, 1, 0, 0, 1)
    with pytest.raises(ValueError, match="output y overlaps input x"):
        y_over_x = x.reshape(-1)[: y.size].reshape(y.shape)  # a view into x's memory
        _core.conv2d_forward(y_over_x, x, w, None, 1, 1, 0, 0, 1)
    with pytest.raises(ValueError, match="read-only"):
        y.setflags(write=False)
        _core.conv2d_forward(y, x, w, None, 1, 1, 0, 0, 1)
