"""``keras.datasets.fashion_mnist``."""

from cnnfast.datasets.fashion_mnist import load_data

__all__ = ["load_data"]
