"""Fully connected layer with Keras kernel layout (in, out), on NumPy arrays (float32 GEMM)."""

from __future__ import annotations

import numpy as np

from cnnfast import _core
from cnnfast.ops.conv import as_float32

__all__ = ["dense", "dense_backward"]


def _check(op: str, x: np.ndarray, w: np.ndarray) -> None:
    if x.shape[-1] != w.shape[0]:
        raise ValueError(
            f"{op}: x {x.shape} has {x.shape[-1]} features but w {w.shape} expects {w.shape[0]}"
        )


def dense(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """y = x @ w + b over the last axis of x (Keras ``Dense`` without activation).

    Parameters
    ----------
    x : array (..., IN), rank >= 2; leading axes are flattened into the batch
    w : array (IN, OUT)
    b : array (OUT,), optional

    Returns
    -------
    y : float32 array (..., OUT)
    """
    x = as_float32(x, "dense", "x", tuple(range(2, 33)))
    w = as_float32(w, "dense", "w", 2)
    _check("dense", x, w)
    if b is not None:
        b = as_float32(b, "dense", "b", 1)
        if b.shape != (w.shape[1],):
            raise ValueError(f"dense: b must have shape ({w.shape[1]},), got {b.shape}")
    x2 = x.reshape(-1, w.shape[0])
    y = np.empty((x2.shape[0], w.shape[1]), np.float32)
    _core.dense_forward(y, x2, w, b)
    return y.reshape(x.shape[:-1] + (w.shape[1],))


def dense_backward(
    x: np.ndarray, w: np.ndarray, dy: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`dense` given dy = dL/dy.

    Parameters
    ----------
    x : array (..., IN)
    w : array (IN, OUT)
    dy : array (..., OUT), same leading axes as x

    Returns
    -------
    dx : float32 array (..., IN)
    dw : float32 array (IN, OUT)
    db : float32 array (OUT,)
    """
    x = as_float32(x, "dense_backward", "x", tuple(range(2, 33)))
    w = as_float32(w, "dense_backward", "w", 2)
    dy = as_float32(dy, "dense_backward", "dy", x.ndim)
    _check("dense_backward", x, w)
    if dy.shape != x.shape[:-1] + (w.shape[1],):
        raise ValueError(
            f"dense_backward: dy must have shape {x.shape[:-1] + (w.shape[1],)} for x {x.shape} "
            f"and w {w.shape}, got {dy.shape}"
        )
    x2 = x.reshape(-1, w.shape[0])
    dy2 = dy.reshape(-1, w.shape[1])
    dx = np.empty_like(x2)
    dw = np.empty_like(w)
    db = np.empty(w.shape[1], np.float32)
    _core.dense_backward(dx, dw, db, x2, w, dy2)
    return dx.reshape(x.shape), dw, db
