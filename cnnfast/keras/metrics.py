"""``keras.metrics``: accuracy and top-k categorical accuracy (cnnfast.metrics)."""

from __future__ import annotations

from cnnfast.keras._unsupported import unsupported
from cnnfast.metrics import (
    Metric,
    SparseTopKCategoricalAccuracy,
    TopKCategoricalAccuracy,
    accuracy,
    get,
    serialize,
    sparse_top_k_categorical_accuracy,
    top_k_categorical_accuracy,
)

_LATER = "not implemented; compile(metrics=[...]) takes 'accuracy' and the top-k accuracies"
__getattr__ = unsupported(__name__, {
    name: _LATER for name in (
        "AUC", "Precision", "Recall", "F1Score", "MeanIoU", "BinaryAccuracy",
        "CategoricalAccuracy", "SparseCategoricalAccuracy", "Mean", "MeanSquaredError",
        "MeanAbsoluteError", "categorical_accuracy", "sparse_categorical_accuracy",
        "binary_accuracy", "mean_squared_error", "mean_absolute_error",
    )
})

__all__ = ["Metric", "SparseTopKCategoricalAccuracy", "TopKCategoricalAccuracy", "accuracy",
           "get", "serialize", "sparse_top_k_categorical_accuracy", "top_k_categorical_accuracy"]
