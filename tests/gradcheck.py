"""Central finite-difference gradient checks.

The checked function maps float64 arrays to a scalar; kernels run in float32, so callers pass
a wrapper that casts. With float32 forward passes, eps = 1e-2 balances truncation error
(O(eps^2) * third derivative) against rounding (~1e-7 * |f| / eps), giving ~1e-3 relative
accuracy, which is why the default tolerances below are rtol 2e-2 / atol 2e-3.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def numerical_gradient(f: Callable[[], float], x: np.ndarray, eps: float = 1e-2,
                       max_points: int | None = 64, rng=None) -> tuple[np.ndarray, np.ndarray]:
    """Central differences of f() with respect to x (modified in place and restored).

    Checks at most `max_points` randomly chosen entries; returns (flat indices, gradients).
    """
    flat = x.reshape(-1)
    n = flat.size
    if max_points is None or max_points >= n:
        idx = np.arange(n)
    else:
        rng = rng or np.random.default_rng(0)
        idx = rng.choice(n, size=max_points, replace=False)
    grads = np.empty(len(idx))
    for k, i in enumerate(idx):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        grads[k] = (fp - fm) / (2 * eps)
    return idx, grads


def assert_gradient(f: Callable[[], float], x: np.ndarray, analytic: np.ndarray,
                    eps: float = 1e-2, rtol: float = 2e-2, atol: float = 2e-3,
                    max_points: int | None = 64) -> None:
    """Assert that `analytic` (same shape as x) matches central differences of f at x."""
    idx, num = numerical_gradient(f, x, eps=eps, max_points=max_points)
    got = np.asarray(analytic, dtype=np.float64).reshape(-1)[idx]
    np.testing.assert_allclose(got, num, rtol=rtol, atol=atol)
