"""The bfloat16 GEMM against the float32 one, same shapes, same run (issue "Beyond FP32").

    OMP_PROC_BIND=close python -m bench.bench_gemm_bf16 [--threads 1,2]

Alternating rounds (bench.common.time_rounds), medians in GFLOP/s (2 M N K per product), and
the ratio bf16 / fp32. The bfloat16 path does twice the multiply-adds per instruction where
the CPU has AVX512-BF16 (vdpbf16ps); the ratio shows what the packing (rounding to bfloat16)
and the micro-kernel give of that 2x.
"""

from __future__ import annotations

import argparse

import numpy as np

from bench.common import environment, median, set_threads, time_rounds
from cnnfast import _core

# (label, M, N, K): square products and the im2col products of conv layers (M = N*OH*OW,
# N = filters, K = KH*KW*C).
SHAPES = [("square 512", 512, 512, 512), ("square 1024", 1024, 1024, 1024),
          ("conv 64x32x32 3x3x64->64", 65536, 64, 576),
          ("conv 64x16x16 3x3x128->128", 16384, 128, 1152)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print("\n".join(environment()))
    print(f"- bf16 GEMM path: {_core.sgemm_bf16_path()}")
    print("| product | threads | fp32 GFLOP/s | bf16 GFLOP/s | bf16 / fp32 |")
    print("|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for threads in (int(t) for t in args.threads.split(",")):
        set_threads(threads)
        for label, m, n, k in SHAPES:
            a = rng.standard_normal((m, k)).astype(np.float32)
            b = rng.standard_normal((k, n)).astype(np.float32)
            c = np.zeros((m, n), np.float32)
            times = time_rounds({"fp32": lambda c=c, a=a, b=b: _core.sgemm(c, a, b),
                                 "bf16": lambda c=c, a=a, b=b: _core.sgemm_bf16(c, a, b)},
                                rounds=args.rounds)
            rate = {key: 2 * m * n * k / median(v) / 1e9 for key, v in times.items()}
            print(f"| {label} | {threads} | {rate['fp32']:.0f} | {rate['bf16']:.0f} | "
                  f"{rate['bf16'] / rate['fp32']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
