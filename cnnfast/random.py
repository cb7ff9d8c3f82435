"""The library's one source of randomness: weight init, shuffling and dropout masks.

`set_seed(n)` makes every later model build and fit reproducible.
"""

from __future__ import annotations

import numpy as np

_generator = np.random.default_rng()


def set_seed(seed: int) -> None:
    """Seed cnnfast's random generator (weight init, shuffling, dropout)."""
    global _generator
    _generator = np.random.default_rng(seed)


def generator() -> np.random.Generator:
    """The current global generator."""
    return _generator


def next_seed() -> int:
    """A fresh 63-bit seed drawn from the global generator (for C++ counter-based RNGs)."""
    return int(_generator.integers(0, 2**63 - 1))
