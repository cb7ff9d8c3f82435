"""2-D max and average pooling on NHWC arrays, Keras ``MaxPooling2D`` / ``AveragePooling2D``."""

from __future__ import annotations

import numpy as np

from cnnfast import _core
from cnnfast.ops.conv import as_float32
from cnnfast.shapes import conv_padding, pair

__all__ = [
    "avg_pool2d",
    "avg_pool2d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "pool2d_geometry",
]

PoolPadding = str | int | tuple[int, int]


def pool2d_geometry(
    x_shape: tuple[int, ...],
    pool_size: int | tuple[int, int] = (2, 2),
    strides: int | tuple[int, int] | None = None,
    padding: PoolPadding = "valid",
    op: str = "pool2d",
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Validate a pooling's sizes; return ((OH, OW), (PH, PW), (stride_h, stride_w), (pad_top, pad_left)).

    Strides default to the pool size (Keras). Padding is "valid", "same", an int or a pair
    (p_h, p_w) of symmetric paddings, smaller than the window.
    """
    ctx = f"{op} with x {tuple(x_shape)}"
    if len(x_shape) != 4:
        raise ValueError(f"{ctx}: x must be (N, H, W, C)")
    _, H, W, C = x_shape
    if min(H, W, C) < 1:
        raise ValueError(f"{ctx}: spatial sizes and channels must be positive")
    try:
        ph, pw = pair(pool_size, "pool_size")
        sh, sw = (ph, pw) if strides is None else pair(strides, "strides")
        axis_pad = [padding, padding] if isinstance(padding, str) else pair(padding, "padding")
        top, _, OH = conv_padding(H, ph, sh, axis_pad[0])
        left, _, OW = conv_padding(W, pw, sw, axis_pad[1])
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"{ctx}, pool_size {pool_size!r}, strides {strides!r}, padding {padding!r}: {e}"
        ) from None
    if top >= ph or left >= pw:
        raise ValueError(f"{ctx}: padding {padding!r} must be smaller than the pool ({ph}, {pw})")
    return (OH, OW), (ph, pw), (sh, sw), (top, left)


def _prepare(op, x, pool_size, strides, padding):
    x = as_float32(x, op, "x", 4)
    (OH, OW), pool, stride, pad = pool2d_geometry(x.shape, pool_size, strides, padding, op)
    return x, (x.shape[0], OH, OW, x.shape[3]), (*pool, *stride, *pad)


def _check_dy(op: str, dy, y_shape, x_shape) -> np.ndarray:
    dy = as_float32(dy, op, "dy", 4)
    if dy.shape != y_shape:
        raise ValueError(f"{op}: dy must have shape {y_shape} for x {x_shape}, got {dy.shape}")
    return dy


def max_pool2d(
    x: np.ndarray,
    pool_size: int | tuple[int, int] = (2, 2),
    strides: int | tuple[int, int] | None = None,
    padding: PoolPadding = "valid",
) -> np.ndarray:
    """Max over each pooling window; padded positions never win.

    Parameters
    ----------
    x : array (N, H, W, C)
    pool_size : int or (PH, PW)
    strides : int or pair, optional
        Defaults to pool_size.
    padding : "valid", "same", int or (p_h, p_w)

    Returns
    -------
    y : float32 array (N, OH, OW, C). A NaN in a window gives NaN.
    """
    x, y_shape, geo = _prepare("max_pool2d", x, pool_size, strides, padding)
    y = np.empty(y_shape, np.float32)
    _core.max_pool2d_forward(y, None, x, *geo)
    return y


def max_pool2d_backward(
    x: np.ndarray,
    dy: np.ndarray,
    pool_size: int | tuple[int, int] = (2, 2),
    strides: int | tuple[int, int] | None = None,
    padding: PoolPadding = "valid",
) -> np.ndarray:
    """Gradient of :func:`max_pool2d` with respect to x, given dy (N, OH, OW, C).

    Each window's gradient goes to its maximum; ties go to the first maximum in row-major
    window order (as TensorFlow does). Returns dx, float32 (N, H, W, C).
    """
    x, y_shape, geo = _prepare("max_pool2d_backward", x, pool_size, strides, padding)
    dy = _check_dy("max_pool2d_backward", dy, y_shape, x.shape)
    y = np.empty(y_shape, np.float32)
    argmax = np.empty(y_shape, np.int32)
    _core.max_pool2d_forward(y, argmax, x, *geo)
    dx = np.empty_like(x)
    _core.max_pool2d_backward(dx, dy, argmax, *geo)
    return dx


def avg_pool2d(
    x: np.ndarray,
    pool_size: int | tuple[int, int] = (2, 2),
    strides: int | tuple[int, int] | None = None,
    padding: PoolPadding = "valid",
) -> np.ndarray:
    """Mean over each pooling window's positions inside the input.

    Padded positions are not counted (Keras/TensorFlow; PyTorch's ``count_include_pad=True``
    default differs at the borders). Arguments as in :func:`max_pool2d`.
    Returns y, float32 (N, OH, OW, C).
    """
    x, y_shape, geo = _prepare("avg_pool2d", x, pool_size, strides, padding)
    y = np.empty(y_shape, np.float32)
    _core.avg_pool2d_forward(y, x, *geo)
    return y


def avg_pool2d_backward(
    x: np.ndarray,
    dy: np.ndarray,
    pool_size: int | tuple[int, int] = (2, 2),
    strides: int | tuple[int, int] | None = None,
    padding: PoolPadding = "valid",
) -> np.ndarray:
    """Gradient of :func:`avg_pool2d` with respect to x, given dy (N, OH, OW, C).

    Only x's shape is used. Returns dx, float32 (N, H, W, C).
    """
    x_shape = np.shape(x)
    if len(x_shape) != 4:
        raise ValueError(f"avg_pool2d_backward: x must have rank 4, got shape {x_shape}")
    (OH, OW), pool, stride, pad = pool2d_geometry(
        x_shape, pool_size, strides, padding, "avg_pool2d_backward"
    )
    y_shape = (x_shape[0], OH, OW, x_shape[3])
    dy = _check_dy("avg_pool2d_backward", dy, y_shape, x_shape)
    dx = np.empty(x_shape, np.float32)
    _core.avg_pool2d_backward(dx, dy, *pool, *stride, *pad)
    return dx
