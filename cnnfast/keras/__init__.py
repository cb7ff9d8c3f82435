"""Keras-compatible names: a Keras CNN script runs after changing only its imports.

>>> from cnnfast import keras
>>> from cnnfast.keras import layers
>>> model = keras.Sequential([keras.Input(shape=(28, 28, 1)),
...                           layers.Conv2D(32, (3, 3), activation="relu"),
...                           layers.MaxPooling2D((2, 2)), layers.Flatten(),
...                           layers.Dense(10, activation="softmax")])

Known Keras features that cnnfast lacks (``data_format="channels_first"``, ...) raise NotImplementedError naming the feature.
"""

from cnnfast.keras import (
    backend,
    callbacks,
    datasets,
    initializers,
    layers,
    losses,
    metrics,
    mixed_precision,
    models,
    optimizers,
    regularizers,
    utils,
)
from cnnfast.keras._unsupported import unsupported
from cnnfast.layers import Input
from cnnfast.model import Model, Sequential
from cnnfast.saving import load_model

__getattr__ = unsupported(__name__, {
    "applications": "no pretrained models",
    "ops": "no tensor ops API; layers run on NumPy arrays",
    "preprocessing": "use cnnfast.data (BatchIterator, augmentation)",
})

__all__ = [
    "Input",
    "Model",
    "Sequential",
    "backend",
    "callbacks",
    "datasets",
    "initializers",
    "layers",
    "load_model",
    "losses",
    "metrics",
    "mixed_precision",
    "models",
    "optimizers",
    "regularizers",
    "utils",
]
