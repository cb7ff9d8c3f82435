"""2-D convolution on NHWC arrays with Keras kernel layout (KH, KW, C_in / groups, C_out).

The ops take and return NumPy arrays; computation is float32 in the C++ core (im2col + GEMM).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnfast import _core
from cnnfast.shapes import conv_padding, pair

__all__ = ["conv2d", "conv2d_backward", "conv2d_geometry"]

#: conv2d padding: "valid", "same", an int p, or a pair (p_h, p_w) of symmetric paddings.
ConvPadding = str | int | tuple[int, int]


def as_float32(a: Any, op: str, name: str, ndim: int | tuple[int, ...]) -> np.ndarray:
    """Return `a` as a C-contiguous float32 array after checking it is real numeric of rank `ndim`.

    Raises ValueError naming `op`, the argument and its shape or dtype.
    """
    arr = np.asarray(a)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{op}: {name} must be a real numeric array, got dtype {arr.dtype}")
    ranks = (ndim,) if isinstance(ndim, int) else ndim
    if arr.ndim not in ranks:
        want = " or ".join(str(r) for r in ranks)
        raise ValueError(f"{op}: {name} must have rank {want}, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _axis_padding(padding: ConvPadding, axis: int) -> str | int:
    """Padding of one spatial axis (0: rows, 1: columns) in shapes.conv_padding's terms."""
    if isinstance(padding, str):
        return padding
    return pair(padding, "padding")[axis]


