"""Merge operations (the Keras merge layers) with explicit backwards: the joins of graphs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnfast import _core
from cnnfast.ops.activation import _as_f32

MERGE_OPS = ("add", "subtract", "multiply", "average", "maximum")

__all__ = ["MERGE_OPS", "concatenate", "concatenate_backward", "merge", "merge_backward"]


def _inputs(op: str, xs: Sequence[Any]) -> list[np.ndarray]:
    if isinstance(xs, np.ndarray) or not isinstance(xs, (list, tuple)):
        raise TypeError(f"{op}: expected a list of arrays, got {type(xs).__name__}")
    arrays = [_as_f32(x, op, f"inputs[{k}]") for k, x in enumerate(xs)]
    if not arrays:
        raise ValueError(f"{op}: needs at least one input")
    return arrays


def _check_op(op: str, where: str) -> None:
    if op not in MERGE_OPS:
        raise ValueError(f"{where}: unknown merge op {op!r}; expected one of {', '.join(MERGE_OPS)}")


def merge(xs: Sequence[Any], op: str) -> np.ndarray:
    """``xs[0] op xs[1] op ...`` elementwise, for op in add, subtract (two inputs), multiply,
    average (the sum divided by the count) and maximum. All inputs have one shape (Keras's
    merge layers; no broadcasting)."""
    _check_op(op, "merge")
    xs = _inputs(op, xs)
    for k, x in enumerate(xs[1:], 1):
        if x.shape != xs[0].shape:
            raise ValueError(f"{op}: inputs[{k}] has shape {x.shape}, inputs[0] {xs[0].shape}; "
                             "merge inputs must have the same shape")
    out = np.empty_like(xs[0])
    _core.merge_forward(out, xs, op)
    return out


def merge_backward(dy: Any, xs: Sequence[Any], op: str) -> list[np.ndarray]:
    """The gradient with respect to each input of :func:`merge`; maximum sends it to the first
    input holding the maximum (TensorFlow's rule)."""
    _check_op(op, "merge_backward")
    xs = _inputs(op, xs)
    dy = _as_f32(dy, op, "dy")
    dxs = [np.empty_like(dy) for _ in xs]
    _core.merge_backward(dxs, dy, xs, op)
    return dxs


def concatenate(xs: Sequence[Any]) -> np.ndarray:
    """The inputs side by side on the last axis (channels in NHWC), like Keras Concatenate()."""
    xs = _inputs("concatenate", xs)
    lead = xs[0].shape[:-1]
    for k, x in enumerate(xs):
        if x.ndim < 1 or x.shape[:-1] != lead:
            raise ValueError(f"concatenate: inputs[{k}] has shape {x.shape}; every input needs "
                             f"the leading shape {lead} of inputs[0] (all axes but the last)")
    out = np.empty(lead + (sum(x.shape[-1] for x in xs),), np.float32)
    _core.concat_forward(out, xs)
    return out


def concatenate_backward(dy: Any, widths: Sequence[int]) -> list[np.ndarray]:
    """dy split back into the inputs' last-axis widths."""
    dy = _as_f32(dy, "concatenate_backward", "dy", min_ndim=1)
    if sum(widths) != dy.shape[-1] or min(widths, default=0) < 0:
        raise ValueError(f"concatenate_backward: widths {list(widths)} do not sum to the last "
                         f"axis of dy {dy.shape}")
    dxs = [np.empty(dy.shape[:-1] + (int(w),), np.float32) for w in widths]
    _core.concat_backward(dxs, dy)
    return dxs
