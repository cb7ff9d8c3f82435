"""The fused first block, Conv2D + ReLU + 2x2 max pooling, against the float64 reference."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from test_conv2d import assert_sum_close

import cnnfast as cf
from cnnfast import _core
from cnnfast import layers as L

VALID = ((0, 0), (0, 0))


def supported(N, H, W, C, KH, KW, K):
    return _core.conv2d_relu_maxpool_supported(N, H, W, C, KH, KW, K)


needs_fused = pytest.mark.skipif(not supported(1, 8, 8, 1, 3, 3, 8),
                                 reason="the fused kernels need AVX-512, which this CPU or build lacks")


def windows(z, PH, PW):
    """(N, PH, PW, K, 4): each pooled pixel's 2x2 window, positions in row-major order."""
    N, K = z.shape[0], z.shape[-1]
    return (z[:, :2 * PH, :2 * PW].reshape(N, PH, 2, PW, 2, K).transpose(0, 1, 3, 5, 2, 4)
            .reshape(N, PH, PW, K, 4))


def reference_block(x, w, b, dy, which=None):
    """y, which, dw, db of relu(conv) -> 2x2 max-pool in float64, plus |terms| bounds. The
    gradient is routed to `which` when given (the kernel's choice among near-ties), else to the
    float64 argmax."""
    z = ref.conv2d_forward(x, w, b, (1, 1), VALID)
    OH, OW = z.shape[1:3]
    PH, PW = OH // 2, OW // 2
    win = windows(np.maximum(z, 0.0), PH, PW)
    if which is None:
        which = win.argmax(-1)  # the first maximum on ties, as the kernel
    y = win.max(-1)
    g = np.zeros(win.shape)
    np.put_along_axis(g, which[..., None], (dy * (y > 0))[..., None], -1)
    dz = np.zeros(z.shape)
    dz[:, :2 * PH, :2 * PW] = (g.reshape(*g.shape[:4], 2, 2).transpose(0, 1, 4, 2, 5, 3)
                               .reshape(z.shape[0], 2 * PH, 2 * PW, z.shape[-1]))
    _, dw, db = ref.conv2d_backward(x, w, dz, (1, 1), VALID)
    abs_y = windows(ref.conv2d_forward(np.abs(x), np.abs(w), np.abs(b), (1, 1), VALID), PH, PW)
    _, adw, adb = ref.conv2d_backward(np.abs(x), w, np.abs(dz), (1, 1), VALID)
    return y, which, dw, db, abs_y.max(-1), adw, adb


# (N, H, W, C, KH, KW, K): the Keras MNIST CNN's first block, odd outputs (a dropped row and
# column), rectangular kernels, channel tails (K = 6, 20, 70 = 64 + 6: two column blocks) and
# several input channels.
CASES = [
    (3, 28, 28, 1, 3, 3, 64),
    (2, 9, 8, 3, 3, 3, 20),
    (2, 7, 6, 2, 2, 3, 70),
    (1, 5, 5, 5, 3, 3, 16),
    (4, 12, 11, 1, 5, 5, 6),
]


