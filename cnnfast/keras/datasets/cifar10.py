"""``keras.datasets.cifar10``."""

from cnnfast.datasets.cifar10 import load_data

__all__ = ["load_data"]
