"""Losses with Keras names. Each returns the mean loss over the batch and writes its gradient.

When the model ends in a softmax and the loss is categorical cross-entropy, the model fuses the
two (`fuses_softmax`): the gradient with respect to the logits is (p - y) / N, computed from
the logits in one numerically stable kernel.
"""

from __future__ import annotations

import numpy as np

from cnnfast import _core


class Loss:
    name = "loss"
    fuses_softmax = False
    sparse_labels = False

    def check_targets(self, y: np.ndarray, output_shape: tuple[int, ...]) -> np.ndarray:
        """Validate and convert targets for a model whose per-sample output is output_shape."""
        y = np.asarray(y)
        if y.dtype.kind not in "fiub":
            raise TypeError(f"{self.name}: targets must be numeric, got dtype {y.dtype}")
        if y.shape[1:] != tuple(output_shape):
            raise ValueError(
                f"{self.name}: targets of shape {y.shape} do not match the model output "
                f"(None, {', '.join(map(str, output_shape))})"
            )
        return np.ascontiguousarray(y, np.float32)

    def compute(self, grad: np.ndarray | None, pred: np.ndarray, y: np.ndarray) -> float:
        raise NotImplementedError

    def __call__(self, y_true, y_pred) -> float:
        """Mean loss of predictions y_pred against y_true (Keras argument order)."""
        pred = np.ascontiguousarray(y_pred, np.float32)
        return float(self.compute(None, pred, self.check_targets(y_true, pred.shape[1:])))


class CategoricalCrossentropy(Loss):
    """Cross-entropy against one-hot (or soft) targets, from probabilities (Keras clipping 1e-7)."""

    name = "categorical_crossentropy"
    fuses_softmax = True

    def compute(self, grad, pred, y):
        return _core.categorical_xent(grad, pred, y)

    def compute_from_logits(self, grad, logits, y):
        return _core.softmax_xent(grad, None, logits, y)


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """Cross-entropy against integer class labels."""

    name = "sparse_categorical_crossentropy"
    sparse_labels = True

    def check_targets(self, y, output_shape):
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ValueError(f"{self.name}: integer labels must have shape (N,), got {y.shape}")
        if y.dtype.kind == "f":
            if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
                raise ValueError(f"{self.name}: labels must be whole numbers")
        elif y.dtype.kind not in "iu":
            raise TypeError(f"{self.name}: labels must be integers, got dtype {y.dtype}")
        classes = output_shape[-1]
        if y.size and (y.min() < 0 or y.max() >= classes):
            raise ValueError(
                f"{self.name}: labels must lie in [0, {classes}), got range [{y.min()}, {y.max()}]"
            )
        return np.ascontiguousarray(y, np.int32)

    def compute(self, grad, pred, y):
        onehot = np.zeros(pred.shape, np.float32)
        onehot[np.arange(len(y)), y] = 1.0
        return _core.categorical_xent(grad, pred, onehot)

    def compute_from_logits(self, grad, logits, y):
        return _core.softmax_xent(grad, None, logits, y)


class MeanSquaredError(Loss):
    """Mean over all elements of (pred - y)^2."""

    name = "mean_squared_error"

    def compute(self, grad, pred, y):
        return _core.mse(grad, pred, y)


# -- Keras's function forms: fn(y_true, y_pred) -> per-sample losses; compile takes them too ----

_EPSILON = 1e-7  # Keras's backend epsilon: probabilities are clipped to [eps, 1 - eps]


def _pred_f32(y_pred, what: str) -> np.ndarray:
    p = np.asarray(y_pred)
    if p.dtype.kind not in "fiub":
        raise TypeError(f"{what}: y_pred must be numeric, got dtype {p.dtype}")
    if p.ndim < 1:
        raise ValueError(f"{what}: y_pred must have a class axis, got shape {p.shape}")
    return p.astype(np.float32)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - np.max(z, axis=-1, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))


