"""Plain NumPy float64 reference of every kernel: the spec the C++ kernels are tested against.

Written for clarity, not speed. Layouts: NHWC activations, conv kernels (KH, KW, C_in, C_out),
dense kernels (in, out). Each family has its own section below.
"""

from __future__ import annotations

import numpy as np

# ---- gemm ------------------------------------------------------------------------------


def gemm(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c=None):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    out = alpha * ((a.T if trans_a else a) @ (b.T if trans_b else b))
    if beta != 0.0:
        out = out + beta * np.asarray(c, np.float64)
    return out


# ---- conv2d / dense / pooling -------------------------------------------------------------


# ---- activations / losses / dropout / optimizers -----------------------------------------
