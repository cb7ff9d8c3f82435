"""The share of a `perf report` profile in cnnfast's FP32 multiply-add micro-kernels.

    perf report -i step.data --no-children --stdio --sort sym | python dev/perf_share.py

Counts the 14x32 GEMM micro-kernel and the direct/Winograd convolution tiles, the work a
reduced-precision kernel (vdpbf16ps: twice FMA's multiply-adds per instruction) would take
over; the rest is transforms, packing, copies and element-wise passes. Leaves out the kernel's
page clearing (first-touch faults of the warm-up) and OpenBLAS's idle worker thread, neither part
of a step. With a share f, doubling those kernels' rate gives at most 1 / (1 - f / 2).
"""

from __future__ import annotations

import re
import sys

MULTIPLY_ADD = re.compile(r"ukernel_14x32|fwd_tile<|bwdw_tile<|bwdd_tile<|forward_tile<|"
                          r"bwdw_narrow_tile|(?<![a-z_])tile<\d")
NOT_THE_STEP = ("clear_page", "blas_thread_server")


def main() -> None:
    total = kernels = 0.0
    for line in sys.stdin:
        m = re.match(r"\s+([\d.]+)%\s+\S+\s+(.*)", line)
        if not m or any(s in m.group(2) for s in NOT_THE_STEP):
            continue
        total += float(m.group(1))
        if MULTIPLY_ADD.search(m.group(2)):
            kernels += float(m.group(1))
    f = kernels / total if total else 0.0
    print(f"multiply-add micro-kernels: {100 * f:.0f}% of the step; doubling their rate gives "
          f"at most {1 / (1 - f / 2):.2f}x")


if __name__ == "__main__":
    main()
