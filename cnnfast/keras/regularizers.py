"""``keras.regularizers``: L1, L2, L1L2 (and the lower-case aliases)."""

from __future__ import annotations

from cnnfast.regularizers import L1, L1L2, L2, Regularizer, get

l1, l2, l1_l2 = L1, L2, L1L2

__all__ = ["L1", "L1L2", "L2", "Regularizer", "get", "l1", "l1_l2", "l2"]