@needs_fused
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_fused_block_matches_reference(case, threads, rng, restore_threads):
    N, H, W, C, KH, KW, K = case
    x = rng.standard_normal((N, H, W, C)).astype(np.float32)
    w = rng.standard_normal((KH, KW, C, K)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32)
    PH, PW = (H - KH + 1) // 2, (W - KW + 1) // 2
    dy = rng.standard_normal((N, PH, PW, K)).astype(np.float32)
    y = np.full((N, PH, PW, K), np.nan, np.float32)
    which = np.full(y.shape, -1, np.int32)
    dw = np.full_like(w, np.nan)
    db = np.full(K, np.nan, np.float32)
    _core.set_num_threads(threads)
    _core.conv2d_relu_maxpool_forward(y, which, x, w, b)
    _core.conv2d_relu_maxpool_backward_weights(dw, db, x, dy, y, which)
    dw2 = np.empty_like(dw)
    _core.conv2d_relu_maxpool_backward_weights(dw2, None, x, dy, y, which)
    want_y, want_which, _, _, abs_y, _, _ = reference_block(x, w, b, dy)
    assert_sum_close(y, want_y, abs_y)
    # Positions may differ only where two window values are within rounding of each other
    # (the bound assert_sum_close allows each of them, twice).
    wins = windows(np.maximum(ref.conv2d_forward(x, w, b, (1, 1), VALID), 0.0), PH, PW)
    differ = which != want_which
    gap = np.abs(np.take_along_axis(wins, which[..., None], -1)[..., 0] - want_y)
    assert np.all(gap[differ] <= 64 * 2.0**-24 * abs_y[differ])
    # The gradients follow the kernel's positions.
    _, _, want_dw, want_db, _, abs_dw, abs_db = reference_block(x, w, b, dy, which)
    assert_sum_close(dw, want_dw, abs_dw)
    assert_sum_close(db, want_db, abs_db)
    np.testing.assert_array_equal(dw, dw2)  # static split: identical sums; db=None changes nothing


@needs_fused
def test_fused_block_ties_nan_and_dead_units():
    # All-negative windows: relu gives four zeros, the first position wins and gets no gradient.
    # A NaN input makes every window it reaches NaN (not silently zero).
    x = np.full((1, 4, 4, 1), -1.0, np.float32)
    w = np.ones((1, 1, 1, 2), np.float32)
    b = np.array([0.0, 3.0], np.float32)  # channel 0 dead, channel 1 = 2 everywhere (ties)
    x[0, 3, 3, 0] = np.nan
    y = np.empty((1, 2, 2, 2), np.float32)
    which = np.empty(y.shape, np.int32)
    _core.conv2d_relu_maxpool_forward(y, which, x, w, b)
    assert np.all(y[0, :, :, 0][[0, 0, 1], [0, 1, 0]] == 0) and np.isnan(y[0, 1, 1, 0])
    assert np.all(y[0, :, :, 1][[0, 0, 1], [0, 1, 0]] == 2) and np.isnan(y[0, 1, 1, 1])
    assert np.all(which[0, :, :, :][[0, 0, 1], [0, 1, 0]] == 0)
    dw = np.empty_like(w)
    db = np.empty(2, np.float32)
    dy = np.ones_like(y)
    _core.conv2d_relu_maxpool_backward_weights(dw, db, x, dy, y, which)
    # Channel 0: no live unit; channel 1: three live windows (NaN is not > 0). dw multiplies
    # the NaN input too (by a zero gradient), which stays NaN as in the unfused layers.
    np.testing.assert_array_equal(db, [0.0, 3.0])
    assert np.all(np.isnan(dw))
    x[0, 3, 3, 0] = -1.0
    _core.conv2d_relu_maxpool_forward(y, which, x, w, b)
    _core.conv2d_relu_maxpool_backward_weights(dw, db, x, dy, y, which)
    np.testing.assert_array_equal(db, [0.0, 4.0])
    np.testing.assert_array_equal(dw[0, 0, 0], [0.0, -4.0])  # each winning x is -1


@needs_fused
def test_fused_block_rejects_bad_shapes():
    x = np.zeros((2, 8, 8, 1), np.float32)
    w = np.zeros((3, 3, 1, 4), np.float32)
    y = np.zeros((2, 3, 3, 4), np.float32)
    which = np.zeros(y.shape, np.int32)
    with pytest.raises(ValueError, match=r"y: expected shape \(2, 3, 3, 4\), got \(2, 4, 3, 4\)"):
        _core.conv2d_relu_maxpool_forward(np.zeros((2, 4, 3, 4), np.float32), which, x, w, None)
    with pytest.raises(ValueError, match="kernel input channels"):
        _core.conv2d_relu_maxpool_forward(y, which, x, np.zeros((3, 3, 2, 4), np.float32), None)
    with pytest.raises(ValueError, match="which"):
        _core.conv2d_relu_maxpool_forward(y, np.zeros(y.shape, np.float32), x, w, None)
    with pytest.raises(ValueError, match="at least a 2x2 output"):
        _core.conv2d_relu_maxpool_forward(y, which, np.zeros((2, 3, 3, 1), np.float32), w, None)
    with pytest.raises(ValueError, match="db"):
        _core.conv2d_relu_maxpool_backward_weights(np.zeros_like(w), np.zeros(5, np.float32), x, y,
                                                   y, which)


