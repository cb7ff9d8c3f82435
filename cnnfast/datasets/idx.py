"""Reader for the IDX format of MNIST-style datasets (raw or gzip-compressed)."""

from __future__ import annotations

import gzip
import os
import struct

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
    if expected > _MAX_BYTES:
        raise ValueError(f"{source}: IDX header claims an implausible shape {shape}")
    if len(data) - header != expected:
        raise ValueError(
            f"{source}: IDX payload is {len(data) - header} bytes, but shape {shape} of "
            f"{dtype.name} needs {expected} (truncated or corrupt file)"
        )
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file; a .gz suffix or gzip magic selects decompression."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile) as err:
            raise ValueError(f"{path}: corrupt gzip data ({err})") from None
    return parse_idx(raw, str(path))
