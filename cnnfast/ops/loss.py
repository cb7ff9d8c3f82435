"""Losses with their gradients, Keras 3 semantics (mean over the batch).

Each function returns ``(loss, grad)``: the mean loss as a Python float (accumulated in double)
and the float32 gradient of that mean loss with respect to the first argument.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnfast import _core
from cnnfast.ops.activation import _as_f32

__all__ = [
    "categorical_crossentropy",
    "mse",
    "softmax_cross_entropy",
    "sparse_categorical_crossentropy",
    "sparse_softmax_cross_entropy",
]


def _as_2d(a: Any, op: str, name: str) -> np.ndarray:
    arr = _as_f32(a, op, name)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{op}: {name} must be a non-empty (N, C) array, got shape {arr.shape}")
    return arr


def _dense_labels(op: str, labels: Any, shape: tuple[int, ...]) -> np.ndarray:
    labels = _as_f32(labels, op, "labels")
    if labels.shape != shape:
        raise ValueError(
            f"{op}: labels {labels.shape} must have the shape of the predictions {shape}"
        )
    return labels


def _class_labels(op: str, labels: Any, n: int, classes: int) -> np.ndarray:
    """Integer class labels (N,) in [0, classes) as int32; integral floats are accepted."""
    arr = np.asarray(labels)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{op}: labels must be integer class indices, got dtype {arr.dtype}")
    if arr.shape != (n,):
        raise ValueError(f"{op}: labels must have shape ({n},), got {arr.shape}")
    if arr.dtype.kind == "f" and not np.all(np.floor(arr) == arr):
        raise ValueError(f"{op}: float labels must be integral class indices")
    if n and (arr.min() < 0 or arr.max() >= classes):
        raise ValueError(
            f"{op}: labels must be in [0, {classes}), got values in [{arr.min()}, {arr.max()}]"
        )
    return np.ascontiguousarray(arr, dtype=np.int32)


def softmax_cross_entropy(logits: Any, labels: Any) -> tuple[float, np.ndarray]:
    """Softmax followed by categorical crossentropy, fused and stable (log-sum-exp).

    Parameters
    ----------
    logits : array (N, C)
    labels : array (N, C), one-hot or soft labels (rows summing to 1)

    Returns
    -------
    loss : float, mean over rows of -sum_j labels_j log(clip(softmax_j, 1e-7, 1 - 1e-7)), the
        value Keras reports for a softmax layer + ``categorical_crossentropy``
    dlogits : float32 array (N, C), (softmax(logits) - labels) / N (the clip is not
        differentiated, as in the usual fused gradient)
    """
    logits = _as_2d(logits, "softmax_cross_entropy", "logits")
    labels = _dense_labels("softmax_cross_entropy", labels, logits.shape)
    dlogits = np.empty_like(logits)
    loss = _core.softmax_xent(dlogits, None, logits, labels)
    return float(loss), dlogits


def sparse_softmax_cross_entropy(logits: Any, labels: Any) -> tuple[float, np.ndarray]:
    """:func:`softmax_cross_entropy` with integer class labels (N,) in [0, C)."""
    logits = _as_2d(logits, "sparse_softmax_cross_entropy", "logits")
    labels = _class_labels("sparse_softmax_cross_entropy", labels, *logits.shape)
    dlogits = np.empty_like(logits)
    loss = _core.softmax_xent(dlogits, None, logits, labels)
    return float(loss), dlogits


def categorical_crossentropy(probs: Any, labels: Any) -> tuple[float, np.ndarray]:
    """Keras 3 ``categorical_crossentropy(labels, probs, from_logits=False)``.

    Keras renormalises each row, q = probs / sum(probs), clips q to [1e-7, 1 - 1e-7] and takes
    -sum(labels * log(q)); the loss is the mean over rows. cnnfast computes the same in double.

    Returns
    -------
    loss : float
    dprobs : float32 array (N, C), the exact gradient of that loss including the
        renormalisation: with g = -labels / (q N) where q is inside the clip range (0 where
        clipped), dprobs = (g - sum(g q)) / sum(probs) per row. For rows summing to 1 this is
        -labels / (probs N) plus a per-row constant, which a preceding softmax's backward removes,
        so softmax + this gives (softmax - labels) / N on the logits away from the clip.
    """
    probs = _as_2d(probs, "categorical_crossentropy", "probs")
    labels = _dense_labels("categorical_crossentropy", labels, probs.shape)
    dprobs = np.empty_like(probs)
    loss = _core.categorical_xent(dprobs, probs, labels)
    return float(loss), dprobs


def sparse_categorical_crossentropy(probs: Any, labels: Any) -> tuple[float, np.ndarray]:
    """:func:`categorical_crossentropy` with integer class labels (N,) in [0, C) (one-hot)."""
    probs = _as_2d(probs, "sparse_categorical_crossentropy", "probs")
    n, c = probs.shape
    idx = _class_labels("sparse_categorical_crossentropy", labels, n, c)
    onehot = np.zeros((n, c), np.float32)
    onehot[np.arange(n), idx] = 1.0
    dprobs = np.empty_like(probs)
    loss = _core.categorical_xent(dprobs, probs, onehot)
    return float(loss), dprobs


def mse(pred: Any, target: Any) -> tuple[float, np.ndarray]:
    """Mean squared error over all elements (Keras ``mean_squared_error`` with equal-size rows).

    Returns
    -------
    loss : float, mean((pred - target)^2)
    dpred : float32 array, shape of pred: 2 (pred - target) / pred.size
    """
    pred = _as_f32(pred, "mse", "pred")
    target = _as_f32(target, "mse", "target")
    if pred.shape != target.shape:
        raise ValueError(
            f"mse: pred {pred.shape} and target {target.shape} must have the same shape"
        )
    if pred.size == 0:
        raise ValueError(f"mse: pred {pred.shape} is empty")
    dpred = np.empty_like(pred)
    loss = _core.mse(dpred, pred, target)
    return float(loss), dpred
