"""Reader for the CIFAR-10 binary batches (data_batch_1..5.bin, test_batch.bin).

Each record is 1 label byte followed by 3072 pixel bytes: the 1024 red values of the 32x32
image in row-major order, then the 1024 green, then the 1024 blue (Krizhevsky 2009,
https://www.cs.toronto.edu/~kriz/cifar.html). Images are returned channels-last.
"""

from __future__ import annotations

import os

import numpy as np

from cnnfast.datasets.idx import decompress_if_gzip

HEIGHT = WIDTH = 32
CHANNELS = 3
RECORD_BYTES = 1 + HEIGHT * WIDTH * CHANNELS  # 3073
CLASSES = 10
RECORDS_PER_BATCH = 10000


def parse_cifar10_batch(data: bytes, source: str = "<bytes>",
                        records: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode CIFAR-10 binary records into ``x (N, 32, 32, 3) uint8`` and ``y (N,) uint8``.

    Parameters
    ----------
    data : bytes
        The file's contents (a whole number of 3073-byte records).
    source : str
        Name used in error messages.
    records : int, optional
        Expected number of records (10000 in every official batch file).

    Raises
    ------
    ValueError
        Empty, truncated or corrupt data: a size that is not a whole number of records, a
        record count other than ``records``, or a label outside 0..9.
    """
    size = len(data)
    if size == 0 or size % RECORD_BYTES:
        raise ValueError(
            f"{source}: {size} bytes is not a whole number of CIFAR-10 records of {RECORD_BYTES} "
            f"bytes (1 label + 32*32*3 pixels): truncated or not a CIFAR-10 binary batch"
        )
    n = size // RECORD_BYTES
    if records is not None and n != records:
        raise ValueError(f"{source}: {n} CIFAR-10 records, expected {records} (truncated or wrong file)")
    table = np.frombuffer(data, np.uint8).reshape(n, RECORD_BYTES)
    labels = table[:, 0].copy()
    if labels.max() >= CLASSES:
        bad = int(np.argmax(labels >= CLASSES))
        raise ValueError(
            f"{source}: record {bad} has label {labels[bad]} (must be 0..{CLASSES - 1}): "
            f"corrupt file or not CIFAR-10 (CIFAR-100 records have 2 label bytes)"
        )
    # (N, C, H, W) planes -> (N, H, W, C)
    images = table[:, 1:].reshape(n, CHANNELS, HEIGHT, WIDTH).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def read_cifar10_batch(path: str | os.PathLike,
                       records: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 binary batch file (raw, or gzip-compressed) as ``(x, y)``.

    ``x`` is ``(N, 32, 32, 3)`` uint8 channels-last, ``y`` is ``(N,)`` uint8; see
    :func:`parse_cifar10_batch` for the checks.
    """
    with open(path, "rb") as f:
        raw = f.read()
    return parse_cifar10_batch(decompress_if_gzip(raw, str(path)), str(path), records)
