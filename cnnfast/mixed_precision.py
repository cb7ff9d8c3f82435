"""Mixed-precision training: the precision names ``compile(precision=...)`` takes and the global
policy it falls back to (Keras' ``keras.mixed_precision``, with its two CPU policies).

``"bfloat16"`` (Keras' ``"mixed_bfloat16"``) trains with bfloat16 operands in the convolutions'
and dense layers' products and float32 everywhere else (weights, gradients, optimizer state,
loss); see :meth:`cnnfast.Model.compile`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from cnnfast import _core

PRECISIONS = ("float32", "bfloat16")
# Keras' policy names for the same two.
_ALIASES = {"float32": "float32", "bfloat16": "bfloat16", "mixed_bfloat16": "bfloat16"}

_global_policy = "float32"


class Policy:
    """A dtype policy by name: ``"float32"`` or ``"mixed_bfloat16"`` (as in Keras)."""

    def __init__(self, name: str) -> None:
        self.precision = resolve(name, "Policy")
        self.name = "mixed_bfloat16" if self.precision == "bfloat16" else "float32"
        self.compute_dtype = self.precision
        self.variable_dtype = "float32"

    def __repr__(self) -> str:
        return f'<Policy "{self.name}">'


def resolve(name: str | Policy | None, where: str) -> str:
    """The precision a name stands for ("float32" or "bfloat16"); None: the global policy."""
    if name is None:
        return _global_policy
    if isinstance(name, Policy):
        return name.precision
    if not isinstance(name, str) or name not in _ALIASES:
        raise ValueError(f"{where}: unknown precision {name!r}; use 'float32' or 'bfloat16' "
                         "(or Keras' 'mixed_bfloat16'); cnnfast trains in no other "
                         "(float16 has no fast path on a CPU)")
    return _ALIASES[name]


def set_global_policy(policy: str | Policy) -> None:
    """The precision that later ``compile()`` calls without ``precision=`` take."""
    global _global_policy
    _global_policy = resolve(policy, "set_global_policy")


def global_policy() -> Policy:
    return Policy(_global_policy)


@contextlib.contextmanager
def products_in(precision: str) -> Iterator[None]:
    """Runs the block with the kernels' products in ``precision`` (process-wide, as the
    switch in gemm_bf16.h is), restoring the previous setting after."""
    previous = _core.set_bf16_products(precision == "bfloat16")
    try:
        yield
    finally:
        _core.set_bf16_products(previous)
