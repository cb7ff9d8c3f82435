"""Losses (fused softmax cross-entropy, categorical cross-entropy, MSE) against the reference."""

from __future__ import annotations

import numpy as np
import pytest
import reference as R
from gradcheck import assert_gradient

from cnnfast import _core
from cnnfast.ops import activation as A
from cnnfast.ops import loss as L

# (N, C): single row, odd sizes, > 32K elements (several fixed row blocks, threaded), and rows
# wider than the kernel's 2048-element softmax batches (per-row path).
SHAPES = [(1, 1), (1, 2), (7, 3), (33, 10), (4000, 10), (64, 1000), (9, 4099)]


def _labels(n, c, rng):
    idx = rng.integers(0, c, n)
    return idx.astype(np.int32), R.one_hot(idx, c).astype(np.float32)


def _soft_labels(n, c, rng):
    y = rng.uniform(0.0, 1.0, (n, c))
    return (y / y.sum(axis=1, keepdims=True)).astype(np.float32)


# Loss: log-softmax from float32 logits in double with a float32 row sum of exp (relative
# error ~C * 2^-24 / sqrt(C) -> ~1e-6 of log(s)); 1e-6 relative plus 1e-6 absolute covers it.
LOSS_RTOL, LOSS_ATOL = 1e-6, 1e-6


def _assert_dlogits_close(got, p_ref, ref, n):
    """dlogits = (p - y)/N from float32 p: p carries the softmax error (2e-5 relative, from
    rounding x - max in float32, see test_activation) and p - y, rounded to float32, adds up to
    ulp(1)/2 ~ 6e-8 where p and y cancel; the bound is that, divided by N, plus two float32
    roundings (2^-23 relative) of the product with the rounded 1/N."""
    bound = (2e-5 * np.abs(p_ref) + 1e-7) / n + 2.4e-7 * np.abs(ref)
    bad = np.abs(got - ref) > bound
    assert not bad.any(), (got[bad][:5], ref[bad][:5])


def _check_one_hot_and_soft_labels(logits, onehot, rng):
    """Loss and dlogits against the reference for the one-hot labels and for soft labels."""
    n, c = logits.shape
    for labels in (onehot, _soft_labels(n, c, rng)):
        loss, dlogits = L.softmax_cross_entropy(logits, labels)
        rloss, rd = R.softmax_cross_entropy(logits, labels)
        np.testing.assert_allclose(loss, rloss, rtol=LOSS_RTOL, atol=LOSS_ATOL)
        _assert_dlogits_close(dlogits, R.softmax(logits), rd, n)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("scale", [1.0, 20.0])
def test_softmax_xent_matches_reference(shape, scale, rng):
    n, c = shape
    logits = (rng.standard_normal(shape) * scale).astype(np.float32)
    _idx, onehot = _labels(n, c, rng)
    _check_one_hot_and_soft_labels(logits, onehot, rng)


# The fused rows are compiled once per ISA (with exp, the sums and the output pass): each path
# must meet the reference tolerances above and keep the exact identities, row tails included
# (C = 1, 10, 17 and 1000 against vectors of 4, 8 and 16 floats).
@pytest.mark.parametrize("shape", [(5, 1), (33, 10), (7, 17), (64, 1000)])
def test_softmax_xent_on_every_simd_path(shape, simd_path, rng):
    n, c = shape
    logits = (rng.standard_normal(shape) * 8).astype(np.float32)
    idx, onehot = _labels(n, c, rng)
    _check_one_hot_and_soft_labels(logits, onehot, rng)
    loss_i, d_i = L.sparse_softmax_cross_entropy(logits, idx)
    loss_f, d_f = L.softmax_cross_entropy(logits, onehot)
    assert loss_i == loss_f
    np.testing.assert_array_equal(d_i, d_f)
    probs, dl = np.empty_like(logits), np.empty_like(logits)
    assert _core.softmax_xent(dl, probs, logits, idx) == loss_i
    np.testing.assert_array_equal(dl, d_i)  # the same with or without probs written
    np.testing.assert_array_equal(probs, A.softmax(logits))


@pytest.mark.parametrize("shape", SHAPES)
def test_int_and_one_hot_labels_agree_exactly(shape, rng):
    n, c = shape
    logits = (rng.standard_normal(shape) * 5).astype(np.float32)
    idx, onehot = _labels(n, c, rng)
    loss_i, d_i = L.sparse_softmax_cross_entropy(logits, idx)
    loss_f, d_f = L.softmax_cross_entropy(logits, onehot)
    # Zero labels add exact zeros to the same double sums: bit-identical.
    assert loss_i == loss_f
    np.testing.assert_array_equal(d_i, d_f)
    # Any integer dtype, and integral floats, are accepted by the Python op.
    assert L.sparse_softmax_cross_entropy(logits, idx.astype(np.int64))[0] == loss_i
    assert L.sparse_softmax_cross_entropy(logits, idx.astype(np.float64))[0] == loss_i