def _block_model(padding="valid", activation="relu", pool=2, seed=0):
    cf.set_seed(seed)
    m = cf.Sequential([L.Input((12, 12, 1)), L.Conv2D(8, 3, padding=padding, activation=activation),
                       L.MaxPooling2D(pool), L.Conv2D(4, 3, activation="relu"), L.Flatten(),
                       L.Dense(3, activation="softmax")])
    m.compile(optimizer="sgd", loss="categorical_crossentropy")
    return m


def _head_fused(m) -> bool:
    """Whether the plan's builder fused the opening Conv2D + ReLU + max pool into one kernel."""
    return any("one conv+relu+max-pool kernel" in f for f in m._train_plan.fusions)


@needs_fused
def test_model_fuses_only_the_supported_first_block():
    assert _head_fused(_block_model())
    assert not _head_fused(_block_model(padding="same"))
    assert not _head_fused(_block_model(activation="tanh"))
    assert not _head_fused(_block_model(pool=3))
    m = cf.Sequential([L.Input((12, 12, 1)), L.Conv2D(8, 3, activation="relu"), L.AveragePooling2D(2),
                       L.Flatten(), L.Dense(3)])
    m.compile(optimizer="sgd", loss="mse")
    assert not _head_fused(m)
    # A frozen first convolution has no weight gradients for the fused backward to make.
    frozen = _block_model()
    frozen.layers[0].trainable = False
    frozen.compile(optimizer="sgd", loss="categorical_crossentropy")
    assert not _head_fused(frozen)


@needs_fused
def test_fused_model_trains_like_the_unfused_one(rng):
    # The plan runs the fused block; the Python walk, the reference, runs each layer on its own:
    # same loss, outputs and gradients up to float32 rounding (the fused dw sums in another
    # order).
    x = rng.standard_normal((16, 12, 12, 1)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 16)]
    fused, plain = _block_model(), _block_model()
    assert _head_fused(fused)
    plain._force_python_training = True
    results = []
    for m in (fused, plain):
        before = [w.copy() for w in m.get_weights()]
        loss = m.train_on_batch(x, y)
        # SGD, lr 0.01: the gradient is the weight change over -lr.
        grads = [(b - a) / -0.01 for a, b in zip(before, m.get_weights())]
        m.set_weights(before)
        out = m.predict(x, verbose=0)
        results.append((loss, out, grads))
    (l1, o1, g1), (l2, o2, g2) = results
    np.testing.assert_array_equal(o1, o2)  # the same weights, one inference plan
    # The fused kernel sums each convolution output in its own order: a few ulps per value,
    # carried through one more convolution and a dense layer; the loss, a mean of the logs of
    # the softmax outputs, moves by 1e-6 at most.
    np.testing.assert_allclose(l1, l2, rtol=1e-6)
    for a, b in zip(g1, g2):
        # Sums of a few hundred products of O(1) terms, and the division by lr amplifies the
        # float32 rounding of w - lr*g (|w| <= 1: 6e-8 / 0.01 = 6e-6): 1e-4 of the largest entry.
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * np.max(np.abs(b)) + 2e-5)
    # And training for a few steps follows the same path.
    for m in (fused, plain):
        for _ in range(3):
            m.train_on_batch(x, y)
    for a, b in zip(fused.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * np.max(np.abs(b)))
