"""CIFAR-10 (Krizhevsky 2009), as ``keras.datasets.cifar10``, read from the binary version.

Labels: 0 airplane, 1 automobile, 2 bird, 3 cat, 4 deer, 5 dog, 6 frog, 7 horse, 8 ship,
9 truck.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np

from cnnfast.datasets import store
from cnnfast.datasets.cifar import RECORDS_PER_BATCH, parse_cifar10_batch, read_cifar10_batch

NAME = "cifar10"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
BATCH_FILES = TRAIN_FILES + (TEST_FILE,)
WANTED = [[f] for f in BATCH_FILES]
ARCHIVE_DIR = "cifar-10-batches-bin"  # the directory inside the official archive
# The "CIFAR-10 binary version" from the dataset's page (md5 c32a1d4ab5d03f1284b67883e8d87530).
ARCHIVE = store.RemoteFile(
    "cifar-10-binary.tar.gz",
    "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
    ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
    size=170052171,
)
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck")
_NOTE = (f"(or their {ARCHIVE_DIR}/ subdirectory as the archive unpacks, or the archive "
         f"{ARCHIVE.name} itself)")
Arrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _assemble(batches: list[tuple[np.ndarray, np.ndarray]]) -> Arrays:
    # Keras returns labels as (N, 1) uint8 for CIFAR-10.
    x_train = np.concatenate([b[0] for b in batches[:5]])
    y_train = np.concatenate([b[1] for b in batches[:5]]).reshape(-1, 1)
    x_test, y_test = batches[5]
    return (x_train, y_train), (x_test, y_test.reshape(-1, 1))


def read_files(paths: list[Path]) -> Arrays:
    """Read the five training batches and the test batch (10000 records each)."""
    return _assemble([read_cifar10_batch(p, RECORDS_PER_BATCH) for p in paths])


def read_archive(path: Path) -> Arrays:
    """Read the batches straight out of ``cifar-10-binary.tar.gz`` (nothing is extracted)."""
    batches = []
    try:
        with tarfile.open(path, "r:gz") as tar:
            for name in BATCH_FILES:
                member = tar.extractfile(f"{ARCHIVE_DIR}/{name}")
                if member is None:
                    raise ValueError(f"{path}: {ARCHIVE_DIR}/{name} is not a regular file")
                batches.append(parse_cifar10_batch(member.read(), f"{path}:{name}", RECORDS_PER_BATCH))
    except KeyError as err:
        raise ValueError(f"{path}: not the CIFAR-10 binary archive ({err})") from None
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ValueError(f"{path}: corrupt or truncated archive ({err})") from None
    return _assemble(batches)


def _extract(archive: Path, directory: Path) -> None:
    """Write the six batch files out of the archive, each atomically, by our own names."""
    with tarfile.open(archive, "r:gz") as tar:
        for name in BATCH_FILES:
            member = tar.extractfile(f"{ARCHIVE_DIR}/{name}")
            if member is None:
                raise ValueError(f"{archive}: {ARCHIVE_DIR}/{name} is not a regular file")
            data = member.read()
            parse_cifar10_batch(data, f"{archive}:{name}", RECORDS_PER_BATCH)
            tmp = directory / f".{name}.part"
            tmp.write_bytes(data)
            os.replace(tmp, directory / name)


def _find_in(directory: Path) -> Arrays | None:
    """A directory with the batch files, with the archive's cifar-10-batches-bin/, or with the
    archive itself."""
    for d in (directory, directory / ARCHIVE_DIR):
        found = store.find_files(d, WANTED)
        if found is not None:
            return read_files(found)
    if (directory / ARCHIVE.name).is_file():
        return read_archive(directory / ARCHIVE.name)
    return None


def load_data(path: str | os.PathLike | None = None, *, download: bool = True) -> Arrays:
    """Load CIFAR-10 as ``(x_train, y_train), (x_test, y_test)``, like ``keras.datasets.cifar10``.

    x: uint8 ``(50000, 32, 32, 3)`` / ``(10000, 32, 32, 3)`` channels-last; y: uint8
    ``(50000, 1)`` / ``(10000, 1)`` (Keras's shape).

    Parameters
    ----------
    path : path-like, optional
        A directory holding ``data_batch_1.bin`` .. ``data_batch_5.bin`` and ``test_batch.bin``
        (directly or in ``cifar-10-batches-bin/``), or ``cifar-10-binary.tar.gz`` itself, or a
        directory holding that archive. Without it: ``$CNNFAST_DATA/cifar10``,
        ``~/.cache/cnnfast/cifar10``, ``/usr/share/datasets/cifar10``, then a verified download
        of the 170 MB archive, whose batch files are extracted into the cache.
    download : bool
        Allow the download (also disabled by ``CNNFAST_OFFLINE=1``).

    Raises
    ------
    DatasetNotFoundError
        Nothing found and no download possible; the message says where to put the files.
    ValueError
        Corrupt or truncated files, or a download whose checksum does not match.
    """
    if path is not None:
        p = Path(path).expanduser()
        if p.is_file():
            return read_archive(p)
        if not p.is_dir():
            raise FileNotFoundError(f"{NAME}: path={str(path)!r} does not exist")
        arrays = _find_in(p)
        if arrays is None:
            raise FileNotFoundError(
                f"{NAME}: {p} holds neither the batch files ({', '.join(BATCH_FILES)}) nor "
                f"{ARCHIVE_DIR}/ nor {ARCHIVE.name}")
        return arrays
    dirs = store.search_dirs(NAME, aliases=("cifar-10",))
    for _, d in dirs:
        arrays = _find_in(d)
        if arrays is not None:
            return arrays
    if not download or store.offline():
        why = "download disabled" + (f" by ${store.ENV_OFFLINE}" if store.offline() else "")
        raise store.not_found(NAME, dirs, WANTED, [ARCHIVE], why, _NOTE)
    cache = store.cache_root() / NAME
    try:
        archive = store.download(ARCHIVE, cache)
    except OSError as err:
        raise store.not_found(NAME, dirs, WANTED, [ARCHIVE], f"offline? {err}", _NOTE) from None
    _extract(archive, cache)
    archive.unlink()
    return read_files([cache / f for f in BATCH_FILES])