@pytest.mark.parametrize("c", [12, 4099])
def test_softmax_xent_outputs_are_optional_and_probs_match_softmax(c, rng):
    logits = (rng.standard_normal((50, c)) * 4).astype(np.float32)
    idx, onehot = _labels(50, c, rng)
    loss_only = _core.softmax_xent(None, None, logits, idx)
    probs = np.empty_like(logits)
    dl = np.empty_like(logits)
    assert _core.softmax_xent(dl, probs, logits, idx) == loss_only
    np.testing.assert_array_equal(probs, A.softmax(logits))  # same kernels, same rounding
    np.testing.assert_array_equal(dl, L.sparse_softmax_cross_entropy(logits, idx)[1])
    # dlogits may overwrite the logits buffer
    buf = logits.copy()
    assert _core.softmax_xent(buf, None, buf, onehot) == loss_only
    np.testing.assert_array_equal(buf, dl)
    # ... and probs may too
    buf = logits.copy()
    assert _core.softmax_xent(dl, buf, buf, idx) == loss_only
    np.testing.assert_array_equal(buf, probs)


def test_softmax_xent_clips_like_keras():
    # Row 0: p(label) ~ 1 -> loss -log(1 - 1e-7); row 1: p(label) = e^-200 -> -log(1e-7).
    logits = np.array([[100.0, -100.0, -100.0], [100.0, -100.0, 0.0]], np.float32)
    idx = np.array([0, 1], np.int32)
    loss, d = L.sparse_softmax_cross_entropy(logits, idx)
    expect = (-np.log(np.float64(np.float32(1 - 1e-7))) - np.log(np.float64(np.float32(1e-7)))) / 2
    np.testing.assert_allclose(loss, expect, rtol=1e-12)
    assert np.all(np.isfinite(d))
    # The gradient ignores the clip: (p - y) / N.
    np.testing.assert_allclose(d, (R.softmax(logits) - R.one_hot(idx, 3)) / 2, atol=1e-7)


def test_softmax_xent_finite_differences(rng):
    logits = rng.standard_normal((4, 5)) * 2
    labels = _soft_labels(4, 5, rng)
    _, d = L.softmax_cross_entropy(logits, labels)
    assert_gradient(lambda: L.softmax_cross_entropy(logits, labels)[0], logits, d)


@pytest.mark.parametrize("shape", SHAPES)
def test_categorical_crossentropy_matches_reference(shape, rng):
    n, c = shape
    probs = A.softmax(rng.standard_normal(shape) * 3)
    idx, onehot = _labels(n, c, rng)
    loss, d = L.categorical_crossentropy(probs, onehot)
    rloss, rd = R.categorical_crossentropy(probs, onehot)
    # All in double from float32 inputs; one rounding of each output.
    np.testing.assert_allclose(loss, rloss, rtol=1e-12)
    np.testing.assert_allclose(d, rd, rtol=1e-6, atol=1e-30)
    loss_s, d_s = L.sparse_categorical_crossentropy(probs, idx)
    assert loss_s == loss
    np.testing.assert_array_equal(d_s, d)


def test_categorical_crossentropy_renormalises_and_clips(rng):
    # Unnormalised rows, exact zeros (clipped to 1e-7), a probability of 1 (clipped to 1 - 1e-7).
    probs = np.array([[0.2, 0.6, 0.0, 1.2], [0.0, 1.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]],
                     np.float32)
    labels = np.array([[0.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]],
                      np.float32)
    loss, d = L.categorical_crossentropy(probs, labels)
    rloss, rd = R.categorical_crossentropy(probs, labels)
    np.testing.assert_allclose(loss, rloss, rtol=1e-12)
    np.testing.assert_allclose(d, rd, rtol=1e-6, atol=1e-30)
    q = probs / probs.sum(1, keepdims=True)
    keras = -np.sum(labels * np.log(np.clip(q, np.float32(1e-7), np.float32(1 - 1e-7))), 1).mean()
    np.testing.assert_allclose(loss, keras, rtol=1e-6)  # Keras 3 formula written out
    assert np.all(d[1:] == 0.0)  # clipped entries carry no gradient


def test_categorical_crossentropy_finite_differences(rng):
    probs = rng.uniform(0.05, 1.0, (3, 5))  # unnormalised, well inside the clip range
    labels = _soft_labels(3, 5, rng)
    _, d = L.categorical_crossentropy(probs, labels)
    assert_gradient(lambda: L.categorical_crossentropy(probs, labels)[0], probs, d, eps=1e-3)


