"""Metrics with Keras names: "accuracy", top-k categorical accuracy (k=5 by default).

``compile(metrics=[...])`` takes their names, the functions below or the metric objects; fit,
evaluate and train_on_batch report each as the mean of its per-sample values. The functions
are also called on arrays, ``fn(y_true, y_pred)``, and return the per-sample values (float32),
as in Keras.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "Accuracy", "Metric", "SparseTopKCategoricalAccuracy", "TopKCategoricalAccuracy", "accuracy",
    "get", "serialize", "sparse_top_k_categorical_accuracy", "top_k_categorical_accuracy",
]


def _in_top_k(targets: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """Per row: the target class's score is among the k largest (ties at the k-th value count
    as in, as Keras's in_top_k)."""
    pred = np.asarray(pred, np.float32)
    if pred.ndim != 2:
        raise ValueError(f"top-k accuracy: predictions must have shape (N, classes), got "
                         f"{pred.shape}")
    targets = np.asarray(targets).astype(np.int64).reshape(-1)
    if targets.shape[0] != pred.shape[0]:
        raise ValueError(f"top-k accuracy: {targets.shape[0]} targets for {pred.shape[0]} "
                         "predictions")
    if targets.size and (targets.min() < 0 or targets.max() >= pred.shape[1]):
        raise ValueError(f"top-k accuracy: labels must lie in [0, {pred.shape[1]})")
    if k >= pred.shape[1]:
        return np.ones(len(targets), np.float32)
    kth = -np.partition(-pred, k - 1, axis=1)[:, k - 1]
    return (pred[np.arange(len(targets)), targets] >= kth).astype(np.float32)


def top_k_categorical_accuracy(y_true: Any, y_pred: Any, k: int = 5) -> np.ndarray:
    """1.0 per sample whose true class (argmax of the one-hot ``y_true``) is among the `k`
    highest scores of ``y_pred``, else 0.0; shape (N,)."""
    return _in_top_k(np.argmax(np.asarray(y_true), axis=-1), y_pred, int(k))


def sparse_top_k_categorical_accuracy(y_true: Any, y_pred: Any, k: int = 5) -> np.ndarray:
    """As :func:`top_k_categorical_accuracy` with integer labels ``y_true`` of shape (N,) or
    (N, 1)."""
    return _in_top_k(np.asarray(y_true), y_pred, int(k))


def accuracy(y_true: Any, y_pred: Any) -> np.ndarray:
    """Keras's ``accuracy`` function: the fraction of equal entries along the last axis, per
    sample (exact equality; the name "accuracy" in compile picks categorical, sparse or binary
    accuracy from the targets instead)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return np.mean(y_true == y_pred, axis=-1, dtype=np.float64).astype(np.float32)


class Metric:
    """A metric of compile: ``batch_sum(y_pred, y_true)`` is the sum of its per-sample values
    over a batch; the reported value is the total over all samples seen divided by their
    number."""

    name = "metric"

    def batch_sum(self, y_pred: np.ndarray, y_true: np.ndarray) -> float:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name}


class Accuracy(Metric):
    """compile's "accuracy": categorical (argmax of one-hot targets), sparse (integer labels)
    or binary (a single output column, threshold 0.5), chosen from the targets as Keras does."""

    name = "accuracy"

    def batch_sum(self, y_pred, y_true):
        n = len(y_true)
        if y_true.ndim == 1:
            return float(np.count_nonzero(y_pred.reshape(n, -1).argmax(axis=1) == y_true))
        if y_true.shape[-1] == 1:
            return float(np.count_nonzero((y_pred > 0.5) == (y_true > 0.5)))
        return float(np.count_nonzero(y_pred.argmax(axis=-1) == y_true.argmax(axis=-1)))


class TopKCategoricalAccuracy(Metric):
    """Top-k accuracy against one-hot targets (Keras default k=5)."""

    def __init__(self, k: int = 5, name: str = "top_k_categorical_accuracy") -> None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"{type(self).__name__}: k must be a positive int, got {k!r}")
        self.k = int(k)
        self.name = name

    def batch_sum(self, y_pred, y_true):
        y_pred = y_pred.reshape(len(y_true), -1)
        return float(np.sum(top_k_categorical_accuracy(y_true, y_pred, self.k)))

    def get_config(self):
        return {"k": self.k, "name": self.name}


class SparseTopKCategoricalAccuracy(TopKCategoricalAccuracy):
    """Top-k accuracy against integer labels (Keras default k=5)."""

    def __init__(self, k: int = 5, name: str = "sparse_top_k_categorical_accuracy") -> None:
        super().__init__(k, name)

    def batch_sum(self, y_pred, y_true):
        y_pred = y_pred.reshape(len(y_true), -1)
        return float(np.sum(sparse_top_k_categorical_accuracy(y_true, y_pred, self.k)))


class _FunctionMetric(Metric):
    """A per-sample metric function given to compile."""

    def __init__(self, fn: Any, name: str) -> None:
        self.fn = fn
        self.name = name

    def batch_sum(self, y_pred, y_true):
        return float(np.sum(self.fn(y_true, y_pred)))


_CLASSES = {cls.__name__: cls for cls in (TopKCategoricalAccuracy,
                                          SparseTopKCategoricalAccuracy)}
_BY_NAME = {
    "accuracy": Accuracy, "acc": Accuracy,
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
}
_FUNCTIONS = {top_k_categorical_accuracy: TopKCategoricalAccuracy,
              sparse_top_k_categorical_accuracy: SparseTopKCategoricalAccuracy}


def get(identifier: Any) -> Metric:
    """The metric for a name, one of this module's functions, a metric object or a
    :func:`serialize` dict. Raises ValueError for anything else."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier]()
    if identifier is accuracy:
        return _FunctionMetric(accuracy, "accuracy")
    if callable(identifier) and identifier in _FUNCTIONS:
        return _FUNCTIONS[identifier]()
    if isinstance(identifier, dict) and identifier.get("class_name") in _CLASSES:
        return _CLASSES[identifier["class_name"]](**identifier.get("config", {}))
    raise ValueError(f"unknown metric {identifier!r}; known: {sorted(_BY_NAME)}")


def serialize(metric: Metric) -> str | dict[str, Any]:
    """What a model file stores: the name of a metric made from a name, else
    ``{"class_name": ..., "config": ...}``. Raises ValueError for a metric it cannot store."""
    if type(metric) is Accuracy:
        return "accuracy"
    if type(metric) in _CLASSES.values():
        default = type(metric)()
        if metric.get_config() == default.get_config():
            return metric.name
        return {"class_name": type(metric).__name__, "config": metric.get_config()}
    raise ValueError(f"metric {metric.name!r} cannot be stored by name")
