"""Local response normalization across channels on channels-last arrays (AlexNet's LRN).

TensorFlow's parametrisation (``tf.nn.local_response_normalization``): alpha is not divided by
the window size 2*depth_radius + 1, unlike PyTorch's ``local_response_norm``.
"""

from __future__ import annotations

import numpy as np

from cnnfast import _core
from cnnfast.ops.conv import as_float32

__all__ = ["lrn", "lrn_backward"]

_RANKS = (1, 2, 3, 4, 5)


def _check(op: str, depth_radius: int, bias: float, alpha: float) -> None:
    if isinstance(depth_radius, bool) or not isinstance(depth_radius, (int, np.integer)) \
            or depth_radius < 0:
        raise ValueError(f"{op}: depth_radius must be a non-negative int, got {depth_radius!r}")
    if not bias > 0 or not alpha >= 0:
        raise ValueError(f"{op}: needs bias > 0 and alpha >= 0, got bias={bias!r}, alpha={alpha!r}")


def lrn(x, depth_radius: int = 2, bias: float = 1.0, alpha: float = 1e-4,
        beta: float = 0.75, return_scale: bool = False):
    """y = x / (bias + alpha * sum over the channel window of x^2) ** beta, along the last axis.

    Parameters
    ----------
    x : array_like, (..., C)
        Channels last.
    depth_radius, bias, alpha, beta
        The window is [c - depth_radius, c + depth_radius] clipped to [0, C).
    return_scale : bool
        Also return the scale (bias + alpha * window sum) that :func:`lrn_backward` needs.

    Returns
    -------
    y, or (y, scale) : float32 arrays of x's shape.
    """
    op = "lrn"
    x = as_float32(x, op, "x", _RANKS)
    _check(op, depth_radius, bias, alpha)
    y = np.empty_like(x)
    scale = np.empty_like(x) if return_scale else None
    _core.lrn_forward(y, scale, x, int(depth_radius), float(bias), float(alpha), float(beta))
    return (y, scale) if return_scale else y


def lrn_backward(dy, x, y, scale, depth_radius: int = 2, bias: float = 1.0, alpha: float = 1e-4,
                 beta: float = 0.75) -> np.ndarray:
    """Gradient with respect to x of :func:`lrn`, from dy, x and the forward's y and scale."""
    op = "lrn_backward"
    arrays = [as_float32(a, op, n, _RANKS) for a, n in ((dy, "dy"), (x, "x"), (y, "y"),
                                                        (scale, "scale"))]
    dy, x, y, scale = arrays
    for a, n in zip(arrays, ("dy", "x", "y", "scale")):
        if a.shape != x.shape:
            raise ValueError(f"{op}: {n} has shape {a.shape}, x has {x.shape}; they must match")
    _check(op, depth_radius, bias, alpha)
    dx = np.empty_like(x)
    _core.lrn_backward(dx, x, y, scale, dy, int(depth_radius), float(bias), float(alpha),
                       float(beta))
    return dx
