"""MNIST handwritten digits (LeCun, Cortes, Burges), as ``keras.datasets.mnist``."""

from __future__ import annotations

import os
from pathlib import Path

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

# The sample shipped inside the package: 1,000 training and 200 test images per class drawn
# from the real MNIST files above by dev/make_mnist_sample.py (which reproduces these bytes).
# MNIST is distributed under CC BY-SA 3.0 (Yann LeCun and Corinna Cortes).
SAMPLE_DIR = Path(__file__).resolve().parent / "mnist_sample"
SAMPLE_SHA256 = {
    "train-images-idx3-ubyte.gz": "797b3e5ca395fa127e817d552c9b04d65b16e0985c42853815422600ef91da28",
    "train-labels-idx1-ubyte.gz": "e453ac9c5b60889b61fd74baa0286702f8625e9ddf8cf42c04be2d6a3c30ec22",
    "t10k-images-idx3-ubyte.gz": "bae644acef716c9f933029f47f1b4a18ac269627daf47bf0d0d286b9c6aaaee0",
    "t10k-labels-idx1-ubyte.gz": "a07cc48196dcfd43195e82241fc70eb914a124f93aa3a75277757877d5e18fa4",
}
CLASS_NAMES = tuple(str(d) for d in range(10))


def load_data(path: str | os.PathLike | None = None, *, download: bool = True,
              sample: bool = False) -> _idx_dataset.Arrays:
    """Load MNIST as ``(x_train, y_train), (x_test, y_test)``, like ``keras.datasets.mnist``.

    x: uint8 ``(60000, 28, 28)`` and ``(10000, 28, 28)``; y: uint8 ``(60000,)``, ``(10000,)``.
    With ``sample=True``: the class-balanced sample shipped inside the package, 10,000
    training and 2,000 test images (1,000 and 200 per digit) of the real MNIST files, same
    dtypes; it needs no file on disk and no network.

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
        Corrupt or truncated files, or a download whose checksum does not match (for the
        sample: an installed copy whose bytes differ from the published ones).
    """
    if sample:
        if path is not None:
            raise ValueError("mnist.load_data: pass either sample=True or path=, not both")
        return load_sample()
    return _idx_dataset.load(NAME, REMOTES, path, download)


def load_sample() -> _idx_dataset.Arrays:
    """The packaged MNIST sample (see :func:`load_data`), checked against its SHA-256."""
    paths = [SAMPLE_DIR / name for _, name in _idx_dataset.FILES]
    for p in paths:
        if not p.is_file():
            raise store.DatasetNotFoundError(
                f"mnist sample: {p} is missing from the installed package (reinstall cnnfast)")
        if store.sha256_of(p) != SAMPLE_SHA256[p.name]:
            raise ValueError(f"mnist sample: {p} does not match its published SHA-256 "
                             f"{SAMPLE_SHA256[p.name]} (damaged installation; reinstall cnnfast)")
    return _idx_dataset.read_files(paths)
