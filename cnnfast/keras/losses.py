"""``keras.losses``: cross-entropies and mean squared error, as classes and as Keras 2's
functions (``keras.losses.categorical_crossentropy``), which compile takes too."""

from __future__ import annotations

from cnnfast.keras._unsupported import unsupported
from cnnfast.losses import (
    CategoricalCrossentropy,
    Loss,
    MeanSquaredError,
    SparseCategoricalCrossentropy,
    categorical_crossentropy,
    get,
    mean_squared_error,
    mse,
    sparse_categorical_crossentropy,
)

MSE = MeanSquaredError

_LATER = "not implemented; use categorical_crossentropy, sparse_categorical_crossentropy or mse"
__getattr__ = unsupported(__name__, {
    name: _LATER for name in (
        "BinaryCrossentropy", "BinaryFocalCrossentropy", "CategoricalFocalCrossentropy",
        "MeanAbsoluteError", "MeanAbsolutePercentageError", "MeanSquaredLogarithmicError",
        "Huber", "LogCosh", "KLDivergence", "Poisson", "Hinge", "SquaredHinge",
        "CategoricalHinge", "CosineSimilarity", "binary_crossentropy", "mean_absolute_error",
        "mae", "huber", "kl_divergence", "hinge",
    )
})

__all__ = ["MSE", "CategoricalCrossentropy", "Loss", "MeanSquaredError",
           "SparseCategoricalCrossentropy", "categorical_crossentropy", "get",
           "mean_squared_error", "mse", "sparse_categorical_crossentropy"]
