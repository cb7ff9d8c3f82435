"""Central finite-difference gradient checks.

The checked function maps float64 arrays to a scalar; kernels run in float32, so callers pass
a wrapper that casts. With float32 forward passes, eps = 1e-2 balances truncation error
(O(eps^2) * third derivative) against rounding (~1e-7 * |f| / eps), giving ~1e-3 relative
accuracy, which is why the default tolerances below are rtol 2e-2 / atol 2e-3.
"""

from __future__ import annotations

from collections.abc import Callable

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
                    max_points: int | None = 64, skip_kinks: bool = True) -> None:
    """Assert that `analytic` (same shape as x) matches central differences of f at x.

    With skip_kinks, points where the eps and eps/2 estimates disagree (the step crossed a
    ReLU kink or a max-pool switch, where no derivative exists) are left out; at least 3/4
    of the points must remain so a broken kernel cannot hide behind this.
    """
    idx, num = numerical_gradient(f, x, eps=eps, max_points=max_points)
    got = np.asarray(analytic, dtype=np.float64).reshape(-1)[idx]
    if skip_kinks:
        _, half = numerical_gradient(f, x, eps=eps / 2, max_points=max_points)
        smooth = np.abs(num - half) <= atol + rtol * np.abs(num)
        assert smooth.mean() >= 0.75, f"too many non-smooth points: {np.count_nonzero(~smooth)}"
        got, num = got[smooth], num[smooth]
    np.testing.assert_allclose(got, num, rtol=rtol, atol=atol)
