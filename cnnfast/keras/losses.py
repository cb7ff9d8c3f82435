"""``keras.losses``: the cross-entropies, mean squared and absolute error, Huber, KL divergence
and categorical hinge, as classes and as Keras 2's functions
(``keras.losses.categorical_crossentropy``), which compile takes too."""

from __future__ import annotations

from cnnfast.keras._unsupported import unsupported
from cnnfast.losses import (
    KLD,
    MAE,
    BinaryCrossentropy,
    CategoricalCrossentropy,
    CategoricalHinge,
    Huber,
    KLDivergence,
    Loss,
    MeanAbsoluteError,
    MeanSquaredError,
    SparseCategoricalCrossentropy,
    binary_crossentropy,
    categorical_crossentropy,
    categorical_hinge,
    deserialize,
    get,
    huber,
    kl_divergence,
    kld,
    mae,
    mean_absolute_error,
    mean_squared_error,
    mse,
    serialize,
    sparse_categorical_crossentropy,
)

MSE = MeanSquaredError

_LATER = ("not implemented; use binary_crossentropy, categorical_crossentropy, "
          "sparse_categorical_crossentropy, mse, mae, huber, kl_divergence or categorical_hinge")
__getattr__ = unsupported(__name__, {
    name: _LATER for name in (
        "BinaryFocalCrossentropy", "CategoricalFocalCrossentropy",
        "MeanAbsolutePercentageError", "MeanSquaredLogarithmicError", "LogCosh", "Poisson",
        "Hinge", "SquaredHinge", "CosineSimilarity", "hinge",
    )
})

__all__ = ["KLD", "MAE", "MSE", "BinaryCrossentropy", "CategoricalCrossentropy",
           "CategoricalHinge", "Huber", "KLDivergence", "Loss", "MeanAbsoluteError",
           "MeanSquaredError", "SparseCategoricalCrossentropy", "binary_crossentropy",
           "categorical_crossentropy", "categorical_hinge", "deserialize", "get", "huber",
           "kl_divergence", "kld", "mae", "mean_absolute_error", "mean_squared_error", "mse",
           "serialize", "sparse_categorical_crossentropy"]
