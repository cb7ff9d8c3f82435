"""Inverted dropout (Keras ``Dropout`` in training) with a counter-based, seedable mask."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnfast import _core
from cnnfast.ops.activation import _as_f32

__all__ = ["dropout", "dropout_backward"]


def _check_rate(op: str, rate: float) -> float:
    rate = float(rate)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{op}: rate must be in [0, 1], got {rate}")
    return rate


def dropout(x: Any, rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Drop each element with probability `rate`; kept ones become x / (1 - rate).

    As Keras: ``where(mask, x / float32(1 - rate), 0)``, bit for bit given the mask.

    The mask is a pure function of (seed, flat index): the same seed gives the same mask for any
    thread count. Call with a new seed per training step.

    Parameters
    ----------
    x : array, any shape
    rate : float in [0, 1]; 0 returns x unchanged, 1 drops everything
    seed : int in [0, 2**64)

    Returns
    -------
    y : float32 array, shape of x
    mask : uint8 array, shape of x, 1 where kept
    """
    rate = _check_rate("dropout", rate)
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise ValueError(f"dropout: seed must be in [0, 2**64), got {seed}")
    x = _as_f32(x, "dropout", "x")
    y = np.empty_like(x)
    mask = np.empty(x.shape, np.uint8)
    _core.dropout_forward(y, mask, x, rate, seed)
    return y, mask


def dropout_backward(dy: Any, mask: Any, rate: float) -> np.ndarray:
    """dx = where(mask, dy / float32(1 - rate), 0), with the mask returned by :func:`dropout`."""
    rate = _check_rate("dropout_backward", rate)
    dy = _as_f32(dy, "dropout_backward", "dy")
    mask = np.asarray(mask)
    if mask.shape != dy.shape:
        raise ValueError(
            f"dropout_backward: mask {mask.shape} and dy {dy.shape} must have the same shape"
        )
    if mask.dtype.kind not in "biu":
        raise ValueError(
            f"dropout_backward: mask must be a uint8/bool array, got dtype {mask.dtype}"
        )
    if mask.dtype != np.uint8:
        mask = mask != 0
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    dx = np.empty_like(dy)
    _core.dropout_backward(dx, dy, mask, rate)
    return dx
