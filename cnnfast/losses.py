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
    try:
        return _BY_NAME[identifier]()
    except (KeyError, TypeError):
        raise ValueError(f"unknown loss {identifier!r}; known: {sorted(_BY_NAME)}") from None
