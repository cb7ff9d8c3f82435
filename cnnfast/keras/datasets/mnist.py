"""``keras.datasets.mnist``."""

from cnnfast.datasets.mnist import load_data

__all__ = ["load_data"]
