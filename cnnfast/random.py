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


# Data-parallel training (cnnfast.distributed) sets this to the rank during fit: every rank
# draws the same seeds (one shared generator), and `mask_seed` turns them into a different
# dropout mask stream per rank, as one process would draw different masks for each shard.
_mask_stream = 0


def mask_seed(seed: int) -> int:
    """A dropout mask's seed on this process: `seed` itself, or in a data-parallel run a seed
    of the rank's own stream (a fixed odd multiple of the rank added, modulo 2**64)."""
    if _mask_stream == 0:
        return seed
    return (seed + _mask_stream * 0x9E3779B97F4A7C15) % 2**64


def get_state() -> dict:
    """The generator's complete state (JSON-ready: ints, strings), for exact resume of training."""
    bit_generator = _generator.bit_generator
    return {"bit_generator": type(bit_generator).__name__, "state": bit_generator.state}


def set_state(state: dict) -> None:
    """Restore a state returned by `get_state`; the next draws continue that sequence exactly."""
    global _generator
    if not isinstance(state, dict) or set(state) != {"bit_generator", "state"}:
        raise ValueError(f"random state must be {{'bit_generator': ..., 'state': ...}}, got {state!r}")
    name = state["bit_generator"]
    if name not in ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"):
        raise ValueError(f"unknown bit generator {name!r}")
    bit_generator = getattr(np.random, name)()
    try:
        bit_generator.state = state["state"]
    except (TypeError, ValueError, KeyError, OverflowError) as err:
        raise ValueError(f"invalid {name} state: {err}") from None
    _generator = np.random.Generator(bit_generator)
