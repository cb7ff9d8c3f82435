"""Datasets with the Keras loaders' names and return values, and their file readers.

>>> from cnnfast.datasets import mnist
>>> (x_train, y_train), (x_test, y_test) = mnist.load_data()   # uint8, as Keras returns

Lookup order, downloads and checksums: :mod:`cnnfast.datasets.store`.
"""

from cnnfast.datasets import cifar10, fashion_mnist, mnist, store
from cnnfast.datasets.cifar import parse_cifar10_batch, read_cifar10_batch
from cnnfast.datasets.idx import parse_idx, read_idx
from cnnfast.datasets.store import DatasetNotFoundError

__all__ = [
    "DatasetNotFoundError", "cifar10", "fashion_mnist", "mnist", "parse_cifar10_batch",
    "parse_idx", "read_cifar10_batch", "read_idx", "store",
]
