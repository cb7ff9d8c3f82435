"""Reader for the IDX format of MNIST-style datasets (raw or gzip-compressed)."""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Sequence

import numpy as np

# IDX type codes -> big-endian NumPy dtypes (http://yann.lecun.com/exdb/mnist/).
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_MAX_BYTES = 1 << 34  # refuse headers claiming more than 16 GiB: corrupt, not a dataset


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes into an array (uint8 data stays uint8), validating every size."""
    if len(data) < 4:
        raise ValueError(f"{source}: not an IDX file (only {len(data)} bytes)")
    zero, type_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or type_code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(f"{source}: not an IDX file (bad magic {data[:4].hex()})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{source}: truncated IDX header ({len(data)} bytes, need {header})")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[type_code])
    count = 1
    for s in shape:
        count *= s
    expected = count * dtype.itemsize
    # The nonzero sizes too: (2, 0, 2**24, 2**26) holds no bytes, but NumPy cannot make the shape.
    spanned = dtype.itemsize
    for s in shape:
        spanned *= max(s, 1)
    if spanned > _MAX_BYTES:
        raise ValueError(f"{source}: IDX header claims an implausible shape {shape}")
    if len(data) - header != expected:
        raise ValueError(
            f"{source}: IDX payload is {len(data) - header} bytes, but shape {shape} of "
            f"{dtype.name} needs {expected} (truncated or corrupt file)"
        )
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


def decompress_if_gzip(raw: bytes, source: str) -> bytes:
    """Bytes as stored, or gunzipped when they start with the gzip magic (1f 8b)."""
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{source}: corrupt or truncated gzip data ({err})") from None


def read_idx(path: str | os.PathLike, shape: Sequence[int | None] | None = None,
             dtype: str | np.dtype | None = None) -> np.ndarray:
    """Read an IDX file, raw or gzip-compressed (chosen by the gzip magic, not the suffix).

    Parameters
    ----------
    path : path-like
        The file.
    shape : sequence of int or None, optional
        Expected shape, None for a free dimension, e.g. ``(None, 28, 28)`` for MNIST images.
    dtype : dtype, optional
        Expected element type, e.g. ``np.uint8``.

    Raises
    ------
    ValueError
        Bad magic, truncated or corrupt data (gzip or IDX), or a shape/dtype other than expected.
    """
    with open(path, "rb") as f:
        raw = f.read()
    arr = parse_idx(decompress_if_gzip(raw, str(path)), str(path))
    if dtype is not None and arr.dtype != np.dtype(dtype):
        raise ValueError(f"{path}: IDX data is {arr.dtype}, expected {np.dtype(dtype)}")
    if shape is not None and (arr.ndim != len(shape) or any(
            want is not None and got != want for got, want in zip(arr.shape, shape))):
        dims = ["N" if s is None else str(s) for s in shape]
        want = "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
        raise ValueError(f"{path}: IDX array has shape {arr.shape}, expected {want}")
    return arr
