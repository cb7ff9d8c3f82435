"""Inverted dropout: mask statistics, exact scaling, determinism, backward."""

from __future__ import annotations

import numpy as np
import pytest
import reference as R

from cnnfast import _core
from cnnfast.ops import noise as D


@pytest.fixture
def restore():
    yield
    _core.set_num_threads(0)
    _core.set_elementwise_simd_path("auto")


def _keep(rate: float) -> np.float32:
    # Keras: keep_prob = 1 - rate in double, applied to float32 tensors as float32(keep_prob).
    return np.float32(1.0 - rate)


@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5, 5, 2), (100_003,)])
def test_rate_zero_is_identity(shape, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    y, mask = D.dropout(x, 0.0, seed=3)
    np.testing.assert_array_equal(y, x)
    assert mask.dtype == np.uint8 and mask.shape == shape and np.all(mask == 1)


def test_rate_one_drops_everything(rng):
    x = rng.standard_normal(1000).astype(np.float32)
    y, mask = D.dropout(x, 1.0, seed=3)
    assert np.all(y == 0) and np.all(mask == 0)
    assert np.all(D.dropout_backward(np.ones(1000), mask, 1.0) == 0)


@pytest.mark.parametrize("rate", [0.1, 0.25, 0.5, 0.9])
@pytest.mark.parametrize("seed", [0, 1, 2**63 + 12345])
def test_mask_fraction_and_exact_scaling(rate, seed, rng):
    n = 200_003
    x = rng.standard_normal(n).astype(np.float32)
    y, mask = D.dropout(x, rate, seed)
    # Dropped count ~ Binomial(n, rate): sd = sqrt(rate (1 - rate) / n) <= 1.2e-3 of n; a 6 sd
    # bound fails with probability ~2e-9 for a fair hash (and the test is deterministic).
    sd = np.sqrt(rate * (1 - rate) / n)
    assert abs((mask == 0).mean() - rate) < 6 * sd
    # Neighbouring elements are independent: P(both kept) = (1 - rate)^2, same 6 sd bound.
    both = (mask[1:] & mask[:-1]).mean()
    q = (1 - rate) ** 2
    assert abs(both - q) < 6 * np.sqrt(q * (1 - q) / n)
    kept = mask == 1
    np.testing.assert_array_equal(y[kept], x[kept] / _keep(rate))  # one float32 division, exact
    assert np.all(y[~kept] == 0)


def test_same_seed_same_mask_other_seed_other_mask(rng):
    x = rng.standard_normal((4, 16, 16, 8)).astype(np.float32)
    y1, m1 = D.dropout(x, 0.5, seed=42)
    y2, m2 = D.dropout(x, 0.5, seed=42)
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(y1, y2)
    _, m3 = D.dropout(x, 0.5, seed=43)
    assert 0.4 < (m1 != m3).mean() < 0.6  # independent masks disagree on ~half the elements
    # The mask depends on (seed, flat index) only: a prefix of a longer input has the same mask.
    _, m4 = D.dropout(x.reshape(-1)[:1000], 0.5, seed=42)
    np.testing.assert_array_equal(m4, m1.reshape(-1)[:1000])


def test_identical_for_threads_and_simd_paths(rng, restore):
    x = rng.standard_normal(300_007).astype(np.float32)
    dy = rng.standard_normal(300_007).astype(np.float32)
    dy[::1000] = np.nan  # dropped elements give 0 even then; kept ones pass the NaN on
    results = []
    for threads in (1, 2):
        for path in ("baseline", "avx2", "avx512"):
            try:
                _core.set_elementwise_simd_path(path)
            except ValueError:
                continue  # not built or not supported by this CPU
            _core.set_num_threads(threads)
            y, m = D.dropout(x, 0.3, seed=7)
            results.append((y, m, D.dropout_backward(dy, m, 0.3)))
    y0, m0, dx0 = results[0]
    np.testing.assert_array_equal(dx0, np.where(m0 == 1, dy / _keep(0.3), np.float32(0)))
    for y, m, dx in results[1:]:
        np.testing.assert_array_equal(m, m0)
        np.testing.assert_array_equal(y, y0)
        np.testing.assert_array_equal(dx, dx0)


@pytest.mark.parametrize("n", [1, 9, 100_003])
def test_backward_uses_the_mask(n, rng):
    x = rng.standard_normal(n).astype(np.float32)
    dy = rng.standard_normal(n).astype(np.float32)
    y, mask = D.dropout(x, 0.4, seed=11)
    dx = D.dropout_backward(dy, mask, 0.4)
    np.testing.assert_array_equal(dx, np.where(mask == 1, dy / _keep(0.4), np.float32(0)))
    np.testing.assert_allclose(dx, R.dropout_backward(dy, mask, 0.4), rtol=1e-7)
    flipped = 1 - mask
    assert np.all((D.dropout_backward(dy, flipped, 0.4) != 0) == (flipped == 1) | (dy == 0))
    # Boolean masks are accepted by the Python op.
    np.testing.assert_array_equal(D.dropout_backward(dy, mask.astype(bool), 0.4), dx)
    # In place: dx may overwrite dy; y may overwrite x.
    buf = dy.copy()
    _core.dropout_backward(buf, buf, mask, 0.4)
    np.testing.assert_array_equal(buf, dx)
    xb, mb = x.copy(), np.empty(n, np.uint8)
    _core.dropout_forward(xb, mb, xb, 0.4, 11)
    np.testing.assert_array_equal(xb, y)
    np.testing.assert_array_equal(mb, mask)


def test_dropout_errors():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\]"):
        D.dropout(x, 1.5, seed=0)
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\]"):
        _core.dropout_forward(x.copy(), np.zeros((2, 3), np.uint8), x, -0.1, 0)
    with pytest.raises(ValueError, match="seed"):
        D.dropout(x, 0.5, seed=-1)
    with pytest.raises(ValueError, match=r"mask \(3, 2\) and x \(2, 3\)"):
        _core.dropout_forward(x.copy(), np.zeros((3, 2), np.uint8), x, 0.5, 0)
    with pytest.raises(ValueError, match="uint8"):
        _core.dropout_forward(x.copy(), np.zeros((2, 3), np.int8), x, 0.5, 0)
    with pytest.raises(ValueError, match=r"mask \(3,\) and dy \(2, 3\)"):
        D.dropout_backward(x, np.zeros(3, np.uint8), 0.5)
    with pytest.raises(ValueError, match=r"dropout_backward dx \(2, 2\) and dy \(2, 3\)"):
        _core.dropout_backward(np.zeros((2, 2), np.float32), x, np.zeros((2, 3), np.uint8), 0.5)
