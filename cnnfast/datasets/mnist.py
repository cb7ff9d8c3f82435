"""MNIST handwritten digits (LeCun, Cortes, Burges), as ``keras.datasets.mnist``."""

from __future__ import annotations

import os

from cnnfast.datasets import _idx_dataset, store

NAME = "mnist"
# The Google (CVDF) mirror, then PyTorch's; yann.lecun.com now refuses anonymous downloads.
MIRRORS = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)
# SHA-256 of the upstream .gz files (the same bytes on every mirror).
SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
REMOTES = [store.RemoteFile(f, SHA256[f], tuple(m + f for m in MIRRORS))
           for _, f in _idx_dataset.FILES]


def load_data(path: str | os.PathLike | None = None, *, download: bool = True) -> _idx_dataset.Arrays:
    """Load MNIST as ``(x_train, y_train), (x_test, y_test)``, like ``keras.datasets.mnist``.

    x: uint8 ``(60000, 28, 28)`` and ``(10000, 28, 28)``; y: uint8 ``(60000,)``, ``(10000,)``.

    Parameters
    ----------
    path : path-like, optional
        A directory holding the four IDX files (``train-images-idx3-ubyte[.gz]``, ...), or a
        Keras-style ``mnist.npz``. Unlike Keras, it is not a name inside a cache directory.
        Without it: ``$CNNFAST_DATA/mnist``, ``~/.cache/cnnfast/mnist``,
        ``/usr/share/datasets/mnist``, then a verified download into the cache (see
        :mod:`cnnfast.datasets.store`).
    download : bool
        Allow the download (also disabled by ``CNNFAST_OFFLINE=1``).

    Raises
    ------
    DatasetNotFoundError
        Nothing found and no download possible; the message says where to put the files.
    ValueError
        Corrupt or truncated files, or a download whose checksum does not match.
    """
    return _idx_dataset.load(NAME, REMOTES, path, download)
