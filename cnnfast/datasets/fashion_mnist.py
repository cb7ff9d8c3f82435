"""Fashion-MNIST (Xiao, Rasul, Vollgraf 2017), as ``keras.datasets.fashion_mnist``.

Labels: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker,
8 Bag, 9 Ankle boot.
"""

from __future__ import annotations

import os

from cnnfast.datasets import _idx_dataset, store

NAME = "fashion-mnist"  # the Debian package's directory: /usr/share/datasets/fashion-mnist
MIRRORS = (
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)
# SHA-256 of the files published by Zalando Research (md5 8d4fb7e6..., 25c81989...,
# bef4ecab..., bb300cfd... in their README).
SHA256 = {
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}
REMOTES = [store.RemoteFile(f, SHA256[f], tuple(m + f for m in MIRRORS))
           for _, f in _idx_dataset.FILES]
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot")


def load_data(path: str | os.PathLike | None = None, *, download: bool = True) -> _idx_dataset.Arrays:
    """Load Fashion-MNIST as ``(x_train, y_train), (x_test, y_test)`` (uint8, like Keras).

    Same shapes and lookup as :func:`cnnfast.datasets.mnist.load_data`, in directories named
    ``fashion-mnist`` (``$CNNFAST_DATA/fashion-mnist``, ``~/.cache/cnnfast/fashion-mnist``, and
    ``/usr/share/datasets/fashion-mnist`` where Debian's ``dataset-fashion-mnist`` installs it).
    """
    return _idx_dataset.load(NAME, REMOTES, path, download, aliases=("fashion_mnist",))