def categorical_crossentropy(y_true, y_pred, from_logits: bool = False,
                             label_smoothing: float = 0.0, axis: int = -1) -> np.ndarray:
    """Per-sample categorical cross-entropy, Keras's function: ``-sum(y * log(p))`` over
    `axis`, with ``p = y_pred / sum(y_pred)`` clipped to [1e-7, 1 - 1e-7] (or
    ``log_softmax(y_pred)`` with ``from_logits``); ``label_smoothing`` s turns the targets
    into ``y * (1 - s) + s / classes``. Returns float32 of y_pred's shape without `axis`.

    Given to ``compile`` it stands for ``CategoricalCrossentropy()`` (from probabilities).
    """
    what = "categorical_crossentropy"
    p = _pred_f32(y_pred, what)
    y = np.asarray(y_true, np.float32)
    if y.shape != p.shape:
        raise ValueError(f"{what}: y_true {y.shape} and y_pred {p.shape} must have the same "
                         "shape")
    if label_smoothing:
        y = y * (1.0 - label_smoothing) + label_smoothing / y.shape[axis]
    if from_logits:
        log_p = _log_softmax(np.moveaxis(p, axis, -1))
        return (-np.sum(np.moveaxis(y, axis, -1) * log_p, axis=-1)).astype(np.float32)
    p = p / np.sum(p, axis=axis, keepdims=True)
    p = np.clip(p, _EPSILON, 1.0 - _EPSILON)
    return (-np.sum(y * np.log(p), axis=axis)).astype(np.float32)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits: bool = False,
                                    axis: int = -1) -> np.ndarray:
    """Per-sample cross-entropy against integer labels ``y_true`` (shape of y_pred without the
    class axis, or with it of size 1): :func:`categorical_crossentropy` of their one-hot rows.

    Given to ``compile`` it stands for ``SparseCategoricalCrossentropy()``.
    """
    what = "sparse_categorical_crossentropy"
    p = _pred_f32(y_pred, what)
    labels = np.asarray(y_true)
    if labels.ndim == p.ndim and labels.shape[axis] == 1:
        labels = np.squeeze(labels, axis=axis)
    classes = p.shape[axis]
    if labels.dtype.kind == "f":
        if not np.all(labels == np.round(labels)):
            raise ValueError(f"{what}: labels must be whole numbers")
    elif labels.dtype.kind not in "iu":
        raise TypeError(f"{what}: labels must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"{what}: labels must lie in [0, {classes}), got range "
                         f"[{labels.min()}, {labels.max()}]")
    onehot = np.moveaxis(np.eye(classes, dtype=np.float32)[labels], -1, axis)
    return categorical_crossentropy(onehot, p, from_logits=from_logits, axis=axis)


def mean_squared_error(y_true, y_pred) -> np.ndarray:
    """Per-sample mean squared error, Keras's function: ``mean((y_true - y_pred)^2)`` over the
    last axis (float32). Given to ``compile`` it stands for ``MeanSquaredError()``."""
    p = _pred_f32(y_pred, "mean_squared_error")
    y = np.asarray(y_true, np.float32)
    if y.shape != p.shape:
        raise ValueError(f"mean_squared_error: y_true {y.shape} and y_pred {p.shape} must have "
                         "the same shape")
    return np.mean(np.square(y - p), axis=-1)


mse = MSE = mean_squared_error

# Each function form stands for its class in compile.
_FUNCTIONS = {
    categorical_crossentropy: CategoricalCrossentropy,
    sparse_categorical_crossentropy: SparseCategoricalCrossentropy,
    mean_squared_error: MeanSquaredError,
}

_BY_NAME = {
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
}


def get(identifier: str | Loss) -> Loss:
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if callable(identifier) and identifier in _FUNCTIONS:
        return _FUNCTIONS[identifier]()
    try:
        return _BY_NAME[identifier]()
    except (KeyError, TypeError):
        raise ValueError(f"unknown loss {identifier!r}; known: {sorted(_BY_NAME)}") from None
