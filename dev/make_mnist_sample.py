"""Write the MNIST sample shipped in the package (cnnfast/datasets/mnist_sample/).

    python dev/make_mnist_sample.py [MNIST_DIR]     # default ../shared/datasets/mnist

Draws 1,000 training and 200 test images per class (10,000 / 2,000) from the real MNIST
files with a fixed seed, in a seeded shuffled order, and writes them as the four IDX files
of the upstream layout, gzip-compressed (deterministic bytes: no file name or time stamp in
the gzip header), so the loaders read the sample exactly like the full set. Rerunning it on
the same MNIST files reproduces the committed files byte for byte.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cnnfast.datasets import _idx_dataset, store

SEED = 20261206
PER_CLASS = {"train": 1000, "test": 200}
OUT = ROOT / "cnnfast" / "datasets" / "mnist_sample"


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: magic (0, 0, 0x08, ndim), big-endian dims, data."""
    head = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    return head + np.ascontiguousarray(array, np.uint8).tobytes()


def balanced(x: np.ndarray, y: np.ndarray, per_class: int,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    picks = [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in range(10)]
    order = rng.permutation(np.concatenate(picks))
    return x[order], y[order]


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared/datasets/mnist"
    (x_train, y_train), (x_test, y_test) = _idx_dataset.read_files(
        store.find_files(source, _idx_dataset.WANTED))
    rng = np.random.default_rng(SEED)
    arrays = (*balanced(x_train, y_train, PER_CLASS["train"], rng),
              *balanced(x_test, y_test, PER_CLASS["test"], rng))
    OUT.mkdir(parents=True, exist_ok=True)
    for (_, name), array in zip(_idx_dataset.FILES, arrays):
        with open(OUT / name, "wb") as raw, \
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as f:
            f.write(idx_bytes(array))
        print(f"{OUT / name}: {array.shape} {(OUT / name).stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