def conv2d_geometry(
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    strides: int | tuple[int, int] = (1, 1),
    padding: ConvPadding = "valid",
    groups: int = 1,
    op: str = "conv2d",
    dilation_rate: int | tuple[int, int] = (1, 1),
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Validate a convolution's sizes and return ((OH, OW), (stride_h, stride_w), (pad_top, pad_left)).

    The bottom/right padding is implied by the output size; rows a stride never reaches are
    ignored (floor), as in Keras.
    """
    ctx = f"{op} with x {tuple(x_shape)}, w {tuple(w_shape)}"
    if len(x_shape) != 4 or len(w_shape) != 4:
        raise ValueError(f"{ctx}: x must be (N, H, W, C) and w (KH, KW, C/groups, K)")
    _, H, W, C = x_shape
    KH, KW, Cg, K = w_shape
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{ctx}: groups must be a positive int, got {groups!r}")
    if min(H, W, C, KH, KW, Cg, K) < 1:
        raise ValueError(f"{ctx}: spatial sizes and channel counts must be positive")
    if Cg * groups != C:
        hint = ""
        if w_shape[1] * groups == C:
            # PyTorch stores conv weights as (C_out, C_in / groups, KH, KW).
            hint = (f"; w looks like PyTorch's (C_out, C_in, KH, KW) layout, got {tuple(w_shape)}: "
                    "cnnfast (like Keras) takes (KH, KW, C_in, C_out), convert with "
                    "w.transpose(2, 3, 1, 0)")
        raise ValueError(
            f"{ctx}: input channels {C} must equal kernel input channels {Cg} x groups {groups}"
            f" (w must be (KH, KW, C_in / groups, C_out)){hint}"
        )
    if K % groups:
        raise ValueError(f"{ctx}: groups {groups} must divide the output channels {K}")
    try:
        sh, sw = pair(strides, "strides")
        dh, dw = pair(dilation_rate, "dilation_rate")
        if dh < 1 or dw < 1:
            raise ValueError(f"dilation_rate must be positive, got {dilation_rate!r}")
        # A dilated kernel spans (K - 1) * rate + 1 input positions.
        KH, KW = (KH - 1) * dh + 1, (KW - 1) * dw + 1
        top, _, OH = conv_padding(H, KH, sh, _axis_padding(padding, 0))
        left, _, OW = conv_padding(W, KW, sw, _axis_padding(padding, 1))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{ctx}, strides {strides!r}, padding {padding!r}: {e}") from None
    if top >= KH or left >= KW:
        raise ValueError(f"{ctx}: padding {padding!r} must be smaller than the kernel ({KH}, {KW})")
    return (OH, OW), (sh, sw), (top, left)


def conv2d(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    strides: int | tuple[int, int] = (1, 1),
    padding: ConvPadding = "valid",
    groups: int = 1,
    dilation_rate: int | tuple[int, int] = (1, 1),
) -> np.ndarray:
    """2-D convolution (cross-correlation), Keras ``Conv2D`` semantics.

    Parameters
    ----------
    x : array (N, H, W, C)
    w : array (KH, KW, C // groups, K)
    b : array (K,), optional
    strides : int or (stride_h, stride_w)
    padding : "valid", "same", int p or (p_h, p_w)
        "same" gives ceil(n / s) outputs with the odd padding row/column at the bottom/right
        (TensorFlow). An int or pair pads both sides of each axis by that much; it must be
        smaller than the kernel.
    groups : int
        Output channels come in `groups` contiguous blocks, block g seeing input channels
        [g*C/groups, (g+1)*C/groups).
    dilation_rate : int or (rate_h, rate_w)
        Spacing of the kernel taps (atrous convolution); the kernel spans (K - 1) * rate + 1.

    Returns
    -------
    y : float32 array (N, OH, OW, K)
    """
    x = as_float32(x, "conv2d", "x", 4)
    w = as_float32(w, "conv2d", "w", 4)
    (OH, OW), (sh, sw), (pt, pl) = conv2d_geometry(x.shape, w.shape, strides, padding, groups,
                                                   dilation_rate=dilation_rate)
    dh, dw = pair(dilation_rate, "dilation_rate")
    if b is not None:
        b = as_float32(b, "conv2d", "b", 1)
        if b.shape != (w.shape[3],):
            raise ValueError(f"conv2d: b must have shape ({w.shape[3]},), got {b.shape}")
    y = np.empty((x.shape[0], OH, OW, w.shape[3]), np.float32)
    _core.conv2d_forward(y, x, w, b, sh, sw, pt, pl, int(groups), dh, dw)
    return y


def conv2d_backward(
    x: np.ndarray,
    w: np.ndarray,
    dy: np.ndarray,
    strides: int | tuple[int, int] = (1, 1),
    padding: ConvPadding = "valid",
    groups: int = 1,
    dilation_rate: int | tuple[int, int] = (1, 1),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv2d` given dy = dL/dy.

    Parameters
    ----------
    x, w, strides, padding, groups, dilation_rate : as in :func:`conv2d`
    dy : array (N, OH, OW, K)

    Returns
    -------
    dx : float32 array (N, H, W, C)
    dw : float32 array (KH, KW, C // groups, K)
    db : float32 array (K,)
    """
    x = as_float32(x, "conv2d_backward", "x", 4)
    w = as_float32(w, "conv2d_backward", "w", 4)
    dy = as_float32(dy, "conv2d_backward", "dy", 4)
    (OH, OW), (sh, sw), (pt, pl) = conv2d_geometry(
        x.shape, w.shape, strides, padding, groups, op="conv2d_backward",
        dilation_rate=dilation_rate,
    )
    dh, dw_ = pair(dilation_rate, "dilation_rate")
    expected = (x.shape[0], OH, OW, w.shape[3])
    if dy.shape != expected:
        raise ValueError(
            f"conv2d_backward: dy must have shape {expected} for x {x.shape}, w {w.shape}, "
            f"got {dy.shape}"
        )
    dx = np.empty_like(x)
    dw = np.empty_like(w)
    db = np.empty(w.shape[3], np.float32)
    _core.conv2d_backward_data(dx, dy, w, sh, sw, pt, pl, int(groups), dh, dw_)
    _core.conv2d_backward_weights(dw, db, x, dy, sh, sw, pt, pl, int(groups), dh, dw_)
    return dx, dw, db
