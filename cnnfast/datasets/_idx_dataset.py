"""The shared loader of MNIST-format datasets (four IDX files, 28x28 uint8 images)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cnnfast.datasets import store
from cnnfast.datasets.idx import read_idx

# (role, upstream file name); local copies may also be decompressed or use the dotted names
# some mirrors use (train-images.idx3-ubyte).
FILES = (
    ("x_train", "train-images-idx3-ubyte.gz"),
    ("y_train", "train-labels-idx1-ubyte.gz"),
    ("x_test", "t10k-images-idx3-ubyte.gz"),
    ("y_test", "t10k-labels-idx1-ubyte.gz"),
)
Arrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _local_names(gz_name: str) -> list[str]:
    raw = gz_name[:-3]
    dotted = raw.replace("-idx", ".idx")
    return [gz_name, raw, dotted + ".gz", dotted]


WANTED = [_local_names(f) for _, f in FILES]


def _check_pair(images: np.ndarray, labels: np.ndarray, classes: int, what: str) -> None:
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"{what}: {len(images)} images but labels of shape {labels.shape}")
    if labels.size and labels.max() >= classes:
        raise ValueError(f"{what}: label {labels.max()} is out of range 0..{classes - 1} (corrupt file)")


def read_files(paths: list[Path], classes: int = 10) -> Arrays:
    """Read and cross-check the four IDX files (images (N, 28, 28) uint8, labels (N,) uint8)."""
    x_train = read_idx(paths[0], shape=(None, 28, 28), dtype=np.uint8)
    y_train = read_idx(paths[1], shape=(None,), dtype=np.uint8)
    x_test = read_idx(paths[2], shape=(None, 28, 28), dtype=np.uint8)
    y_test = read_idx(paths[3], shape=(None,), dtype=np.uint8)
    _check_pair(x_train, y_train, classes, f"{paths[0]} / {paths[1]}")
    _check_pair(x_test, y_test, classes, f"{paths[2]} / {paths[3]}")
    return (x_train, y_train), (x_test, y_test)


def read_npz(path: Path, classes: int = 10) -> Arrays:
    """Keras's mnist.npz layout: arrays x_train, y_train, x_test, y_test."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: np.asarray(f[k]) for k in ("x_train", "y_train", "x_test", "y_test")}
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{path}: not a Keras-style MNIST .npz ({err})") from None
    for k in ("x_train", "x_test"):
        a = arrays[k]
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[1:] != (28, 28):
            raise ValueError(f"{path}: {k} is {a.dtype} {a.shape}, expected uint8 (N, 28, 28)")
    for k in ("y_train", "y_test"):
        arrays[k] = arrays[k].astype(np.uint8) if arrays[k].dtype.kind in "iu" else arrays[k]
        if arrays[k].dtype != np.uint8:
            raise ValueError(f"{path}: {k} has dtype {arrays[k].dtype}, expected integers")
    _check_pair(arrays["x_train"], arrays["y_train"], classes, f"{path} train")
    _check_pair(arrays["x_test"], arrays["y_test"], classes, f"{path} test")
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def load(name: str, remotes: list[store.RemoteFile], path: str | os.PathLike | None,
         download: bool, aliases: tuple[str, ...] = ()) -> Arrays:
    """Locate (or download) and read an MNIST-format dataset."""
    if path is not None and Path(path).expanduser().is_file():
        if str(path).endswith(".npz"):
            return read_npz(Path(path).expanduser())
        raise ValueError(f"{name}: path={str(path)!r} is a file; pass the directory holding "
                         f"the four IDX files (or a Keras-style .npz)")
    found, dirs = store.locate(name, WANTED, path, aliases)
    if found is not None:
        return read_files(found)
    if not download or store.offline():
        why = "download disabled" + (f" by ${store.ENV_OFFLINE}" if store.offline() else "")
        raise store.not_found(name, dirs, WANTED, remotes, why)
    cache = store.cache_root() / name
    try:
        for remote, names in zip(remotes, WANTED):
            if not any((cache / n).is_file() for n in names):
                store.download(remote, cache)
    except OSError as err:
        raise store.not_found(name, dirs, WANTED, remotes, f"offline? {err}") from None
    return read_files(store.find_files(cache, WANTED))
