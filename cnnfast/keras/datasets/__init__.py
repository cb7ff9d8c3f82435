"""``keras.datasets``: mnist, fashion_mnist, cifar10 (uint8 arrays, as Keras returns them)."""

from cnnfast.keras._unsupported import unsupported
from cnnfast.keras.datasets import cifar10, fashion_mnist, mnist

__getattr__ = unsupported(__name__, {
    "cifar100": "not implemented", "imdb": "no text datasets", "reuters": "no text datasets",
    "boston_housing": "not implemented", "california_housing": "not implemented",
})

__all__ = ["cifar10", "fashion_mnist", "mnist"]
