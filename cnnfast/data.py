"""Minibatch pipeline: index-gathered batches in reused buffers, and CIFAR-style augmentation.

The dataset is never copied per epoch: each epoch draws a permutation of the sample indices,
and each batch is gathered with ``np.take`` into buffers allocated once. The source arrays may
stay uint8 (a quarter of the memory of float32); ``scale`` converts each batch on the fly.

>>> import cnnfast as cf
>>> from cnnfast.data import BatchIterator, cifar10_augmentation
>>> batches = BatchIterator(x_train, y_train, batch_size=128, scale=1 / 255,
...                         augment=cifar10_augmentation(), seed=0)
>>> model.fit(batches, epochs=30, validation_data=(x_test / 255, y_test))

Randomness (the shuffle order and augmentation draws) comes from ``cnnfast.random``: with
``seed=None`` the global generator, so ``cf.set_seed(n)`` makes a run reproducible; with an
integer ``seed`` a private generator, so the iterator's stream is independent of everything else.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from cnnfast import random as cf_random

Augmentation = Callable[[np.ndarray, np.random.Generator], None]


class RandomCropWithPadding:
    """Zero-pad each image by ``padding`` pixels on every side, then crop a random window of the
    original size (the standard CIFAR-10 augmentation, padding 4).

    Works in place on a ``(B, H, W, C)`` batch. The padding is 0 in the batch's value space, so
    apply it before any mean subtraction to pad with black, as torchvision's RandomCrop does.
    """

    def __init__(self, padding: int = 4) -> None:
        if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
            raise ValueError(f"RandomCropWithPadding: padding must be an int >= 0, got {padding!r}")
        self.padding = int(padding)
        self._padded: np.ndarray | None = None

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> None:
        if batch.ndim != 4:
            raise ValueError(f"RandomCropWithPadding: expected a (B, H, W, C) batch, got {batch.shape}")
        p = self.padding
        if p == 0:
            return
        b, h, w, c = batch.shape
        shape = (b, h + 2 * p, w + 2 * p, c)
        # The border of this buffer is zeroed once and never written; the interior is
        # overwritten by every batch.
        if (self._padded is None or self._padded.shape[1:] != shape[1:]
                or self._padded.shape[0] < b or self._padded.dtype != batch.dtype):
            self._padded = np.zeros(shape, batch.dtype)
        padded = self._padded[:b]
        padded[:, p:p + h, p:p + w] = batch
        dy = rng.integers(0, 2 * p + 1, size=b)
        dx = rng.integers(0, 2 * p + 1, size=b)
        rows = (dy[:, None] + np.arange(h))[:, :, None]  # (B, H, 1)
        cols = (dx[:, None] + np.arange(w))[:, None, :]  # (B, 1, W)
        batch[...] = padded[np.arange(b)[:, None, None], rows, cols]


class RandomFlip:
    """Flip each image left-right with probability ``probability`` (in place on (B, H, W, C)).

    Only ``mode="horizontal"`` is implemented (Keras's RandomFlip also offers "vertical").
    """

    def __init__(self, mode: str = "horizontal", probability: float = 0.5) -> None:
        if mode != "horizontal":
            raise NotImplementedError(f"RandomFlip: mode={mode!r} is not supported (only 'horizontal')")
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"RandomFlip: probability must be in [0, 1], got {probability!r}")
        self.mode = mode
        self.probability = float(probability)

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> None:
        if batch.ndim != 4:
            raise ValueError(f"RandomFlip: expected a (B, H, W, C) batch, got {batch.shape}")
        flip = rng.random(len(batch)) < self.probability
        batch[flip] = batch[flip, :, ::-1]


class Compose:
    """Apply several augmentations in order."""

    def __init__(self, augmentations: Sequence[Augmentation]) -> None:
        self.augmentations = list(augmentations)
        for a in self.augmentations:
            if not callable(a):
                raise TypeError(f"Compose: {a!r} is not callable")

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> None:
        for a in self.augmentations:
            a(batch, rng)


def cifar10_augmentation(padding: int = 4, flip: bool = True) -> Compose:
    """Random crop with zero padding ``padding``, then (optionally) a random horizontal flip."""
    augs: list[Augmentation] = [RandomCropWithPadding(padding)]
    if flip:
        augs.append(RandomFlip("horizontal"))
    return Compose(augs)


class BatchIterator:
    """Iterate over ``(x_batch, y_batch)`` minibatches for one epoch per ``iter()``.

    Parameters
    ----------
    x : array (N, ...)
        Samples, any numeric dtype (uint8 images stay uint8 in memory).
    y : array (N, ...), optional
        Targets; without them the iterator yields ``x_batch`` alone.
    batch_size : int
        Samples per batch; the last batch is smaller unless ``drop_remainder``.
    shuffle : bool
        Draw a new permutation every epoch.
    augment : callable, optional
        ``augment(batch, rng)`` modifying the float batch in place (e.g.
        :func:`cifar10_augmentation`), applied after the dtype conversion and scaling.
    scale : float, optional
        Multiply each batch by this (e.g. ``1 / 255`` for uint8 images).
    dtype : dtype
        The batches' dtype (float32, what the model computes in).
    seed : int, optional
        Private generator for shuffling and augmentation; None uses cnnfast's global generator
        (``cnnfast.set_seed``).
    drop_remainder : bool
        Skip the last, incomplete batch.
    sample_weight : array (N,), optional
        Per-sample weights (needs ``y``); the iterator then yields ``(x_batch, y_batch,
        w_batch)`` and ``fit`` scales each sample's loss by its weight.

    Notes
    -----
    The yielded arrays are views of internal buffers that the next batch overwrites; copy
    them to keep them. Nothing proportional to N is allocated per epoch except the
    permutation (8 bytes per sample).
    """

    def __init__(self, x: Any, y: Any = None, batch_size: int = 32, shuffle: bool = True,
                 augment: Augmentation | None = None, scale: float | None = None,
                 dtype: Any = np.float32, seed: int | None = None,
                 drop_remainder: bool = False, sample_weight: Any = None) -> None:
        x = np.asarray(x)
        if x.dtype.kind not in "fiub":
            raise TypeError(f"BatchIterator: x must be a numeric array, got dtype {x.dtype}")
        if x.ndim < 1 or len(x) == 0:
            raise ValueError(f"BatchIterator: x must hold at least one sample, got shape {x.shape}")
        if y is not None:
            y = np.asarray(y)
            if y.ndim == 0 or len(y) != len(x):
                raise ValueError(
                    f"BatchIterator: x and y have different numbers of samples: x {x.shape}, y {y.shape}"
                )
        if sample_weight is not None:
            if y is None:
                raise ValueError("BatchIterator: sample_weight needs targets y")
            sample_weight = self._checked_weights(sample_weight, len(x))
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise ValueError(f"BatchIterator: batch_size must be a positive integer, got {batch_size!r}")
        if augment is not None and not callable(augment):
            raise TypeError(f"BatchIterator: augment must be callable(batch, rng), got {augment!r}")
        if drop_remainder and batch_size > len(x):
            raise ValueError(f"BatchIterator: drop_remainder with batch_size {batch_size} > {len(x)} samples")
        self.x = x
        self.y = y
        self.sample_weight: np.ndarray | None = sample_weight
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.augment = augment
        self.scale = None if scale is None else float(scale)
        self.dtype = np.dtype(dtype)
        self.seed = seed
        self.drop_remainder = bool(drop_remainder)
        self._rng = np.random.default_rng(seed) if seed is not None else None
        self._buffers: dict[str, np.ndarray] = {}

    @property
    def num_samples(self) -> int:
        return len(self.x)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        """Batches per epoch."""
        n, b = len(self.x), self.batch_size
        return n // b if self.drop_remainder else -(-n // b)

    def rng(self) -> np.random.Generator:
        """The generator this iterator draws from (looked up per call: set_seed replaces it)."""
        return self._rng if self._rng is not None else cf_random.generator()

    def with_targets(self, y: Any) -> BatchIterator:
        """A copy with other targets (same samples, settings and generator), e.g. converted ones."""
        other = copy.copy(self)
        y = np.asarray(y)
        if y.ndim == 0 or len(y) != len(self.x):
            raise ValueError(f"BatchIterator: {len(self.x)} samples but targets of shape {y.shape}")
        other.y = y
        other._buffers = {}
        return other

    def with_sample_weight(self, sample_weight: Any) -> BatchIterator:
        """A copy yielding these per-sample weights as a third item of every batch."""
        if self.y is None:
            raise ValueError("BatchIterator: sample_weight needs targets y")
        other = copy.copy(self)
        other.sample_weight = self._checked_weights(sample_weight, len(self.x))
        other._buffers = {}
        return other

    @staticmethod
    def _checked_weights(sample_weight: Any, n: int) -> np.ndarray:
        w = np.asarray(sample_weight)
        if w.dtype.kind not in "fiub" or w.shape not in ((n,), (n, 1)):
            raise ValueError(f"BatchIterator: sample_weight must be {n} numbers (shape ({n},)), "
                             f"got shape {w.shape} and dtype {w.dtype}")
        return np.ascontiguousarray(w.reshape(n), np.float64)

    def _buffer(self, key: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        buf = self._buffers.get(key)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = np.empty(shape, dtype)
            self._buffers[key] = buf
        return buf

    def __iter__(self) -> Iterator[Any]:
        n = len(self.x)
        rng = self.rng()
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        full = min(self.batch_size, n)
        direct = self.x.dtype == self.dtype and self.scale is None
        xbuf = self._buffer("x", (full,) + self.sample_shape, self.dtype)
        raw = None if direct else self._buffer("raw", (full,) + self.sample_shape, self.x.dtype)
        ybuf = None if self.y is None else self._buffer("y", (full,) + self.y.shape[1:], self.y.dtype)
        wbuf = None if self.sample_weight is None else self._buffer("w", (full,), np.float64)
        # The indices are a permutation of range(n), always in bounds: mode="clip" only skips
        # the temporary copy NumPy makes for out= under the default mode="raise" (3x slower).
        for step in range(len(self)):
            idx = order[step * self.batch_size:(step + 1) * self.batch_size]
            xb = xbuf[:len(idx)]
            if direct:
                np.take(self.x, idx, axis=0, out=xb, mode="clip")
            else:
                rb = raw[:len(idx)]
                np.take(self.x, idx, axis=0, out=rb, mode="clip")
                if self.scale is None:
                    xb[...] = rb
                else:
                    np.multiply(rb, self.dtype.type(self.scale), out=xb, dtype=self.dtype)
            if self.augment is not None:
                self.augment(xb, rng)
            if ybuf is None:
                yield xb
            else:
                yb = ybuf[:len(idx)]
                np.take(self.y, idx, axis=0, out=yb, mode="clip")
                if wbuf is None:
                    yield xb, yb
                else:
                    wb = wbuf[:len(idx)]
                    np.take(self.sample_weight, idx, out=wb, mode="clip")
                    yield xb, yb, wb


__all__ = [
    "Augmentation", "BatchIterator", "Compose", "RandomCropWithPadding", "RandomFlip",
    "cifar10_augmentation",
]