def test_softmax_then_categorical_equals_fused_gradient(rng):
    logits = (rng.standard_normal((16, 10)) * 2).astype(np.float32)
    labels = _soft_labels(16, 10, rng)
    p = A.softmax(logits)
    loss_c, dp = L.categorical_crossentropy(p, labels)
    loss_f, dl = L.softmax_cross_entropy(logits, labels)
    # Same loss up to float32 softmax rounding (~2e-6 relative of each log p).
    np.testing.assert_allclose(loss_c, loss_f, rtol=1e-5)
    # The chain through softmax gives (p - y)/N; dp = -y/(pN) + const is ~1/(pN) large, so the
    # cancellation in softmax_backward leaves ~1e-6 of max|dp * p| = max|y|/N.
    np.testing.assert_allclose(A.softmax_backward(p, dp), dl, atol=2e-6 / 16)


@pytest.mark.parametrize("shape", [(1,), (7, 3), (33, 10, 3), (100_003,)])
def test_mse_matches_reference(shape, rng):
    pred = rng.standard_normal(shape).astype(np.float32)
    target = rng.standard_normal(shape).astype(np.float32)
    loss, d = L.mse(pred, target)
    rloss, rd = R.mse(pred, target)
    np.testing.assert_allclose(loss, rloss, rtol=1e-12)  # double accumulation
    # (pred - target) rounded in float32, times 2/n rounded: 2 roundings.
    np.testing.assert_allclose(d, rd, rtol=3e-7, atol=1e-30)
    assert_gradient(lambda: L.mse(pred, target)[0], pred, d, max_points=16)
    buf = pred.copy()
    assert _core.mse(buf, buf, target) == loss  # dpred may overwrite pred
    np.testing.assert_array_equal(buf, d)


def test_losses_identical_for_1_and_2_threads(rng, restore_threads):
    logits = (rng.standard_normal((5000, 10)) * 3).astype(np.float32)
    idx, onehot = _labels(5000, 10, rng)
    pred = rng.standard_normal(100_003).astype(np.float32)
    target = rng.standard_normal(100_003).astype(np.float32)
    out = []
    for t in (1, 2):
        _core.set_num_threads(t)
        out.append((L.sparse_softmax_cross_entropy(logits, idx),
                    L.categorical_crossentropy(A.softmax(logits), onehot), L.mse(pred, target)))
    for a, b in zip(out[0], out[1]):
        assert a[0] == b[0]
        np.testing.assert_array_equal(a[1], b[1])


def test_loss_errors():
    logits = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"label 4 at row 1 is out of range \[0, 4\)"):
        _core.softmax_xent(None, None, logits, np.array([0, 4, 1], np.int32))
    with pytest.raises(ValueError, match="out of range"):
        _core.softmax_xent(None, None, logits, np.array([0, -1, 1], np.int32))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 4\)"):
        L.sparse_softmax_cross_entropy(logits, [0, 1, 7])
    with pytest.raises(ValueError, match=r"labels must be in \[0, 4\)"):
        L.sparse_categorical_crossentropy(logits + 0.25, [0, 1, 2**40])
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\)"):
        L.sparse_softmax_cross_entropy(logits, [0, 1])
    with pytest.raises(ValueError, match="integral"):
        L.sparse_softmax_cross_entropy(logits, [0.5, 1, 2])
    with pytest.raises(ValueError, match=r"labels \(3, 5\) must have the shape .*\(3, 4\)"):
        L.softmax_cross_entropy(logits, np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"expected shape \(3, 4\), got \(4, 3\)"):
        _core.softmax_xent(None, None, logits, np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="int32"):  # int64 labels must be converted first
        _core.softmax_xent(None, None, logits, np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="dlogits"):
        _core.softmax_xent(np.zeros((3, 5), np.float32), None, logits, np.zeros(3, np.int32))
    with pytest.raises(ValueError, match="different arrays"):
        buf = np.zeros((3, 4), np.float32)
        _core.softmax_xent(buf, buf, logits, np.zeros(3, np.int32))
    with pytest.raises(ValueError, match=r"non-empty \(N, C\)"):
        L.softmax_cross_entropy(np.zeros((0, 4)), np.zeros((0, 4)))
    with pytest.raises(ValueError, match=r"categorical_crossentropy: labels \(3,\)"):
        L.categorical_crossentropy(logits, np.zeros(3))
    with pytest.raises(ValueError, match=r"mse: pred \(3, 4\) and target \(4, 3\)"):
        L.mse(logits, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="mse target"):
        _core.mse(None, logits, np.zeros((3, 5), np.float32))
