"""Keras SGD and Adam steps against the float64 reference over several steps."""

from __future__ import annotations

import numpy as np
import pytest
import reference as R

from cnnfast import _core
from cnnfast.ops import optim as O

SIZES = [1, 7, 100_003]  # 1, odd, and above the 32K threading grain
STEPS = 6
# Each step does a handful of float32 operations on w (rounding 2^-24 relative each) whose
# operands are O(1): |w0| and the accumulated updates can reach ~1 before cancelling to a final w
# near 0. Over 6 steps that is <~16 roundings of O(1) values, 16 * 2^-24 ~ 1e-6 absolute, and a
# few roundings relative to w itself.
RTOL, ATOL = 2e-6, 1e-6


def _problem(n, rng):
    w = rng.standard_normal(n).astype(np.float32)
    grads = [rng.standard_normal(n).astype(np.float32) for _ in range(STEPS)]
    return w, grads


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_sgd_matches_keras_reference(n, momentum, nesterov, weight_decay, rng):
    w, grads = _problem(n, rng)
    lr = 0.05
    vel = np.zeros(n, np.float32) if momentum else None
    rw, rv = w.astype(np.float64), np.zeros(n)
    for g in grads:
        assert O.sgd_update(w, g, vel, lr=lr, momentum=momentum, nesterov=nesterov,
                            weight_decay=weight_decay) is None
        rw, rv = R.sgd_step(rw, g, rv, lr, momentum, nesterov, weight_decay)
    np.testing.assert_allclose(w, rw, rtol=RTOL, atol=ATOL)
    if momentum:
        np.testing.assert_allclose(vel, rv, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@pytest.mark.parametrize("lr,beta_1,beta_2,epsilon", [(1e-3, 0.9, 0.999, 1e-7),
                                                      (0.1, 0.5, 0.9, 1e-3)])
def test_adam_matches_keras_reference(n, weight_decay, lr, beta_1, beta_2, epsilon, rng):
    w, grads = _problem(n, rng)
    m, v = np.zeros(n, np.float32), np.zeros(n, np.float32)
    rw, rm, rv = w.astype(np.float64), np.zeros(n), np.zeros(n)
    for t, g in enumerate(grads, start=1):
        O.adam_update(w, g, m, v, t, lr=lr, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                      weight_decay=weight_decay)
        rw, rm, rv = R.adam_step(rw, g, rm, rv, t, lr, beta_1, beta_2, epsilon, weight_decay)
    # m, v: a few float32 roundings per step; w: see RTOL/ATOL (update m/(sqrt v + eps) is
    # O(1) times lr, its relative error a few 2^-24).
    np.testing.assert_allclose(m, rm, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(v, rv, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(w, rw, rtol=RTOL, atol=ATOL)


def test_adam_first_step_moves_each_weight_by_lr():
    # With m = v = 0, step 1 gives m/(sqrt(v)+eps) = g/(|g|+eps'): every weight moves by ~lr.
    w = np.zeros(5, np.float32)
    g = np.array([3.0, -0.5, 1e-2, -20.0, 1.0], np.float32)
    O.adam_update(w, g, np.zeros(5, np.float32), np.zeros(5, np.float32), step=1)
    # Keras adds eps to sqrt(v) = sqrt(1 - beta_2)|g|: relative shortfall eps / (0.0316 |g|),
    # 3.2e-4 for the smallest |g| = 1e-2.
    np.testing.assert_allclose(w, -1e-3 * np.sign(g), rtol=4e-4)


def test_sgd_defaults_are_keras_defaults():
    w = np.ones(3, np.float32)
    O.sgd_update(w, np.ones(3, np.float32))
    np.testing.assert_array_equal(w, np.float32(1) - np.float32(0.01))


def test_optimizers_identical_for_1_and_2_threads(rng, restore_threads):
    w0, grads = _problem(100_003, rng)
    out = []
    for t in (1, 2):
        _core.set_num_threads(t)
        w, m, v, vel = w0.copy(), np.zeros_like(w0), np.zeros_like(w0), np.zeros_like(w0)
        w2 = w0.copy()
        for step, g in enumerate(grads, start=1):
            O.adam_update(w, g, m, v, step, weight_decay=0.01)
            O.sgd_update(w2, g, vel, momentum=0.9, nesterov=True)
        out.append((w, m, v, w2, vel))
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)


def test_optimizer_errors():
    w = np.zeros((2, 3), np.float32)
    g = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="w must be a C-contiguous writable float32"):
        O.sgd_update(np.zeros((2, 3)), g)
    with pytest.raises(ValueError, match="w must be a C-contiguous writable float32"):
        O.sgd_update(np.zeros((3, 2), np.float32).T, g)
    with pytest.raises(ValueError, match="w must be a C-contiguous writable float32"):
        O.sgd_update([1.0, 2.0], [1.0, 2.0])
    ro = np.zeros((2, 3), np.float32)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="writable"):
        O.adam_update(ro, g, w.copy(), w.copy(), 1)
    with pytest.raises(ValueError, match=r"g \(3, 2\) must have the shape of w \(2, 3\)"):
        O.sgd_update(w, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="momentum=0.9 needs a velocity"):
        O.sgd_update(w, g, None, momentum=0.9)
    with pytest.raises(ValueError, match="needs a velocity"):
        _core.sgd_update(w, g, None, 0.1, 0.9, False, 0.0)
    with pytest.raises(ValueError, match=r"velocity \(6,\) must have the shape of w"):
        O.sgd_update(w, g, np.zeros(6, np.float32), momentum=0.9)
    with pytest.raises(ValueError, match="step must be"):
        O.adam_update(w, g, w.copy(), w.copy(), 0)
    with pytest.raises(ValueError, match="step must be"):
        _core.adam_update(w, g, w.copy(), w.copy(), 0, 1e-3, 0.9, 0.999, 1e-7, 0.0)
    with pytest.raises(ValueError, match=r"adam_update v \(3,\) and w \(2, 3\)"):
        _core.adam_update(w, g, w.copy(), np.zeros(3, np.float32), 1, 1e-3, 0.9, 0.999, 1e-7, 0.0)
    with pytest.raises(ValueError, match=r"m \(2, 2\) must have the shape of w \(2, 3\)"):
        O.adam_update(w, g, np.zeros((2, 2), np.float32), w.copy(), 1)
